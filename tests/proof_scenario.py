"""The proof run: the multi-machine set-up working together under faults (issue 21).

PostgreSQL, Redis, a local S3 (moto behind a TCP forwarder that can be stopped), two
``lorashelf serve`` and two ``lorashelf worker`` processes sharing them. A few dozen
users upload private datasets with weights files to drafts, then publish them in bursts
(every ``gap`` seconds) with a short window, so windows end while the faults happen:
one worker SIGKILLed just after a burst fell due (and started again), Redis restarted,
PostgreSQL restarted, the object store stopped for ``store_down`` seconds.

Clients behave as real ones: requests spread over both servers, ``TRY_AGAIN`` (and a
503 with ``Retry-After``) retried with a bounded back-off, mutations sent with an
``Idempotency-Key``, ``RESULT_UNAVAILABLE`` (committed, not read back) answered by
reading the result. Every answer is counted; the checks at the end are collected in
:attr:`Outcome.problems` (empty when the promise held).

The scenario exists once, here: the CI test (tests/jobs/test_proof_run_e2e.py, 300
datasets) and the benchmark (bench/proof_run.py, ``bench/run.py --only proof``, 1,000 by
default) both call :func:`run`; the bench imports it from tests/, as bench/common.py
imports tests.processes.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from graph.schema import ids
from tests import postgres
from tests.lifecycle import Draft, deleted_notices, deletions_late, draft, publish
from tests.lifecycle import assert_deleted_once as deleted_once
from tests.processes import (
    GraphQLError,
    Owner,
    Published,
    S3Server,
    now_utc,
    parse_time,
    redis_server,
    s3_server,
    serve,
    wait_for,
    worker,
)
from tests.proxy import proxy

PATIENCE = 60.0  # seconds a client keeps retrying one request (TRY_AGAIN, 503)
BACKOFF = (0.1, 2.0)  # its first and longest pause between tries
VERSIONS_PER_MODEL = 40  # a model holds at most 50 versions


@dataclass
class Plan:
    datasets: int = 300
    users: int = 24
    bursts: int = 16
    gap: float = 4.0  # seconds between the starts of two bursts of publishes
    retention: int = 20  # LORASHELF_PRIVATE_RETENTION, seconds
    reminder: int = 10  # LORASHELF_REMINDERS, seconds before the window's end
    store_down: float = 30.0
    threads: int = 8  # client threads publishing (and uploading drafts)
    bytes_within: float = 90.0  # bytes gone after the store is back (docs/operations.md)


class ResultUnavailable(GraphQLError):
    """The change committed but its answer was not read back: query the result."""


@dataclass
class Answers:
    """Every answer the clients got, and what was wrong with any of them."""

    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    acknowledged: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # one connection pool for every client thread (a client of its own per request
    # costs ~50 ms of CPU: its TLS context), as a real client keeps its connections, with
    # httpx's own defaults (serve holds idle connections longer than httpx keeps them)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def status(self, what: str, response: httpx.Response) -> None:
        """Count an answer's status: 503 only with Retry-After, no other 5xx."""
        with self.lock:
            self.statuses[response.status_code] += 1
        if response.status_code >= 500 and response.status_code != 503:
            self.fail(f"{what}: HTTP {response.status_code} {response.text[:300]}")
        if response.status_code == 503 and response.headers.get("retry-after") is None:
            self.fail(f"{what}: 503 without Retry-After")

    def graphql(self, url: str, query: str, variables: Mapping[str, Any] | None, token: str) -> Any:
        """One request as a real client makes it; its ``data``."""
        mutation = query.lstrip().startswith("mutation")
        found = re.search(r"\{\s*(\w+)", query)
        name = found.group(1) if found else "query"
        headers = {"authorization": f"Bearer {token}"}
        if mutation:
            headers["idempotency-key"] = uuid.uuid4().hex
        give_up, pause = time.monotonic() + PATIENCE, BACKOFF[0]
        while True:
            response = self.http.post(
                f"{url}/graphql",
                json={"query": query, "variables": dict(variables or {})},
                headers=headers,
            )
            self.status(name, response)
            try:
                body = response.json()
            except ValueError:
                self.fail(f"{name}: not JSON: {response.text[:300]}")
                raise GraphQLError(response.text[:300]) from None
            codes = [(e.get("extensions") or {}).get("code", "GRAPHQL_ERROR") for e in
                     body.get("errors") or []]  # fmt: skip
            if "error" in body:
                codes.append(body["error"])
            payload = (body.get("data") or {}).get(name) if mutation else None
            user = [e["code"] for e in (payload or {}).get("userErrors") or []]
            with self.lock:
                self.codes.update(codes + user)
            # /graphql answers these in GraphQL's shape (errors[].extensions.code), the
            # HTTP routes as {"error": code}: ``codes`` holds both
            busy = response.status_code in (503, 409) and bool(
                {"TRY_AGAIN", "IDEMPOTENCY_KEY_IN_USE"} & set(codes)
            )
            if busy or "TRY_AGAIN" in codes or user == ["TRY_AGAIN"]:
                wait = max(pause, float(response.headers.get("retry-after") or 0))
                if time.monotonic() + wait > give_up:
                    self.fail(f"{name}: still TRY_AGAIN after {PATIENCE:.0f} s")
                    raise GraphQLError(f"{name}: gave up")
                with self.lock:
                    self.retries += 1
                time.sleep(min(wait, BACKOFF[1]) * random.uniform(0.8, 1.2))
                pause = min(pause * 2, BACKOFF[1])
                continue
            committed = {"RESULT_UNAVAILABLE", "IDEMPOTENCY_ANSWER_LOST"}
            if mutation and (committed & set(codes) or user == ["RESULT_UNAVAILABLE"]):
                with self.lock:
                    self.acknowledged[name] += 1
                raise ResultUnavailable(f"{name}: {body}")
            unexpected = [c for c in codes if c != "RESULT_UNAVAILABLE" or not mutation]
            if response.status_code != 200 or unexpected:
                self.fail(f"{name}: HTTP {response.status_code} {str(body)[:300]}")
                raise GraphQLError(f"{name}: {body}")
            if mutation and not user:
                with self.lock:
                    self.acknowledged[name] += 1
            return body["data"]


class Patient(Owner):
    """An owner whose requests go round both servers and are retried as above."""

    def __init__(self, owner: Owner, urls: Sequence[str], answers: Answers):
        super().__init__(owner.url, owner.username, owner.token)
        self.urls, self.answers = list(urls), answers
        self.turn = 0

    def put(self, url: str, content: bytes, timeout: float = 60) -> httpx.Response:
        """The PUT retried while it answers 503 TRY_AGAIN (nothing was kept)."""
        give_up = time.monotonic() + PATIENCE
        while True:
            response = self.answers.http.put(url, content=content, timeout=timeout)
            self.answers.status("PUT", response)
            if response.status_code != 503 or time.monotonic() > give_up:
                if response.status_code == 200:
                    with self.answers.lock:
                        self.answers.acknowledged["PUT"] += 1
                return response
            with self.answers.lock:
                self.answers.retries += 1
                self.answers.codes[f"PUT {response.json().get('error')}"] += 1
            time.sleep(float(response.headers.get("retry-after") or 1))

    def gql(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        self.turn += 1
        return self.answers.graphql(self.urls[self.turn % len(self.urls)], query, variables,
                                    self.token)  # fmt: skip


@dataclass
class Tracked:
    """A dataset of the run: its owner, its draft, its blob, its burst; once published,
    how its owner saw it then."""

    owner: Patient
    draft: Draft
    blob_key: str
    burst: int
    published: Published | None = None

    @property
    def seen(self) -> Published:
        assert self.published is not None, f"{self.draft.dataset_id} was never published"
        return self.published


@dataclass
class Outcome:
    plan: Plan
    deleted_late: list[float] = field(default_factory=list)  # deletedAt - expiresAt
    bytes_late: list[float] = field(default_factory=list)  # bytes gone - expiresAt
    reminders_late: list[float] = field(default_factory=list)  # notice - reminder due
    answers: Answers = field(default_factory=Answers)
    downloads: dict[str, Counter[str]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)  # name, at, seconds
    phases: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def spread(values: list[float]) -> str:
            if not values:
                return "-"
            return "/".join(f"{q:.2f}" for q in percentiles(values))

        faults = ", ".join(f"{f['name']}@{f['at']:.1f}s" for f in self.faults)
        return (
            f"[proof] {self.plan.datasets} datasets, {self.plan.users} users: deletedAt late "
            f"p50/p99/max {spread(self.deleted_late)} s, bytes gone {spread(self.bytes_late)} s, "
            f"reminders {spread(self.reminders_late)} s; statuses {dict(self.answers.statuses)}, "
            f"codes {dict(self.answers.codes)}, retries {self.answers.retries}; faults {faults}; "
            f"problems {len(self.problems)}"
        )


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return at(0.5), at(0.99), ordered[-1]


def everything_by_key(s3: S3Server, bucket: str) -> set[str]:
    return {entry.split("@", 1)[0] for entry in s3.everything_in(bucket)}


def run(workdir: Path, plan: Plan | None = None, log: Callable[[str], None] = print) -> Outcome:
    """The whole run; its numbers and every broken promise in :attr:`Outcome.problems`."""
    plan = plan or Plan()
    outcome = Outcome(plan)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        # moto with its listing made proportional to what is listed (tests/moto_server.py)
        s3 = stack.enter_context(s3_server(workdir, module="tests.moto_server"))
        cluster = stack.enter_context(postgres.cluster())
        database = cluster.url(cluster.new_database())
        redis = stack.enter_context(redis_server(workdir / "redis"))
        gate = stack.enter_context(proxy(int(s3.endpoint.rsplit(":", 1)[1])))
        bucket = s3.new_bucket()
        env = {
            "LORASHELF_DATA_DIR": str(workdir / "var"),
            "LORASHELF_DATABASE_URL": database,
            "LORASHELF_REDIS_URL": redis.url,
            "LORASHELF_BLOB_URL": f"s3://{bucket}/blobs",
            **s3.env,
            "AWS_ENDPOINT_URL_S3": gate.url,
            "LORASHELF_PRIVATE_RETENTION": f"{plan.retention}s",
            "LORASHELF_REMINDERS": f"{plan.reminder}s",
            "LORASHELF_SWEEP_INTERVAL": "5s",
            "LORASHELF_SIGNUP_RATE_PER_ADDRESS": "100000/hour",
            "LORASHELF_MAX_REQUESTS_PER_ADDRESS": "1000",
            "LORASHELF_MAX_CONNECTIONS_PER_ADDRESS": "1000",
        }
        # the first serve makes the master key; the others start side by side after it
        servers = [stack.enter_context(serve(env, cwd=workdir))]
        workers = [stack.enter_context(worker(env, cwd=workdir, wait=False)) for _ in range(2)]
        servers.append(stack.enter_context(serve(env, cwd=workdir)))
        for each in workers:
            each.wait_ready(timeout=60)
        urls = [s.url for s in servers]
        outcome.phases["start"] = time.monotonic() - began
        log(f"[proof] started in {outcome.phases['start']:.1f} s; drafts...")

        tracked = prepare(plan, urls, outcome, database)
        outcome.phases["drafts"] = time.monotonic() - began - outcome.phases["start"]
        log(f"[proof] {len(tracked)} drafts in {outcome.phases['drafts']:.1f} s; publishing")
        checks = Downloads(outcome)
        bytes_watch = BytesWatch(s3, bucket, tracked)
        t0 = time.monotonic()
        publisher = Publisher(plan, tracked, checks, t0)

        def fault(name: str, at: float, act: Callable[[], None]) -> None:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            started = time.monotonic()
            act()
            outcome.faults.append(
                {"name": name, "at": started - t0, "seconds": time.monotonic() - started}
            )
            log(f"[proof] {name} at {started - t0:.1f} s ({time.monotonic() - started:.1f} s)")

        def kill_worker() -> None:
            workers[0].kill()
            time.sleep(1.0)
            # started again at once; ready once the store is back and its start-up sweep
            # has finished every claim the dead one left (waited for in the background:
            # the store may be away, and the run goes on meanwhile)
            workers[0] = stack.enter_context(worker(env, cwd=workdir, wait=False))
            restarted = time.monotonic()

            def ready() -> None:
                try:
                    workers[0].wait_ready(timeout=120)
                    outcome.phases["worker ready again"] = time.monotonic() - restarted
                except RuntimeError as exc:
                    outcome.problems.append(f"the restarted worker: {exc}"[:1000])

            threading.Thread(target=ready, name="worker-ready", daemon=True).start()

        def restart_redis() -> None:
            redis.stop()
            time.sleep(2.0)
            redis.start()

        # the object store goes away as the windows start to end, for store_down seconds
        fault("object store stopped", plan.retention + 0.5 * plan.gap, gate.stop)
        store_stopped = time.monotonic()
        # the worker dies just after the third burst fell due (its deletions under way)
        publisher.published[2].wait(plan.gap * 10)
        burst_due = min(t.seen.expires_at for t in tracked if t.burst == 2)
        fault("worker SIGKILL", (burst_due - now_utc()).total_seconds() + 0.15 +
              (time.monotonic() - t0), kill_worker)  # fmt: skip
        fault("Redis restart", plan.retention + 4.5 * plan.gap, restart_redis)
        fault("PostgreSQL restart", plan.retention + 7 * plan.gap,
              lambda: cluster.restart(down_for=3))  # fmt: skip
        fault("object store back", store_stopped + plan.store_down - t0, gate.start)
        outcome.faults[0]["seconds"] = time.monotonic() - store_stopped
        store_back = now_utc()
        publisher.join(120)
        outcome.phases["faults"] = time.monotonic() - t0
        finish(plan, outcome, tracked, checks, bytes_watch, store_back, s3, bucket)
        outcome.phases["checks"] = time.monotonic() - t0 - outcome.phases["faults"]
        if publisher.is_alive():
            outcome.problems.append("the publishers did not finish")
        if "worker ready again" not in outcome.phases and workers[0].proc.poll() is None:
            outcome.problems.append("the restarted worker was not ready by the end of the run")
        # an expected state (busy, away) is never logged as an unexpected failure
        for server in servers:
            text = server.log.read_text(errors="replace")
            for sign in ("Exception in ASGI application", "unexpected error", "INTERNAL_ERROR"):
                if sign in text:
                    outcome.problems.append(f"{server.log.name}: {text.count(sign)}x {sign!r}")
    outcome.phases["total"] = time.monotonic() - began
    outcome.problems[:0] = outcome.answers.failures
    log(outcome.summary())
    return outcome


def prepare(plan: Plan, urls: list[str], outcome: Outcome, database: str) -> list[Tracked]:
    """The users, their models, one draft per dataset (a weights file and the private
    dataset uploaded); which blob holds each dataset."""
    answers = outcome.answers
    with ThreadPoolExecutor(plan.threads) as pool:
        owners = list(
            pool.map(
                lambda i: Patient(Owner.sign_up(urls[i % 2]), urls, answers), range(plan.users)
            )
        )
    per_owner = math.ceil(plan.datasets / plan.users)
    models = {
        o.username: [
            o.create_model(f"Proof {n}") for n in range(math.ceil(per_owner / VERSIONS_PER_MODEL))
        ]  # fmt: skip
        for o in owners
    }

    def one(n: int) -> tuple[Patient, Draft]:
        owner = owners[n % plan.users]
        model = models[owner.username][(n // plan.users) // VERSIONS_PER_MODEL]
        return owner, draft(owner, model)

    with ThreadPoolExecutor(plan.threads) as pool:
        drafts = list(pool.map(one, range(plan.datasets)))
    keys = {
        ids.encode("TrainingDataset", public_id): key
        for public_id, key in postgres.query(
            database, "SELECT public_id, blob_key FROM training_datasets"
        )
    }
    size = math.ceil(plan.datasets / plan.bursts)
    return [
        Tracked(owner, d, str(keys[d.dataset_id]), n // size) for n, (owner, d) in enumerate(drafts)
    ]


class Publisher(threading.Thread):
    """Publishes burst after burst (``plan.threads`` at a time), a burst every ``gap``
    seconds from ``t0``; each published dataset goes to the download checks."""

    def __init__(self, plan: Plan, tracked: list[Tracked], checks: Downloads, t0: float):
        super().__init__(name="publisher", daemon=True)
        self.plan, self.tracked, self.checks, self.t0 = plan, tracked, checks, t0
        self.published = [threading.Event() for _ in range(max(t.burst for t in tracked) + 1)]
        self.start()

    def run(self) -> None:
        with ThreadPoolExecutor(self.plan.threads) as pool:
            for burst, done in enumerate(self.published):
                time.sleep(max(0.0, self.t0 + burst * self.plan.gap - time.monotonic()))
                list(pool.map(self.one, [t for t in self.tracked if t.burst == burst]))
                done.set()

    def one(self, each: Tracked) -> None:
        try:
            each.published = publish(each.owner, each.draft)
        except ResultUnavailable:  # it was published: read it, as a client would
            view = each.owner.dataset(each.draft.dataset_id)
            expires = parse_time(view["expiresAt"])
            each.published = Published(
                each.draft.dataset_id,
                each.draft.version_id,
                expires - timedelta(seconds=self.plan.retention),
                expires,
                view["downloadUrl"],
                each.draft.body,
            )
        except Exception as exc:  # noqa: BLE001 - counted among the failures
            each.owner.answers.fail(f"publishing {each.draft.dataset_id}: {exc!r}"[:400])
            return
        self.checks.add(each)


class Downloads:
    """Each dataset's old download link (from the publish answer) tried BEFORE seconds
    before its window ends (its bytes, or 503 while something is away) and AFTER seconds
    after it (404 NOT_FOUND, as a missing dataset; a 503 retried until it is not)."""

    BEFORE, AFTER = 3.0, 0.1

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self.outcome.downloads = {"before": Counter(), "after": Counter()}
        self.due: list[tuple[datetime, int, str, Tracked]] = []
        self.turn = 0
        self.cv = threading.Condition()
        self.closing = False
        self.pool = ThreadPoolExecutor(16)
        self.thread = threading.Thread(target=self.loop, name="downloads", daemon=True)
        self.thread.start()

    def add(self, each: Tracked) -> None:
        with self.cv:
            for moment, kind in (
                (each.seen.expires_at - timedelta(seconds=self.BEFORE), "before"),
                (each.seen.expires_at + timedelta(seconds=self.AFTER), "after"),
            ):
                self.turn += 1
                heapq.heappush(self.due, (moment, self.turn, kind, each))
            self.cv.notify()

    def loop(self) -> None:
        while True:
            with self.cv:
                while not self.due or self.due[0][0] > now_utc():
                    if self.closing and not self.due:
                        return
                    wait = (self.due[0][0] - now_utc()).total_seconds() if self.due else 0.5
                    self.cv.wait(max(0.01, min(wait, 0.5)))
                _, _, kind, each = heapq.heappop(self.due)
            self.pool.submit(self.attempt, kind, each)

    def attempt(self, kind: str, each: Tracked) -> None:
        try:
            (self.before if kind == "before" else self.after)(each)
        except httpx.RemoteProtocolError as exc:
            # a body cut: by design only when the window ends while it is sent (a
            # download in flight ends at expiresAt: graph/http/streaming.py)
            if kind == "before" and now_utc() >= each.seen.expires_at:
                self.count(kind, "200, body cut at expiresAt (in flight then)")
            else:
                self.problem(f"{each.seen.dataset_id}: download {kind} expiry: {exc!r}"[:300])
        except Exception as exc:  # noqa: BLE001 - a download that failed outright
            self.count(kind, type(exc).__name__)
            self.problem(f"{each.seen.dataset_id}: download {kind} expiry: {exc!r}"[:300])

    def count(self, kind: str, label: str) -> None:
        with self.cv:
            self.outcome.downloads[kind][label] += 1

    def before(self, each: Tracked) -> None:
        if now_utc() >= each.seen.expires_at - timedelta(seconds=0.5):
            self.count("before", "not tried (the checks ran late)")
            return
        answer = self.outcome.answers.http.get(each.seen.download_url)
        answered = now_utc()
        self.outcome.answers.status("download before expiry", answer)
        self.count("before", str(answer.status_code))
        if answer.status_code == 200 and answer.content != each.seen.body:
            self.problem(f"{each.seen.dataset_id}: another body before expiry")
        elif answer.status_code not in (200, 503) and answered < each.seen.expires_at:
            self.problem(f"{each.seen.dataset_id}: {answer.status_code} before expiry")

    def after(self, each: Tracked) -> None:
        give_up = time.monotonic() + PATIENCE
        while True:
            sent = now_utc()
            answer = self.outcome.answers.http.get(each.seen.download_url)
            self.outcome.answers.status("download after expiry", answer)
            if answer.status_code != 503 or time.monotonic() > give_up:
                break
            self.count("after", "503 (retried)")
            time.sleep(float(answer.headers.get("retry-after") or 1))
        code = answer.json().get("error") if answer.status_code != 200 else None
        self.count("after", f"{answer.status_code} {code}")
        if sent < each.seen.expires_at or (answer.status_code, code) != (404, "NOT_FOUND"):
            self.problem(f"{each.seen.dataset_id}: after expiry {answer.status_code} {code}")

    def problem(self, what: str) -> None:
        with self.cv:
            self.outcome.problems.append(what)

    def close(self, timeout: float) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify()
        self.thread.join(timeout)
        self.pool.shutdown(wait=True)


class BytesWatch(threading.Thread):
    """When each dataset's object left the bucket (the store itself, not the forwarder,
    listed every ``every`` seconds)."""

    def __init__(self, s3: S3Server, bucket: str, tracked: list[Tracked], every: float = 1.0):
        super().__init__(name="bytes-watch", daemon=True)
        self.s3, self.bucket, self.every = s3, bucket, every
        self.keys = {f"blobs/{t.blob_key}": t.draft.dataset_id for t in tracked}
        self.gone: dict[str, datetime] = {}
        self.seen_first = self.keys.keys() <= everything_by_key(s3, bucket)
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        s3 = self.s3.client()
        while not self.stop.wait(self.every) and len(self.gone) < len(self.keys):
            present: set[str] = set()
            try:  # (moto answers a 500 now and then while objects are deleted)
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                    present.update(item["Key"] for item in page.get("Contents", []))
            except Exception:  # noqa: BLE001 - the next look will do
                continue
            for key, dataset_id in self.keys.items():
                if key not in present and dataset_id not in self.gone and self.absent(s3, key):
                    self.gone[dataset_id] = now_utc()  # confirmed by then: never early

    def absent(self, s3: Any, key: str) -> bool:
        """A key missing from a listing, confirmed missing (a listing paged while keys
        go can skip some)."""
        try:
            s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError
            return "404" in str(exc) or "Not Found" in str(exc)
        return False

    def wait(self, until: datetime) -> None:
        while len(self.gone) < len(self.keys) and now_utc() < until:
            time.sleep(0.5)
        self.stop.set()
        self.join(30)


VERSIONS = (
    "{ viewer { models(first: 3) { edges { node { versions(first: 50) "
    "{ id status files(first: 2) { status } trainingDataset { id } } } } } } }"
)


def finish(
    plan: Plan,
    outcome: Outcome,
    tracked: list[Tracked],
    checks: Downloads,
    watch: BytesWatch,
    store_back: datetime,
    s3: S3Server,
    bucket: str,
) -> None:
    """Wait for the end of every window and every deletion; check what was promised."""
    problems = outcome.problems
    published = [t for t in tracked if t.published is not None]
    if len(published) < len(tracked):
        problems.append(f"{len(tracked) - len(published)} drafts were never published")
    if not watch.seen_first:
        problems.append("the datasets' objects were not all in the bucket before the run")
    mine: dict[str, list[Tracked]] = {}
    for each in published:
        mine.setdefault(each.owner.username, []).append(each)

    def each_owner(step: Callable[[Patient, list[Tracked]], None]) -> None:
        def one(group: list[Tracked]) -> None:
            try:
                step(group[0].owner, group)
            except AssertionError as exc:
                problems.append(f"{group[0].owner.username}: {exc}"[:600])

        with ThreadPoolExecutor(plan.threads) as pool:
            list(pool.map(one, mine.values()))

    # every dataset a finished tombstone: deletedAt from the claim, at or after expiresAt
    def late(owner: Patient, group: list[Tracked]) -> None:
        outcome.deleted_late.extend(deletions_late(owner, [t.seen for t in group], within=60))

    each_owner(late)
    if outcome.deleted_late and min(outcome.deleted_late) < 0:
        problems.append(f"a deletedAt before its expiresAt: {min(outcome.deleted_late):.3f} s")
    # the bytes gone (the claims the store's outage held back: once their lease is over)
    watch.wait(until=store_back + timedelta(seconds=plan.bytes_within))
    for each in published:
        gone = watch.gone.get(each.seen.dataset_id)
        if gone is None:
            problems.append(f"{each.seen.dataset_id}: its object is still in the bucket")
        else:
            outcome.bytes_late.append((gone - each.seen.expires_at).total_seconds())
            if gone < each.seen.expires_at:
                problems.append(f"{each.seen.dataset_id}: its object went before expiresAt")
    checks.close(timeout=PATIENCE + 10)

    def once(owner: Patient, group: list[Tracked]) -> None:
        # one tombstone, one DELETED event, one notice (they follow the bytes)
        wait_for(
            lambda: all(deleted_notices(owner)[t.seen.dataset_id] for t in group),
            timeout=30,
            interval=0.5,
            what="their DATASET_DELETED notices",
        )
        deleted_once(owner, [t.seen for t in group])
        # one reminder each, neither lost nor doubled
        reminders = Counter[str]()
        due = {t.seen.dataset_id: t.seen.expires_at - timedelta(seconds=plan.reminder)
               for t in group}  # fmt: skip
        for notice in owner.notifications():
            about = (notice["dataset"] or {}).get("id")
            if notice["kind"] == "DATASET_EXPIRING" and about in due:
                reminders[about] += 1
                late = (parse_time(notice["createdAt"]) - due[about]).total_seconds()
                outcome.reminders_late.append(late)
        wrong = {d: reminders[d] for d in due if reminders[d] != 1}
        assert not wrong, f"reminders: {wrong}"
        # every acknowledged write is there: the version published, its weights file
        # available, its dataset (deleted now) the one uploaded
        models = owner.gql(VERSIONS)["viewer"]["models"]["edges"]
        versions = {v["id"]: v for m in models for v in m["node"]["versions"]}
        for each in group:
            version = versions.get(each.seen.version_id)
            assert (
                version is not None
                and version["status"] == "PUBLISHED"
                and [f["status"] for f in version["files"]] == ["AVAILABLE"]
                and (version["trainingDataset"] or {}).get("id") == each.seen.dataset_id
            ), f"version {each.seen.version_id}: {version}"

    each_owner(once)
    # nothing of a deleted dataset left in the bucket: no object, version or marker
    left = everything_by_key(s3, bucket)
    stale = [t.seen.dataset_id for t in published if f"blobs/{t.blob_key}" in left]
    if stale:
        problems.append(f"{len(stale)} deleted datasets still in the bucket: {stale[:5]}")
    if not left:
        problems.append("the bucket is empty: the weights files went too")
