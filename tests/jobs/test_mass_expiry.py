"""Mass expiry, end to end: many private datasets due in the same second, deleted by
the embedded runner or by two ARQ workers (on PostgreSQL with ``--db=postgres``), each
exactly once; and claims that an unreachable object store does not delay.

Real ``lorashelf serve`` and ``lorashelf worker`` processes, a real ``redis-server``, a
local S3 server (moto) behind a TCP proxy that is stopped for the outage.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import dataset_blobs
from tests.jobs.test_faults import private_drafts, site, unfinished_of
from tests.lifecycle import assert_deleted_once, deleted_notices
from tests.processes import (
    Owner,
    RedisServer,
    S3Server,
    now_utc,
    parse_time,
    s3_server,
    serve,
    sleep_until,
    wait_for,
    worker,
)
from tests.proxy import proxy

COUNT = 40  # private datasets whose windows all end while their runner is stopped
WINDOW = 25  # seconds: the draft lifetime, longer than uploading them all takes here
FINISH_BOUND = 60.0  # seconds after the runner resumes by which all must be done (generous)
# With the object store unreachable, the claim (the owner's DELETED and deletedAt, the
# key destroyed) still comes at the window's end: deletedAt within this of expiresAt.
CLAIM_LATE = 2.0
OUTAGE_WINDOW = 12  # seconds: the draft lifetime in the object-store test
OUTAGE_COUNT = 12  # datasets due during the outage: more than a worker's ten job slots


@pytest.mark.parametrize("runner", ["embedded", "two workers"])
def test_many_datasets_due_in_the_same_second_are_each_deleted_once(
    tmp_path: Path, request: pytest.FixtureRequest, runner: str
) -> None:
    data_dir = tmp_path / "var"
    env = site(data_dir, LORASHELF_DRAFT_RETENTION=f"{WINDOW}s")
    if runner == "two workers":
        redis: RedisServer = request.getfixturevalue("redis")
        env["LORASHELF_REDIS_URL"] = redis.url
    with ExitStack() as stack:
        server = stack.enter_context(serve(env, cwd=tmp_path))
        runners = [server.proc]
        if runner == "two workers":
            runners = [stack.enter_context(worker(env, cwd=tmp_path)).proc for _ in range(2)]
        # given many private datasets
        owner = Owner.sign_up(server.url)
        windows = private_drafts(owner, COUNT)
        first = min(w.expires_at for w in windows)
        assert first - now_utc() > timedelta(seconds=1), "uploads took the whole window"
        # when what deletes them is stopped while every window ends, then resumes: all
        # of them are due in the same second
        for proc in runners:
            proc.send_signal(signal.SIGSTOP)
        try:
            sleep_until(max(w.expires_at for w in windows), extra=0.2)
        finally:
            for proc in runners:
                proc.send_signal(signal.SIGCONT)
        resumed = now_utc()
        # then each is deleted exactly once: one tombstone, one DELETED event, one notice
        expected = {w.dataset_id for w in windows}
        wait_for(
            lambda: (
                not unfinished_of(owner, expected) and len(deleted_notices(owner)) == len(expected)
            ),
            timeout=FINISH_BOUND,
            interval=0.3,
            what=f"all {COUNT} datasets deleted",
        )
        took = (now_utc() - resumed).total_seconds()
        print(
            f"[mass expiry] {runner}: {COUNT} due at once, all deleted {took:.2f}s after resuming"
        )
        assert_deleted_once(owner, windows)
        assert all(n == 1 for n in deleted_notices(owner).values())
        assert dataset_blobs(data_dir / "blobs") == set()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        yield server


@pytest.mark.parametrize("runner", ["embedded", "worker"])
def test_claims_come_at_the_windows_end_while_the_object_store_is_unreachable(
    tmp_path: Path, s3: S3Server, request: pytest.FixtureRequest, runner: str
) -> None:
    port = int(s3.endpoint.rsplit(":", 1)[1])
    bucket = s3.new_bucket(versioning="Enabled")
    with proxy(port) as gate:
        env = site(
            tmp_path / "var",
            LORASHELF_DRAFT_RETENTION=f"{OUTAGE_WINDOW}s",
            LORASHELF_SWEEP_INTERVAL="2s",
            LORASHELF_BLOB_URL=f"s3://{bucket}/blobs",
            **s3.env,
        )
        env["AWS_ENDPOINT_URL_S3"] = gate.url  # botocore's own retries left as they are
        if runner == "worker":
            redis: RedisServer = request.getfixturevalue("redis")
            env["LORASHELF_REDIS_URL"] = redis.url
        with ExitStack() as stack:
            server = stack.enter_context(serve(env, cwd=tmp_path))
            if runner == "worker":
                stack.enter_context(worker(env, cwd=tmp_path))
            # given private datasets stored in the bucket
            owner = Owner.sign_up(server.url)
            windows = private_drafts(owner, OUTAGE_COUNT)
            first = min(w.expires_at for w in windows)
            assert first - now_utc() > timedelta(seconds=0.5), "uploads took the whole window"
            assert s3.everything_in(bucket)
            # when the object store becomes unreachable before their windows end
            gate.stop()
            sleep_until(max(w.expires_at for w in windows), extra=CLAIM_LATE)
            # then each was claimed at its window's end all the same: the owner sees it
            # deleted with deletedAt then, its key destroyed, and its link is dead
            for each in windows:
                view = owner.gql(
                    "query($id: ID!) { node(id: $id) { ... on TrainingDataset "
                    "{ status deletedAt keyDestroyedAt } } }",
                    {"id": each.dataset_id},
                )["node"]
                assert view["status"] == "DELETED", view
                late = (parse_time(view["deletedAt"]) - each.expires_at).total_seconds()
                assert 0 <= late <= CLAIM_LATE, (late, view)
                assert view["keyDestroyedAt"] is not None, view
                assert httpx.get(each.download_url, timeout=10).status_code == 404
            # when the object store is back
            time.sleep(1.0)
            gate.start()
            # then the bytes go (every version), and each dataset's tombstone, history
            # entry and notice are written once, deletedAt unchanged
            wait_for(
                lambda: (
                    not s3.everything_in(bucket) and len(deleted_notices(owner)) == len(windows)
                ),
                timeout=90,
                interval=0.5,
                what="the bytes deleted and the tombstones written once the store is back",
            )
            assert_deleted_once(owner, windows)
