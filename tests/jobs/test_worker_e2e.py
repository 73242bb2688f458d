"""End to end with Redis: real `redis-server`, `lorashelf serve` and `lorashelf worker`
processes on loopback, sharing one data directory (SQLite + local blobs).

`serve` only enqueues deferred ARQ jobs; the worker deletes private datasets when
their window ends and reminds their owners before. Windows are seconds long here.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from tests.conftest import dataset_blobs
from tests.processes import (
    Owner,
    RedisServer,
    finished_tombstone,
    lorashelf,
    now_utc,
    parse_time,
    serve,
    sleep_until,
    wait_for,
    wait_for_deletion,
    wait_for_reminder,
    worker,
)

RETENTION = 4  # seconds
REMINDER = 2  # seconds before deletion


@dataclass
class Site:
    data_dir: Path
    env: dict[str, str]


def site(tmp_path: Path, redis: RedisServer, sweep: str) -> Site:
    """The configuration serve and worker share: one data dir, one Redis, short windows."""
    data_dir = tmp_path / "var"
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_REDIS_URL": redis.url,
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": f"{REMINDER}s",
        "LORASHELF_SWEEP_INTERVAL": sweep,
    }
    return Site(data_dir, env)


def kinds(dataset: dict[str, object]) -> Counter[str]:
    events = dataset["events"]
    assert isinstance(events, list)
    return Counter(event["kind"] for event in events)


def test_worker_reminds_then_deletes_a_private_dataset_when_its_window_ends(
    tmp_path: Path, redis: RedisServer
) -> None:
    # A sweep every 30 s cannot do it on time: the deferred jobs must.
    given = site(tmp_path, redis, sweep="30s")
    with serve(given.env, cwd=tmp_path) as server, worker(given.env, cwd=tmp_path):
        # given a private dataset published now
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        assert published.expires_at - published.published_at == timedelta(seconds=RETENTION)
        assert len(dataset_blobs(given.data_dir / "blobs")) == 1
        assert httpx.get(published.download_url, timeout=10).status_code == 200

        # then the owner is reminded before the deletion, not before the reminder is due
        reminder = wait_for_reminder(owner, published.dataset_id, timeout=RETENTION + 2)
        seen = now_utc()
        assert seen < published.expires_at, "the reminder arrived only after the deletion time"
        sent = parse_time(reminder["createdAt"])
        assert published.expires_at - timedelta(seconds=REMINDER) <= sent < published.expires_at

        # and the dataset is deleted within about a second of expiresAt
        tombstone = wait_for_deletion(owner, published.dataset_id, timeout=RETENTION + 3)
        assert tombstone["deletionReason"] == "EXPIRED"
        assert tombstone["downloadUrl"] is None
        late = (parse_time(tombstone["deletedAt"]) - published.expires_at).total_seconds()
        assert 0 <= late < 1.5, f"deleted {late:.3f}s after expiresAt"
        assert parse_time(tombstone["expiresAt"]) == published.expires_at
        # the bytes are gone, and so is the old download URL
        assert dataset_blobs(given.data_dir / "blobs") == set()
        assert httpx.get(published.download_url, timeout=10).status_code == 404

        # and the owner got exactly one deletion notice and one reminder
        time.sleep(0.5)  # anything duplicated would show up by now
        assert len(owner.notifications_about(published.dataset_id, "DATASET_DELETED")) == 1
        assert len(owner.notifications_about(published.dataset_id, "DATASET_EXPIRING")) == 1
        history = kinds(owner.dataset(published.dataset_id))
        assert history["DELETED"] == 1 and history["REMINDED"] == 1


def test_worker_started_after_expiry_catches_up(tmp_path: Path, redis: RedisServer) -> None:
    given = site(tmp_path, redis, sweep="30s")
    with serve(given.env, cwd=tmp_path) as server:
        # given a private dataset published while no worker runs
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        assert httpx.get(published.download_url, timeout=10).status_code == 200

        # when its window ends with nobody to delete it
        sleep_until(published.expires_at, extra=0.3)

        # then access has ended anyway, although the bytes are still there (nobody tried
        # the download URL: the first to do so would delete them there and then)
        overdue = owner.dataset(published.dataset_id)
        assert overdue["downloadUrl"] is None
        assert overdue["deletedAt"] is None
        assert len(dataset_blobs(given.data_dir / "blobs")) == 1

        # (and `lorashelf worker --check` says no worker is alive)
        assert lorashelf("worker", "--check", env=given.env, cwd=tmp_path).returncode == 1

        # when a worker starts later
        with worker(given.env, cwd=tmp_path):
            ready = now_utc()
            # then it catches up at once
            tombstone = wait_for_deletion(owner, published.dataset_id, timeout=3)
            assert tombstone["deletionReason"] == "EXPIRED"
            assert tombstone["downloadUrl"] is None
            deleted_at = parse_time(tombstone["deletedAt"])
            assert (deleted_at - ready).total_seconds() < 3
            assert dataset_blobs(given.data_dir / "blobs") == set()
            assert httpx.get(published.download_url, timeout=10).status_code == 404
            time.sleep(0.5)
            assert len(owner.notifications_about(published.dataset_id, "DATASET_DELETED")) == 1
            # a reminder that fell due while no worker ran is stale: not sent after the fact
            assert owner.notifications_about(published.dataset_id, "DATASET_EXPIRING") == []
            assert kinds(owner.dataset(published.dataset_id))["DELETED"] == 1
            assert lorashelf("worker", "--check", env=given.env, cwd=tmp_path).returncode == 0


def test_two_workers_do_each_thing_exactly_once(tmp_path: Path, redis: RedisServer) -> None:
    # A sweep every second on both workers races the deferred jobs on purpose.
    given = site(tmp_path, redis, sweep="1s")
    with ExitStack() as stack:
        server = stack.enter_context(serve(given.env, cwd=tmp_path))
        workers = [stack.enter_context(worker(given.env, cwd=tmp_path, wait=False)) for _ in "ab"]
        for each in workers:
            each.wait_ready()

        # given five private datasets published one after the other
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        # (each one's bytes seen stored right after it was published: publishing five can
        # take about as long as the first one's window on a loaded machine)
        datasets, stored = [], set()
        for i in range(5):
            datasets.append(owner.publish_private_dataset(model, version=f"v{i}"))
            stored |= dataset_blobs(given.data_dir / "blobs")
        assert len(stored) == 5

        # when all their windows end
        last = max(p.expires_at for p in datasets)
        wait_for(
            lambda: all(finished_tombstone(owner.dataset(p.dataset_id)) for p in datasets),
            timeout=max(0.0, (last - now_utc()).total_seconds()) + 4,
            interval=0.2,
            what="all five datasets to be deleted",
        )
        time.sleep(1.5)  # let both workers sweep again: duplicates would show up now

        # then each was reminded once, deleted once (on time) and announced once
        assert all(each.proc.poll() is None for each in workers), "a worker died"
        notices = Counter(
            (n["kind"], n["dataset"]["id"]) for n in owner.notifications() if n["dataset"]
        )
        for published in datasets:
            dataset = owner.dataset(published.dataset_id)
            assert dataset["deletionReason"] == "EXPIRED"
            late = (parse_time(dataset["deletedAt"]) - published.expires_at).total_seconds()
            assert 0 <= late < 1.5, f"{published.dataset_id} deleted {late:.3f}s late"
            history = kinds(dataset)
            assert history["DELETED"] == 1, dataset["events"]
            assert history["REMINDED"] == 1, dataset["events"]
            assert notices[("DATASET_DELETED", published.dataset_id)] == 1
            assert notices[("DATASET_EXPIRING", published.dataset_id)] == 1
        assert dataset_blobs(given.data_dir / "blobs") == set()


def test_the_api_keeps_working_while_redis_is_down(tmp_path: Path, redis: RedisServer) -> None:
    given = site(tmp_path, redis, sweep="1s")
    with serve(given.env, cwd=tmp_path) as server:
        # given serve has talked to Redis once
        Owner.sign_up(server.url).publish_private_dataset()

        # when Redis stops
        redis.stop()

        # then a creator can still sign up and publish a private dataset, promptly
        started = time.monotonic()
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        took = time.monotonic() - started
        assert took < 5, f"signing up and publishing took {took:.1f}s with Redis down"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert owner.dataset(published.dataset_id)["status"] == "AVAILABLE"

        # and once Redis and a worker are back, the sweep deletes it on time anyway
        redis.start()
        with worker(given.env, cwd=tmp_path):
            ready = now_utc()
            tombstone = wait_for_deletion(owner, published.dataset_id, timeout=RETENTION + 3)
            deleted_at = parse_time(tombstone["deletedAt"])
            assert published.expires_at <= deleted_at
            assert (deleted_at - max(ready, published.expires_at)).total_seconds() < 2.5
            assert len(owner.notifications_about(published.dataset_id, "DATASET_DELETED")) == 1


def test_the_api_answers_within_seconds_while_redis_hangs(
    tmp_path: Path, redis: RedisServer
) -> None:
    given = site(tmp_path, redis, sweep="1s")
    with serve(given.env, cwd=tmp_path) as server:
        # given serve has talked to Redis once
        Owner.sign_up(server.url).publish_private_dataset()

        # when Redis hangs: connections are accepted, nothing is answered
        redis.pause()

        # then each request still answers within a few seconds, and publishing works
        owner = Owner.sign_up(server.url)
        model = owner.create_model()
        started = time.monotonic()
        published = owner.publish_private_dataset(model)  # 4 requests; 2 schedule jobs
        took = time.monotonic() - started
        assert took < 2 * 4.5, f"publishing took {took:.1f}s with Redis hanging"
        health = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert time.monotonic() - health < 1
        assert owner.dataset(published.dataset_id)["expiresAt"] is not None


def test_worker_without_redis_url_says_so_and_exits(tmp_path: Path) -> None:
    result = lorashelf("worker", env={"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "LORASHELF_REDIS_URL" in lines[0]
