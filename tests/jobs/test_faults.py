"""The fault suite: real `lorashelf serve` / `lorashelf worker` / redis-server
processes on loopback, one fault each, and the END STATE asserted.

For every fault: each affected private dataset is deleted exactly once (one DELETED
event, one DATASET_DELETED notice) within a stated bound after the fault clears, no
dataset bytes are left under ``<data dir>/blobs``, and no client request got a 5xx
answer (``Owner`` requests fail the test on any non-200 answer or GraphQL error).

The bounds are the named constants below, each with why it is what it is. Windows are
seconds long; ``LORASHELF_SWEEP_INTERVAL`` is a minute wherever a test proves the
exact-time paths (a minute-long sweep cannot be what deleted something on time).

A few observations need the database itself (the SQLite file; with --db=postgres the
test's PostgreSQL database): which rows a killed process left
claimed (``DELETING``) and when it claimed them, the clock mark. They are read
read-only; the one edit (test 6) simulates a wall clock stepping back, which a test
cannot do to the real clock.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph.schema import ids
from tests import postgres, processes
from tests.conftest import dataset_blobs, make_safetensors
from tests.lifecycle import (
    PUBLISH,
    START_DATASET,
    Tracked,
    assert_deleted_once,
    deleted_notices,
    deletions_late,
    draft,
    events_of,
    incompressible_zip,
    lateness,
    new_version,
    publish,
    start_dataset,
    summary,
    unique_zip,
)
from tests.processes import (
    Owner,
    RedisServer,
    Server,
    finished_tombstone,
    log_tail,
    lorashelf,
    now_utc,
    parse_time,
    serve,
    sleep_until,
    wait_for,
    wait_for_deletion,
    worker,
)

# Bounds ---------------------------------------------------------------------------
# Every lateness is measured from the dataset's expiresAt to its deletedAt (the claim's
# instant, as the owner sees it), unless said otherwise.

# A deletion, or a reminder, while Redis is down, done by the worker's embedded runner:
# it wakes at the exact due time read from the database (~0.1 s when idle); the rest is
# margin for a machine running the whole suite beside us.
OUTAGE_LATE = 2.0
# From redis-server's restart until `lorashelf worker --check` answers 0: the worker
# retries Redis with back-off capped at 10 s (jobs/worker.py BACKOFF_MAX), each try may
# wait 2 s, then ARQ starts and writes its health key; plus a `--check` process start.
ARQ_RESUME = 16.0
# A deletion through a deferred ARQ job: the worker polls every 0.1 s.
ARQ_LATE = 1.5
# `lorashelf worker --exit-on-redis-loss` exits after Redis is SIGKILLed: ARQ notices on
# its next poll (0.1 s), closing it may wait 5 s (jobs/worker.py), plus margin.
EXIT_BOUND = 10.0
# serve's fallback with no healthy worker (jobs/watch.py): LORASHELF_WORKER_GRACE (set
# to COVER_GRACE s) plus one look every CHECK_EVERY (2 s), plus 1.5 s margin.
COVER_GRACE = 3
COVER_LATE = COVER_GRACE + 2.0 + 1.5
# After a worker dies: its ARQ health key lives 6 s more (health_check_interval 5 s + 1),
# then the grace, then the next look, plus 1.5 s margin (measured from the SIGKILL).
COVER_AFTER_DEATH = 6 + COVER_GRACE + 2.0 + 1.5
# After a process killed in the middle of deletions is restarted: every claim it left is
# finished by the start-up sweep (lease 0), not after the 30 s lease. Measured from
# the moment the restarted serve answers /healthz.
SERVE_CLAIM_BOUND = 5.0
# The same for a restarted worker, measured from the moment its process is spawned (a
# Python start-up, migrations check and the start-up sweep come before it says ready).
WORKER_CLAIM_BOUND = 10.0
# The claims test: thirty draft windows of CLAIM_WINDOW s; the process is SIGSTOPped while
# they end, SIGCONTinued (all thirty due at once) and SIGKILLed KILL_AFTER s later, when
# it is part-way through them (deleting thirty one after the other takes about a second).
CLAIM_WINDOW = 6
KILL_AFTER = 0.15
# A deletion on a full disk (tmpfs): the embedded runner's exact wake-up, bytes first,
# the reserve given back if SQLite needs room, one retry.
FULL_DISK_LATE = 2.5
# After a restart, the start-up sweep removes the partial file a killed upload left:
# gone within this long after the restarted serve has taken the new upload.
PARTIAL_FILE_BOUND = 5.0
# The end of the write storm: every private dataset is a finished tombstone this long
# after its (last) window ended (two runners racing with sweeps every second).
STORM_LATE = 3.0

CHURN_SECONDS = 20  # how long the 16 writers of test 2 run
CHURN_THREADS = 16

_names = itertools.count(1)


# Helpers --------------------------------------------------------------------------


MARK = "SELECT at FROM clock_marks"


def database(data_dir: Path) -> Path:
    return data_dir / "lorashelf.sqlite3"


def read_db(data_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query on the database file (observation only); with --db=postgres on
    the test's PostgreSQL database."""
    if processes.test_database_url is not None:
        return postgres.query(processes.test_database_url(), sql, args)
    con = sqlite3.connect(f"file:{database(data_dir)}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@dataclass
class Row:
    status: str
    claimed_at: datetime | None
    claimed_by: str | None
    deleted_at: datetime | None


def as_time(value: str | datetime) -> datetime:
    """A stored instant: SQLite keeps ISO text, PostgreSQL gives a datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def dataset_rows(data_dir: Path) -> dict[str, Row]:
    """Every dataset row by its global ID, as the database holds it."""

    def moment(value: str | datetime | None) -> datetime | None:
        return value if value is None or isinstance(value, datetime) else as_time(value)

    rows = read_db(
        data_dir,
        "SELECT public_id, status, claimed_at, claimed_by, deleted_at FROM training_datasets",
    )
    return {
        ids.encode("TrainingDataset", public_id): Row(status, moment(at), by, moment(deleted))
        for public_id, status, at, by, deleted in rows
    }


def kill_redis(redis: RedisServer) -> None:
    """SIGKILL redis-server (nothing persisted); ``redis.start()`` brings it back empty
    on the same port."""
    assert redis.proc is not None and redis.proc.poll() is None
    redis.proc.kill()
    redis.proc.wait(10)
    redis.proc = None


def worker_check(env: Mapping[str, str], cwd: Path) -> int:
    return lorashelf("worker", "--check", env=env, cwd=cwd).returncode


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def site(data_dir: Path, **settings: str) -> dict[str, str]:
    """serve's and the worker's configuration: exact-time paths (a minute-long sweep),
    no reminders unless asked for."""
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_SWEEP_INTERVAL": "60s",
        "LORASHELF_REMINDERS": "",
        "LORASHELF_WORKER_GRACE": "60s",
    }
    env.update(settings)
    return env


# 1. The ARQ worker outlives a Redis outage -----------------------------------------


def test_worker_deletes_on_time_through_a_redis_outage_then_returns_to_arq(
    tmp_path: Path, redis: RedisServer
) -> None:
    retention, reminder = 8, 4
    data_dir = tmp_path / "var"
    # serve never covers here (grace 60 s): whatever is deleted on time, the worker did.
    env = site(
        data_dir,
        LORASHELF_REDIS_URL=redis.url,
        LORASHELF_PRIVATE_RETENTION=f"{retention}s",
        LORASHELF_REMINDERS=f"{reminder}s",
    )
    with serve(env, cwd=tmp_path) as server, worker(env, cwd=tmp_path) as running:
        # given four private datasets published now, and one draft kept for later
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        drafts = [draft(owner, model) for _ in range(5)]
        published = [publish(owner, d) for d in drafts[:4]]
        later = drafts[4]

        # when Redis dies (SIGKILL) before any of their reminders or windows is due
        kill_redis(redis)
        killed = now_utc()
        first_due = min(p.expires_at for p in published) - timedelta(seconds=reminder)
        assert killed < first_due, "setup too slow: a reminder fell due before the outage"

        # then while Redis is down `--check` says no worker is reachable
        assert worker_check(env, tmp_path) != 0

        # and each reminder arrives on time, before its deletion, without saying "late"
        # (a few seconds is within the grace of two sweep intervals)
        reminded = []
        for each in published:
            due = each.expires_at - timedelta(seconds=reminder)
            [notice] = wait_for(
                functools.partial(owner.notifications_about, each.dataset_id, "DATASET_EXPIRING"),
                timeout=max(0.0, (due - now_utc()).total_seconds()) + OUTAGE_LATE + 2,
                what=f"the reminder of {each.dataset_id}",
            )
            sent = parse_time(notice["createdAt"])
            reminded.append((sent - due).total_seconds())
            assert due <= sent < each.expires_at
            assert "comes late" not in notice["message"], notice["message"]
        print(summary("reminders during the Redis outage (late by)", reminded))
        assert max(reminded) < OUTAGE_LATE

        # and each dataset is deleted on time by the worker, Redis still down
        late = deletions_late(owner, published, within=OUTAGE_LATE)
        print(summary("deletions during the Redis outage (late by)", late))
        assert min(late) >= 0 and max(late) < OUTAGE_LATE, late
        assert not redis.running
        assert running.proc.poll() is None, "the worker died during the outage"
        assert "Redis lost" in running.output()
        assert "expired and deleted" not in log_text(server.log), "serve deleted, not the worker"
        assert len(dataset_blobs(data_dir / "blobs")) == 1  # the draft kept for later

        # when Redis comes back (empty) on the same port
        redis.start()
        back = time.monotonic()

        # then the worker goes back to ARQ: `--check` answers 0 again
        wait_for(
            lambda: worker_check(env, tmp_path) == 0,
            timeout=ARQ_RESUME,
            interval=0.5,
            what="`lorashelf worker --check` to answer 0 after Redis returned",
        )
        resumed = time.monotonic() - back
        print(f"[faults] worker back on ARQ {resumed:.1f}s after redis-server restarted")
        assert "Redis is back" in running.output()
        arq_jobs_before = running.output().count("expire_dataset(")

        # and a dataset published now is deleted on time through a deferred ARQ job
        after = publish(owner, later)
        tombstone = wait_for_deletion(owner, after.dataset_id, timeout=retention + ARQ_LATE + 2)
        late_after = lateness(tombstone, after.expires_at)
        print(f"[faults] deletion through ARQ after the outage: late by {late_after:.3f}s")
        assert 0 <= late_after < ARQ_LATE
        assert running.output().count("expire_dataset(") > arq_jobs_before, "not through ARQ"

        # and everything happened exactly once, the worker alive all along
        time.sleep(0.5)
        assert running.proc.poll() is None
        assert_deleted_once(owner, [*published, after])
        for each in published:
            assert len(owner.notifications_about(each.dataset_id, "DATASET_EXPIRING")) == 1
            assert events_of(owner.dataset(each.dataset_id))["REMINDED"] == 1
        assert dataset_blobs(data_dir / "blobs") == set()


@pytest.mark.backend_independent(reason="Redis's queue lost, planned again from the database")
def test_work_planned_before_redis_lost_its_queue_is_done_on_time_after_it_returns(
    tmp_path: Path, redis: RedisServer
) -> None:
    retention, reminder = 24, 12
    env = site(
        tmp_path / "var",
        LORASHELF_REDIS_URL=redis.url,
        LORASHELF_PRIVATE_RETENTION=f"{retention}s",
        LORASHELF_REMINDERS=f"{reminder}s",
    )
    with serve(env, cwd=tmp_path) as server, worker(env, cwd=tmp_path) as running:
        # given a private dataset whose reminder and deletion are queued in Redis
        owner = Owner.sign_up(server.url)
        published = publish(owner, draft(owner, owner.create_model()))
        due = published.expires_at - timedelta(seconds=reminder)
        # when Redis restarts empty (its queued jobs lost) and the worker is back on ARQ,
        # both before the reminder is due (the sweep runs once a minute here)
        kill_redis(redis)
        wait_for(lambda: "Redis lost" in running.output(), timeout=10, what="the worker to notice")
        redis.start()
        wait_for(
            lambda: "Redis is back" in running.output(),
            timeout=ARQ_RESUME,
            interval=0.2,
            what="the worker back on ARQ",
        )
        time.sleep(1.0)  # its first sweep (at ARQ's start) plans again
        assert now_utc() < due, "setup too slow: the reminder fell due before Redis returned"
        # then the reminder comes at its due time, through ARQ, not at the next sweep
        [notice] = wait_for(
            functools.partial(owner.notifications_about, published.dataset_id, "DATASET_EXPIRING"),
            timeout=(due - now_utc()).total_seconds() + ARQ_LATE + 2,
            what="the reminder",
        )
        late = (parse_time(notice["createdAt"]) - due).total_seconds()
        print(f"[faults] reminder planned before Redis restarted: late by {late:.3f}s")
        assert 0 <= late < ARQ_LATE, late
        # and so does the deletion, once
        tombstone = wait_for_deletion(owner, published.dataset_id, timeout=retention + 5)
        assert 0 <= lateness(tombstone, published.expires_at) < ARQ_LATE, tombstone
        assert "planned_again" in running.output()
        assert_deleted_once(owner, [published])


def test_datasets_published_during_and_just_after_a_redis_outage_are_deleted_on_time(
    tmp_path: Path, redis: RedisServer
) -> None:
    retention = 5
    data_dir = tmp_path / "var"
    env = site(data_dir, LORASHELF_REDIS_URL=redis.url, LORASHELF_PRIVATE_RETENTION=f"{retention}s")
    problems = []  # both halves are checked before the test fails
    with serve(env, cwd=tmp_path) as server, worker(env, cwd=tmp_path) as running:
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        during, after = draft(owner, model), draft(owner, model)
        # given Redis is down, and the worker knows it (it deletes from the database now)
        kill_redis(redis)
        wait_for(lambda: "Redis lost" in running.output(), timeout=10, what="the worker to notice")

        # when a private dataset is published during the outage (serve cannot enqueue)
        first = publish(owner, during)

        # then it is still deleted on time, Redis still down
        sleep_until(first.expires_at, extra=OUTAGE_LATE)
        view = owner.dataset(first.dataset_id)
        assert view["downloadUrl"] is None
        if not finished_tombstone(view):
            problems.append(
                f"published during the outage: not deleted {OUTAGE_LATE}s after expiresAt "
                "(Redis still down)"
            )
        else:
            print(
                f"[faults] published during the outage: late by {lateness(view, first.expires_at):.3f}s"
            )
        assert not redis.running and running.proc.poll() is None

        # when Redis is back, the worker on ARQ again, and another dataset is published
        redis.start()
        wait_for(
            lambda: worker_check(env, tmp_path) == 0,
            timeout=ARQ_RESUME,
            interval=0.5,
            what="`lorashelf worker --check` to answer 0 after Redis returned",
        )
        second = publish(owner, after)

        # then that one is deleted on time through ARQ
        sleep_until(second.expires_at, extra=ARQ_LATE)
        view = owner.dataset(second.dataset_id)
        if not finished_tombstone(view):
            left = "left to the sweep" in log_text(server.log)
            problems.append(
                f"published after Redis returned: not deleted {ARQ_LATE}s after expiresAt "
                f"(serve's log says it was left to the sweep: {left})"
            )
        else:
            print(
                f"[faults] published after the outage: late by {lateness(view, second.expires_at):.3f}s"
            )
        assert problems == []
        assert dataset_blobs(data_dir / "blobs") == set()
        time.sleep(0.3)
        assert_deleted_once(owner, [first, second])


def test_worker_with_exit_on_redis_loss_exits_non_zero(tmp_path: Path, redis: RedisServer) -> None:
    env = site(tmp_path / "var", LORASHELF_REDIS_URL=redis.url)
    with worker(env, tmp_path, args=("--exit-on-redis-loss",), ready_within=30) as running:
        # when Redis dies
        kill_redis(redis)
        killed = time.monotonic()
        # then the worker exits, non-zero, within seconds (for its supervisor to restart it)
        try:
            code = running.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker still runs {EXIT_BOUND}s after Redis died:\n{log_tail(running.log)}"
            ) from None
        took = time.monotonic() - killed
        print(f"[faults] --exit-on-redis-loss: exited with {code} after {took:.2f}s")
        assert code != 0
        assert "Redis lost" in running.output()


def test_serve_deletes_by_itself_when_no_worker_is_healthy(
    tmp_path: Path, redis: RedisServer
) -> None:
    data_dir = tmp_path / "var"
    env = site(
        data_dir,
        LORASHELF_REDIS_URL=redis.url,
        LORASHELF_WORKER_GRACE=f"{COVER_GRACE}s",
        LORASHELF_PRIVATE_RETENTION="3s",
    )
    # given serve with Redis and no worker at all
    with serve(env, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        assert len(dataset_blobs(data_dir / "blobs")) == 1

        # then serve deletes the dataset itself, within the grace after its window ended
        tombstone = wait_for_deletion(owner, published.dataset_id, timeout=3 + COVER_LATE + 2)
        late = lateness(tombstone, published.expires_at)
        print(f"[faults] serve covering for a missing worker: late by {late:.3f}s")
        assert 0 <= late < COVER_LATE
        assert "serve does the retention work itself" in log_text(server.log)
        assert dataset_blobs(data_dir / "blobs") == set()
        time.sleep(0.5)
        assert_deleted_once(owner, [published])
        assert worker_check(env, tmp_path) != 0  # and still no worker: serve did it
        model = owner.create_model()
        prepared = draft(owner, model)

        # given then a worker, healthy, and serve no longer covering
        with worker(env, cwd=tmp_path) as running:
            wait_for(
                lambda: "a worker is healthy again" in log_text(server.log),
                timeout=2 * 2.0 + 2,
                what="serve to see the worker healthy and stop covering",
            )
            # when the worker dies, and a dataset is published right after
            running.kill()
            killed = now_utc()
            second = publish(owner, prepared)

        # then serve covers again once the worker's health key has expired and the grace
        # has passed, and deletes it: on time, or as soon as it covers
        tombstone = wait_for_deletion(owner, second.dataset_id, timeout=COVER_AFTER_DEATH + 3)
        deleted_at = parse_time(tombstone["deletedAt"])
        covered = (deleted_at - killed).total_seconds()
        print(
            f"[faults] serve covering for a dead worker: deleted {covered:.3f}s after the kill, "
            f"{lateness(tombstone, second.expires_at):.3f}s after expiresAt"
        )
        assert second.expires_at <= deleted_at
        assert covered < COVER_AFTER_DEATH
        assert log_text(server.log).count("serve does the retention work itself") == 2
        assert dataset_blobs(data_dir / "blobs") == set()
        time.sleep(0.5)
        assert_deleted_once(owner, [published, second])


def test_a_reminder_missed_while_no_worker_ran_comes_late_and_says_so(
    tmp_path: Path, redis: RedisServer
) -> None:
    # A sweep every second makes the reminders' grace 2 s (two sweep intervals).
    retention, reminder, grace = 12, 10, 2.0
    data_dir = tmp_path / "var"
    env = site(
        data_dir,
        LORASHELF_REDIS_URL=redis.url,
        LORASHELF_PRIVATE_RETENTION=f"{retention}s",
        LORASHELF_REMINDERS=f"{reminder}s",
        LORASHELF_SWEEP_INTERVAL="1s",
    )
    with serve(env, cwd=tmp_path) as server:
        # given a private dataset whose reminder falls due while no worker runs
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        due = published.expires_at - timedelta(seconds=reminder)
        sleep_until(due, extra=grace + 0.5)
        assert owner.notifications_about(published.dataset_id, "DATASET_EXPIRING") == []

        # when a worker starts, the window still open
        with worker(env, cwd=tmp_path):
            # then the reminder arrives, late, saying so, before the deletion
            notice = wait_for(
                lambda: owner.notifications_about(published.dataset_id, "DATASET_EXPIRING"),
                timeout=max(0.0, (published.expires_at - now_utc()).total_seconds()),
                what="the late reminder",
            )[0]
            sent = parse_time(notice["createdAt"])
            print(f"[faults] reminder sent {(sent - due).total_seconds():.3f}s after its due time")
            assert (sent - due).total_seconds() > grace
            assert sent < published.expires_at
            assert "(This reminder comes late" in notice["message"], notice["message"]

            # and the dataset is still deleted on time, reminded once, deleted once
            tombstone = wait_for_deletion(
                owner,
                published.dataset_id,
                timeout=max(0.0, (published.expires_at - now_utc()).total_seconds()) + 4,
            )
            assert 0 <= lateness(tombstone, published.expires_at) < ARQ_LATE
            time.sleep(1.5)  # a sweep every second: a duplicate would show by now
            assert len(owner.notifications_about(published.dataset_id, "DATASET_EXPIRING")) == 1
            assert events_of(owner.dataset(published.dataset_id))["REMINDED"] == 1
            assert_deleted_once(owner, [published])
            assert dataset_blobs(data_dir / "blobs") == set()


# 2. Writes wait their turn ----------------------------------------------------------


@dataclass
class Tally:
    """Every answer the writers got."""

    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # userError and GraphQL error codes
    failures: list[str] = field(default_factory=list)  # 5xx, INTERNAL_ERROR, non-JSON
    datasets: dict[str, str] = field(default_factory=dict)  # dataset id -> owner token
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, response: httpx.Response) -> Any:
        with self.lock:
            self.requests += 1
            self.statuses[response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        with self.lock:
            if response.status_code >= 500 or body is None:
                self.failures.append(f"{what}: HTTP {response.status_code} {response.text[:300]}")
            if isinstance(body, dict):
                for error in body.get("errors") or []:
                    code = (error.get("extensions") or {}).get("code", "GRAPHQL_ERROR")
                    self.codes[code] += 1
                    if code == "INTERNAL_ERROR":
                        self.failures.append(f"{what}: {error}")
                if "error" in body:
                    self.codes[f"HTTP:{body['error']}"] += 1
        return body

    def user_errors(self, payload: Mapping[str, Any]) -> bool:
        errors = payload.get("userErrors") or []
        with self.lock:
            for error in errors:
                self.codes[error["code"]] += 1
        return bool(errors)


def churn(urls: list[str], token: str, tally: Tally, stop_at: float, seed: int) -> None:
    """One client: the whole life of datasets, over and over, against either server."""
    rng = random.Random(seed)
    headers = {"authorization": f"Bearer {token}"}
    weights = make_safetensors()

    with httpx.Client(timeout=60, headers=headers) as http:

        def call(name: str, query: str, variables: Mapping[str, Any] | None = None) -> Any:
            response = http.post(
                f"{rng.choice(urls)}/graphql",
                json={"query": query, "variables": dict(variables or {})},
            )
            body = tally.answer(name, response)
            return (body or {}).get("data") if isinstance(body, dict) else None

        def mutate(name: str, query: str, variables: Mapping[str, Any]) -> Any:
            data = call(name, query, variables)
            if not data or data.get(name) is None:
                return None
            payload = data[name]
            return None if tally.user_errors(payload) else payload

        def put(url: str, body: bytes) -> bool:
            response = http.put(url, content=body)
            tally.answer("PUT", response)
            return response.status_code == 200

        model: str | None = None
        versions = 0
        while time.monotonic() < stop_at:
            if model is None or versions >= 45:  # a model holds at most 50 versions
                made = mutate(
                    "createModel",
                    "mutation($i: CreateModelInput!) { createModel(input: $i) "
                    "{ model { id } userErrors { code } } }",
                    {"i": {"name": f"Storm {rng.random():.6f}", "description": "x"}},
                )
                model, versions = (made["model"]["id"], 0) if made else (None, 0)
                continue
            made = mutate(
                "createModelVersion",
                "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
                "{ version { id } userErrors { code } } }",
                {"i": {"modelId": model, "name": f"v{versions}", "baseModel": "SDXL_1_0"}},
            )
            versions += 1
            if not made:
                continue
            version = made["version"]["id"]
            started = mutate(
                "startModelFileUpload",
                "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
                "{ uploadUrl userErrors { code } } }",
                {
                    "i": {
                        "versionId": version,
                        "filename": "w.safetensors",
                        "sizeBytes": len(weights),
                    }
                },
            )
            if started:
                put(started["uploadUrl"], weights)
            body = unique_zip(rng.randint(500, 4000))
            started = mutate(
                "startDatasetUpload",
                START_DATASET,
                {
                    "i": {
                        "versionId": version,
                        "filename": "d.zip",
                        "sizeBytes": len(body),
                        "visibility": "PRIVATE",
                        "ownsRights": False,
                    }
                },
            )
            if not started:
                continue
            dataset = started["dataset"]["id"]
            if not put(started["uploadUrl"], body):
                continue
            with tally.lock:
                tally.datasets[dataset] = token
            for visibility in ("PUBLIC", "PRIVATE"):
                mutate(
                    "setDatasetVisibility",
                    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
                    "{ dataset { id expiresAt } userErrors { code } } }",
                    {
                        "i": {
                            "datasetId": dataset,
                            "visibility": visibility,
                            "ownsRights": visibility == "PUBLIC",
                        }
                    },
                )
            mutate("publishModelVersion", PUBLISH, {"i": {"versionId": version}})
            call(
                "read",
                "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status "
                "expiresAt downloadUrl events { kind } } } viewer { notifications(first: 10) "
                "{ edges { node { id kind } } } models(first: 5) { edges { node { id } } } } "
                "models(first: 5) { edges { node { id name } } } }",
                {"id": dataset},
            )
            if rng.random() < 0.4:
                mutate(
                    "deleteDataset",
                    "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
                    "{ dataset { id status } userErrors { code } } }",
                    {"i": {"datasetId": dataset}},
                )


def test_sixteen_writers_on_two_servers_never_get_an_internal_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # Two serve processes on one SQLite file, each with its embedded runner sweeping every
    # second (and saving the clock mark each time): three kinds of writers at once.
    env = site(
        data_dir,
        LORASHELF_PRIVATE_RETENTION="3s",
        LORASHELF_DRAFT_RETENTION="5s",
        LORASHELF_REMINDERS="1s",
        LORASHELF_SWEEP_INTERVAL="1s",
    )
    with serve(env, cwd=tmp_path) as first, serve(env, cwd=tmp_path) as second:
        urls = [first.url, second.url]
        # eight creators (signed up four on each server: sign-ups are limited per address)
        owners = [Owner.sign_up(urls[i % 2]) for i in range(CHURN_THREADS // 2)]
        tally = Tally()
        stop_at = time.monotonic() + CHURN_SECONDS
        threads = [
            threading.Thread(
                target=churn,
                args=(urls, owners[i // 2].token, tally, stop_at, i),
                name=f"churn-{i}",
            )
            for i in range(CHURN_THREADS)
        ]
        # when sixteen clients change datasets at once for a while
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CHURN_SECONDS + 120)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        ended = now_utc()

        print(
            f"[faults] write storm: {tally.requests} requests, statuses {dict(tally.statuses)}, "
            f"codes {dict(tally.codes)}, TRY_AGAIN {tally.codes['TRY_AGAIN']}"
        )
        # then nobody got a 5xx or an INTERNAL_ERROR (TRY_AGAIN is allowed, and counted)
        assert tally.failures == [], tally.failures[:10]
        assert tally.requests > 200, "the storm did not get going"
        assert len(tally.datasets) > 20

        # and in the end every private dataset is deleted, once (the windows are seconds)
        by_token = {o.token: o for o in owners}
        mine: dict[str, set[str]] = {}
        for dataset_id, token in tally.datasets.items():
            mine.setdefault(token, set()).add(dataset_id)
        deadline = ended + timedelta(seconds=5 + STORM_LATE)
        for token, expected in mine.items():
            owner = by_token[token]
            try:
                wait_for(
                    functools.partial(all_finished, owner, expected),
                    timeout=max(0.5, (deadline - now_utc()).total_seconds()),
                    interval=0.3,
                    what=f"{owner.username}'s datasets to be deleted after the storm",
                )
            except AssertionError:
                left = unfinished_of(owner, expected)
                raise AssertionError(f"not deleted once after the storm: {left}") from None
        assert dataset_blobs(data_dir / "blobs") == set()


def all_finished(owner: Owner, expected: set[str]) -> bool:
    return not unfinished_of(owner, expected)


def unfinished_of(owner: Owner, expected: set[str]) -> list[str]:
    """Which of the owner's ``expected`` datasets are not finished tombstones with one
    DELETED event (from their listing, all pages)."""
    seen: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = owner.gql(
            "query($after: String) { viewer { trainingDatasets(first: 100, after: $after) "
            "{ edges { node { id status deletedAt events { kind } deletionReceipt { keyId } } } "
            "pageInfo { hasNextPage endCursor } } } }",
            {"after": after},
        )["viewer"]["trainingDatasets"]
        seen.update({e["node"]["id"]: e["node"] for e in page["edges"]})
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return [
        d
        for d in expected
        if d not in seen or not finished_tombstone(seen[d]) or events_of(seen[d])["DELETED"] != 1
    ]


# 3. Claims finish in seconds --------------------------------------------------------


def private_drafts(owner: Owner, count: int, threads: int = 4) -> list[Tracked]:
    """``count`` drafts' private datasets, uploaded in parallel (a draft's window is the
    draft lifetime from its upload)."""
    model = owner.create_model()

    def tracked(_: int) -> Tracked:
        # the owner's view right after the upload: the window is open (all thirty
        # uploads can take longer than the first window on a loaded machine)
        each = draft(owner, model, weights=False)
        view = owner.dataset(each.dataset_id)
        return Tracked(each.dataset_id, parse_time(view["expiresAt"]), view["downloadUrl"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(tracked, range(count)))


def frozen_through_expiry_then_killed(
    proc: subprocess.Popen[bytes], windows: list[Tracked]
) -> None:
    """SIGSTOP the process until every window has ended, SIGCONT it (all thirty are due
    at once: it starts deleting them) and SIGKILL it KILL_AFTER seconds later."""
    proc.send_signal(signal.SIGSTOP)
    try:
        sleep_until(max(w.expires_at for w in windows), extra=0.2)
    finally:
        proc.send_signal(signal.SIGCONT)
    time.sleep(KILL_AFTER)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def assert_claims_finished(
    owner: Owner,
    published: list[Tracked],
    before: dict[str, Row],
    *,
    restarted: datetime,
    bound: float,
    what: str,
) -> None:
    """Every dataset a finished tombstone by ``restarted + bound``; a claim the dead
    process made keeps its instant as deletedAt; deletedAt never changes afterwards."""
    last = max(p.expires_at for p in published)
    wait_for(
        lambda: all(finished_tombstone(owner.dataset(p.dataset_id)) for p in published),
        timeout=max(0.0, (restarted - now_utc()).total_seconds()) + bound,
        interval=0.2,
        what=f"all {len(published)} datasets to be finished tombstones after the restart",
    )
    done = now_utc()
    print(
        f"[faults] {what}: all finished {(done - restarted).total_seconds():.2f}s after the "
        f"restart ({(done - last).total_seconds():.2f}s after the last expiry)"
    )
    first_read = {p.dataset_id: owner.dataset(p.dataset_id)["deletedAt"] for p in published}
    late = []
    for each in published:
        deleted_at = parse_time(first_read[each.dataset_id])
        late.append((deleted_at - each.expires_at).total_seconds())
        assert each.expires_at <= deleted_at <= restarted + timedelta(seconds=bound)
        row = before[each.dataset_id]
        if row.status in ("DELETING", "DELETED"):  # claimed by the killed process
            assert deleted_at == row.claimed_at, (each.dataset_id, row, deleted_at)
    print(summary(f"{what}: deletedAt - expiresAt", late))
    time.sleep(1.0)
    second_read = {p.dataset_id: owner.dataset(p.dataset_id)["deletedAt"] for p in published}
    assert second_read == first_read, "deletedAt changed after it was written"
    assert_deleted_once(owner, published)


def test_serve_killed_while_deleting_finishes_every_claim_at_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = site(data_dir, LORASHELF_DRAFT_RETENTION=f"{CLAIM_WINDOW}s")
    with serve(env, cwd=tmp_path) as first:
        # given thirty private datasets
        owner = Owner.sign_up(first.url)
        windows = private_drafts(owner, 30)
        old_url = first.url
        # when serve, stopped while their windows end, resumes and is SIGKILLed while
        # it deletes them
        frozen_through_expiry_then_killed(first.proc, windows)
    before = dataset_rows(data_dir)
    left = Counter(r.status for r in before.values())
    print(f"[faults] serve killed mid-deletion: states left {dict(left)}")

    # then serve restarted on the same data dir finishes them all within seconds
    with serve(env, cwd=tmp_path) as second:
        restarted = now_utc()
        owner.url = second.url
        for each in windows:
            each.download_url = each.download_url.replace(old_url, second.url)
        assert_claims_finished(
            owner,
            windows,
            before,
            restarted=restarted,
            bound=SERVE_CLAIM_BOUND,
            what="serve killed mid-deletion",
        )
        assert dataset_blobs(data_dir / "blobs") == set()


def test_worker_killed_while_deleting_finishes_every_claim_at_restart(
    tmp_path: Path, redis: RedisServer
) -> None:
    data_dir = tmp_path / "var"
    env = site(
        data_dir, LORASHELF_REDIS_URL=redis.url, LORASHELF_DRAFT_RETENTION=f"{CLAIM_WINDOW}s"
    )
    with serve(env, cwd=tmp_path) as server:
        with worker(env, cwd=tmp_path) as first:
            # given thirty private datasets
            owner = Owner.sign_up(server.url)
            windows = private_drafts(owner, 30)
            # when the worker, stopped while their windows end, resumes and is SIGKILLed
            # while it deletes them (ARQ runs ten jobs at a time)
            frozen_through_expiry_then_killed(first.proc, windows)
        before = dataset_rows(data_dir)
        left = Counter(r.status for r in before.values())
        print(f"[faults] worker killed mid-deletion: states left {dict(left)}")

        # then a restarted worker finishes them all within seconds
        spawned = now_utc()
        with worker(env, cwd=tmp_path):
            assert_claims_finished(
                owner,
                windows,
                before,
                restarted=spawned,
                bound=WORKER_CLAIM_BOUND,
                what="worker killed mid-deletion",
            )
            assert dataset_blobs(data_dir / "blobs") == set()


# 4. A full disk still deletes --------------------------------------------------------


@contextmanager
def small_disk(path: Path, size_mib: int) -> Iterator[bool]:
    """A tmpfs of ``size_mib`` MiB mounted at ``path`` (root only); yields whether it
    could be mounted. Unmounted when the block ends."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    print(f"[faults] tmpfs of {size_mib} MiB at {path}: {'mounted' if mounted else 'NOT mounted'}")
    try:
        yield mounted
    finally:
        if mounted:
            for _ in range(50):
                if subprocess.run(["umount", str(path)], check=False).returncode == 0:
                    break
                time.sleep(0.2)
            else:
                subprocess.run(["umount", "-l", str(path)], check=False)


def json_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of an answer; fails on plain text."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:200],
    )
    body: dict[str, Any] = response.json()
    return body


def readyz(server: Server) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{server.url}/readyz", timeout=10)
    return response.status_code, json_answer(response)


def healthz_ok(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200
    json_answer(response)


def test_a_full_disk_refuses_uploads_in_json_and_still_deletes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk, 40) as mounted:
        if mounted:
            full_disk_on_tmpfs(tmp_path, disk)
        else:
            full_disk_by_configuration(tmp_path)


def full_disk_on_tmpfs(tmp_path: Path, disk: Path) -> None:
    size = 3 * 1024 * 1024
    env = site(
        disk,
        LORASHELF_MIN_FREE_BYTES=str(4 * 1024 * 1024),
        LORASHELF_DRAFT_RETENTION="15s",
        LORASHELF_MAX_BYTES_PER_USER="1GiB",
        # an upload is started while the largest allowed would fit: sizes for this disk
        LORASHELF_MAX_DATASET_BYTES="4MiB",
        LORASHELF_MAX_MODEL_FILE_BYTES="4MiB",
    )
    with serve(env, cwd=tmp_path) as server:
        # given the reserve file held (16 MiB of the 40) and the server ready
        wait_for(lambda: (disk / ".reserve").exists(), timeout=10, what="the reserve file")
        assert readyz(server)[0] == 200
        owner = Owner.sign_up(server.url)
        model = owner.create_model()

        # when private datasets (random bytes: real size) are uploaded until refused:
        # first every upload is asked for (the disk has room for each), then the bytes sent
        pending = []
        refused_at_start = None
        for _ in range(12):
            version = new_version(owner, model)
            body = incompressible_zip(size)
            started = start_dataset(owner, version, len(body))
            if started["userErrors"]:
                refused_at_start = started["userErrors"][0]
                break
            pending.append((started, body))
        answers = []
        for started, body in pending:
            try:
                response = httpx.put(started["uploadUrl"], content=body, timeout=60)
            except httpx.TransportError as exc:
                raise AssertionError(
                    f"an upload PUT got no answer on a full disk: {exc!r}"
                ) from None
            answers.append((started["dataset"]["id"], response.status_code, json_answer(response)))
        statuses = [status for _, status, _ in answers]
        print(f"[faults] tmpfs uploads: PUT statuses {statuses}, start refused: {refused_at_start}")

        # then the upload that does not fit is refused as STORAGE_FULL (507, JSON)
        assert all(status in (200, 507) for status in statuses), answers
        refused = [body for _, status, body in answers if status == 507]
        assert refused, f"no upload was refused on a full disk: {statuses}"
        assert all(body["error"] == "STORAGE_FULL" for body in refused), refused
        stored = [dataset_id for dataset_id, status, _ in answers if status == 200]
        assert len(dataset_blobs(disk / "blobs")) == len(stored)
        # and the server says it is not ready (disk full), though healthy
        status, ready = readyz(server)
        assert status == 503 and ready["checks"]["disk"] == "full", ready
        healthz_ok(server)
        # and asking for another upload is refused as STORAGE_FULL
        again = start_dataset(owner, new_version(owner, model), size)
        assert [e["code"] for e in again["userErrors"]] == ["STORAGE_FULL"], again

        # when the windows end: every stored dataset is deleted on time
        windows = {d: parse_time(owner.dataset(d)["expiresAt"]) for d in stored}
        late = []
        for dataset_id, expires_at in windows.items():
            tombstone = wait_for_deletion(
                owner,
                dataset_id,
                timeout=max(0.0, (expires_at - now_utc()).total_seconds()) + FULL_DISK_LATE + 2,
            )
            late.append(lateness(tombstone, expires_at))
            assert tombstone["deletionReason"] == "EXPIRED"
        print(summary("deletions on a full tmpfs", late))
        assert min(late) >= 0 and max(late) < FULL_DISK_LATE
        assert dataset_blobs(disk / "blobs") == set()
        notices = deleted_notices(owner)
        assert all(notices[d] == 1 for d in stored), notices

        # then the server is ready again and a new upload works
        wait_for(lambda: readyz(server)[0] == 200, timeout=5, what="/readyz to answer 200 again")
        assert readyz(server)[1]["checks"]["disk"] == "ok"
        draft(owner, model, weights=False, body=incompressible_zip(size))


def full_disk_by_configuration(tmp_path: Path) -> None:
    """Without a small filesystem: a minimum free space above what the disk has."""
    data_dir = tmp_path / "var"
    roomy = site(data_dir, LORASHELF_MIN_FREE_BYTES="1MiB", LORASHELF_DRAFT_RETENTION="10s")
    with serve(roomy, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        stored = [draft(owner, model, weights=False) for _ in range(3)]
        server.stop()
    free = os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize
    full = {**roomy, "LORASHELF_MIN_FREE_BYTES": str(free + 2**30)}
    with serve(full, cwd=tmp_path) as server:
        owner.url = server.url
        again = start_dataset(owner, new_version(owner, model), 1000)
        assert [e["code"] for e in again["userErrors"]] == ["STORAGE_FULL"], again
        status, ready = readyz(server)
        assert status == 503 and ready["checks"]["disk"] == "full", ready
        healthz_ok(server)
        for each in stored:
            expires_at = parse_time(owner.dataset(each.dataset_id)["expiresAt"])
            tombstone = wait_for_deletion(
                owner,
                each.dataset_id,
                timeout=max(0.0, (expires_at - now_utc()).total_seconds()) + FULL_DISK_LATE + 2,
            )
            assert 0 <= lateness(tombstone, expires_at) < FULL_DISK_LATE
        assert dataset_blobs(data_dir / "blobs") == set()
    with serve(roomy, cwd=tmp_path) as server:
        owner.url = server.url
        assert readyz(server)[0] == 200
        draft(owner, model, weights=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem says ENOSPC, to the last byte; its size."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1 << 8, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def test_a_disk_filled_behind_lorashelfs_back_still_deletes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk, 32) as mounted:
        if not mounted:
            full_disk_by_configuration(tmp_path)
            return
        env = site(
            disk,
            LORASHELF_MIN_FREE_BYTES="1MiB",
            LORASHELF_DRAFT_RETENTION="10s",
            LORASHELF_MAX_DATASET_BYTES="1MiB",  # so that an upload fits a small disk
            LORASHELF_MAX_MODEL_FILE_BYTES="1MiB",
        )
        filler = disk / "filler.bin"
        try:
            with serve(env, cwd=tmp_path) as server:
                # given private datasets stored, and the reserve file held
                wait_for(lambda: (disk / ".reserve").exists(), timeout=10, what="the reserve")
                owner = Owner.sign_up(server.url)
                model = owner.create_model()
                stored = [draft(owner, model, weights=False) for _ in range(3)]
                windows = {
                    d.dataset_id: parse_time(owner.dataset(d.dataset_id)["expiresAt"])
                    for d in stored
                }
                assert len(dataset_blobs(disk / "blobs")) == 3

                # when something else fills the disk to the last byte
                written = fill(filler)
                assert os.statvfs(disk).f_bavail == 0
                print(f"[faults] filled the tmpfs with {written} bytes")

                # then the windows still end with the datasets deleted, on time
                late = []
                for dataset_id, expires_at in windows.items():
                    tombstone = wait_for_deletion(
                        owner,
                        dataset_id,
                        timeout=max(0.0, (expires_at - now_utc()).total_seconds())
                        + FULL_DISK_LATE
                        + 2,
                    )
                    late.append(lateness(tombstone, expires_at))
                print(summary("deletions on a disk filled to the last byte", late))
                assert min(late) >= 0 and max(late) < FULL_DISK_LATE
                assert dataset_blobs(disk / "blobs") == set()
                notices = deleted_notices(owner)
                assert all(notices[d] == 1 for d in windows), notices
                released = "released the" in log_text(server.log)
                print(
                    f"[faults] reserve file given back: {released}; "
                    f"present now: {(disk / '.reserve').exists()}"
                )
                # the reserve is given back only when SQLite needed the room (and may be
                # taken again once deletions have freed space): kept otherwise
                if not released:
                    assert (disk / ".reserve").exists()
                # and /readyz tells the truth about the disk (the reserve given back is
                # free space again), while /healthz stays 200
                status, ready = readyz(server)
                full = shutil.disk_usage(disk).free < 1024 * 1024
                assert (status, ready["checks"]["disk"]) == ((503, "full") if full else (200, "ok"))
                healthz_ok(server)
        finally:
            filler.unlink(missing_ok=True)


# 5. Uploads recover ------------------------------------------------------------------


def test_an_upload_killed_mid_way_is_replaced_at_once_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    declared = 2 * 1024 * 1024
    env = site(data_dir, LORASHELF_MAX_BYTES_PER_USER=str(3 * 1024 * 1024))
    tmp_dir = data_dir / "blobs" / ".tmp"
    with serve(env, cwd=tmp_path) as first:
        # given an upload of 2 MiB under way, slowly
        owner = Owner.sign_up(first.url)
        model = owner.create_model()
        version = new_version(owner, model)
        started = start_dataset(owner, version, declared)
        assert started["userErrors"] == [], started["userErrors"]
        dataset_id = started["dataset"]["id"]
        stop_sending = threading.Event()

        def slow_body() -> Iterator[bytes]:
            for i in range(declared // 65536):
                yield os.urandom(65536)
                if i >= 8 and stop_sending.wait(0.2):  # 576 KiB at once, then a trickle
                    return

        def send() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.put(started["uploadUrl"], content=slow_body(), timeout=60)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            wait_for(
                lambda: any(p.stat().st_size >= 512 * 1024 for p in tmp_dir.glob("*.part")),
                timeout=15,
                what="half a megabyte of the upload on disk",
            )
            assert owner.dataset(dataset_id)["status"] == "PENDING_UPLOAD"  # bytes arriving
            [(status,)] = read_db(
                data_dir,
                "SELECT status FROM training_datasets WHERE public_id = ?",
                (ids.decode(dataset_id, "TrainingDataset"),),
            )
            assert status == "UPLOADING"
            # and while it is under way its 2 MiB count against the 3 MiB quota
            other = start_dataset(owner, new_version(owner, model), 1536 * 1024)
            assert [e["code"] for e in other["userErrors"]] == ["QUOTA_BYTES"], other

            # when serve is SIGKILLed mid-upload
            first.kill()
        finally:
            stop_sending.set()
            sender.join(30)
    assert list(tmp_dir.glob("*.part")), "no partial file was left to clean up"

    with serve(env, cwd=tmp_path) as second:
        owner.url = second.url
        # then the owner can start the upload again at once: no DATASET_EXISTS
        body = unique_zip(4000)
        again = start_dataset(owner, version, len(body))
        assert again["userErrors"] == [], again["userErrors"]
        dataset_id = again["dataset"]["id"]  # the abandoned row may have been discarded
        assert again["uploadUrl"] != started["uploadUrl"]
        # and the new URL takes the bytes
        put = httpx.put(again["uploadUrl"], content=body, timeout=30)
        assert put.status_code == 200, put.text
        assert put.json()["sha256"] == hashlib.sha256(body).hexdigest()
        assert owner.dataset(dataset_id)["status"] == "AVAILABLE"
        assert len(dataset_blobs(data_dir / "blobs")) == 1
        # and the old URL is dead
        stale = httpx.put(started["uploadUrl"].replace(first.url, second.url), content=body)
        assert stale.status_code in (403, 404, 409, 410), stale.text
        json_answer(stale)
        # and the partial file the killed upload left is gone
        wait_for(
            lambda: not list(tmp_dir.glob("*.part")),
            timeout=PARTIAL_FILE_BOUND,
            what="no partial upload file left under blobs/.tmp",
        )


# 6. Time that cannot go backwards ----------------------------------------------------


def test_a_clock_stepped_back_across_a_restart_does_not_reopen_access(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # Published windows are 3 s; a draft's lifetime is an hour.
    env = site(data_dir, LORASHELF_PRIVATE_RETENTION="3s", LORASHELF_DRAFT_RETENTION="1h")
    with serve(env, cwd=tmp_path) as first:
        # given a published private dataset whose window ends, deleted (the sweep that
        # deleted it kept the clock mark)
        owner = Owner.sign_up(first.url)
        model = owner.create_model()
        ended = owner.publish_private_dataset(model)
        # and a draft's private dataset whose window ends in an hour
        kept = draft(owner, model, weights=False)
        kept_view = owner.dataset(kept.dataset_id)
        kept_expires = parse_time(kept_view["expiresAt"])
        kept_url = kept_view["downloadUrl"]
        assert kept_url is not None
        assert httpx.get(kept_url, timeout=10).content == kept.body
        first_tombstone = wait_for_deletion(owner, ended.dataset_id, timeout=3 + 4)
        # (the sweep keeps the mark once it has deleted what was due)
        wait_for(
            lambda: as_time(read_db(data_dir, MARK)[0][0]) >= ended.expires_at,
            timeout=3,
            what="the clock mark to pass the window's end",
        )
        first.stop()

    # when the wall clock steps back: an hour and a half ahead, as far as any process saw,
    # now lies in the past (simulated by moving the mark forward across the restart)
    stepped = kept_expires + timedelta(minutes=30)
    if processes.test_database_url is not None:
        postgres.query(processes.test_database_url(), "UPDATE clock_marks SET at = ?", (stepped,))
    else:
        con = sqlite3.connect(database(data_dir))
        try:
            with con:
                (text,) = con.execute(MARK).fetchone()
                as_stored = stepped.isoformat(sep=" " if " " in text else "T")
                con.execute("UPDATE clock_marks SET at = ?", (as_stored,))
        finally:
            con.close()

    with serve(env, cwd=tmp_path) as second:
        owner.url = second.url
        kept_url = kept_url.replace(first.url, second.url)
        # then the restarted server's time resumes from the mark: the draft's window,
        # though an hour away on the wall clock, has ended; access does not reopen
        view = owner.dataset(kept.dataset_id)
        assert view["downloadUrl"] is None, view
        answer = httpx.get(kept_url, timeout=10)
        assert answer.status_code == 404
        json_answer(answer)
        # and it is deleted (at once: it is overdue), its deletedAt after the mark
        tombstone = wait_for_deletion(owner, kept.dataset_id, timeout=5)
        assert tombstone["deletionReason"] == "EXPIRED"
        assert parse_time(tombstone["deletedAt"]) >= stepped
        assert dataset_blobs(data_dir / "blobs") == set()
        # and the earlier deletion stays as it was
        assert owner.dataset(ended.dataset_id)["deletedAt"] == first_tombstone["deletedAt"]
        time.sleep(0.5)
        notices = deleted_notices(owner)
        assert notices[kept.dataset_id] == 1 and notices[ended.dataset_id] == 1, notices
        assert events_of(owner.dataset(kept.dataset_id))["DELETED"] == 1


def test_the_first_download_after_expiry_deletes_the_dataset_there_and_then(
    tmp_path: Path, redis: RedisServer
) -> None:
    data_dir = tmp_path / "var"
    # With Redis and no worker (and serve's fallback a minute away), no job runs at all.
    env = site(data_dir, LORASHELF_REDIS_URL=redis.url, LORASHELF_PRIVATE_RETENTION="3s")
    with serve(env, cwd=tmp_path) as server:
        # given a private dataset whose window has ended, its bytes still there
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        sleep_until(published.expires_at, extra=0.3)
        assert owner.dataset(published.dataset_id)["deletedAt"] is None
        assert len(dataset_blobs(data_dir / "blobs")) == 1

        # when somebody tries the old download URL
        answer = httpx.get(published.download_url, timeout=10)
        after = now_utc()

        # then it is refused, and that one request claimed the deletion there and then
        # (deletedAt before its answer); its bytes go in a task of their own right after
        # (the answer never waits on the object store), with no job to run it
        assert answer.status_code == 404
        json_answer(answer)
        tombstone = owner.dataset(published.dataset_id)
        assert published.expires_at <= parse_time(tombstone["deletedAt"]) <= after
        wait_for(
            lambda: dataset_blobs(data_dir / "blobs") == set(),
            timeout=5,
            what="the dataset's bytes to go",
        )
        wait_for(
            lambda: finished_tombstone(owner.dataset(published.dataset_id)),
            timeout=5,
            what="the tombstone written after the bytes went",
        )
        assert_deleted_once(owner, [published])
