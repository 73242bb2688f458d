"""Starting while a dependency is briefly away: ``serve`` and ``worker`` wait for the
object store and the database with a bounded back-off (``LORASHELF_START_PATIENCE``),
saying what they wait for, and start once it is back; one that stays away ends the
start with one line and exit 1, not a "configuration error"."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.processes import (
    Owner,
    RedisServer,
    S3Server,
    free_port,
    lorashelf,
    s3_server,
    serve,
    wait_for,
    worker,
)
from tests.proxy import proxy


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        yield server


def open_when_logged(log: Path, text: str, action: Callable[[], None]) -> threading.Event:
    """Run ``action`` (once) as soon as ``log`` holds ``text``, or when the returned
    event is set (then only if it had not run: the test ends either way)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if log.exists() and text in log.read_text(errors="replace"):
                break
        if not done.is_set():
            action()

    threading.Thread(target=watch, daemon=True).start()
    return done


def s3_site(tmp_path: Path, s3: S3Server, endpoint: str, patience: str) -> dict[str, str]:
    return {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_BLOB_URL": f"s3://{s3.new_bucket()}/blobs",
        "LORASHELF_START_PATIENCE": patience,
        **s3.env,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_MAX_ATTEMPTS": "1",
    }


@pytest.mark.backend_independent(reason="the object store's absence at start")
def test_serve_waits_for_an_object_store_that_comes_back(tmp_path: Path, s3: S3Server) -> None:
    port = int(s3.endpoint.rsplit(":", 1)[1])
    with proxy(port, started=False) as gate:
        # given an object store that does not answer when serve starts, and does once
        # serve has said that it waits for it
        env = s3_site(tmp_path, s3, gate.url, "60s")
        port = free_port()
        opens = open_when_logged(tmp_path / f"serve-{port}.log", "waiting for", gate.start)
        try:
            # when serve starts, then it becomes healthy once the store answers
            with serve(env, cwd=tmp_path, port=port) as server:
                # and it said what it waited for, and works with the store
                log = server.log.read_text()
                assert "waiting for the object store" in log
                assert "configuration error" not in log
                owner = Owner.sign_up(server.url)
                version = owner.gql(
                    "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
                    "{ version { id } } }",
                    {"i": {"modelId": owner.create_model(), "name": "v1", "baseModel": "SDXL_1_0"}},
                )["createModelVersion"]["version"]["id"]
                owner.upload_weights(version)
        finally:
            opens.set()


@pytest.mark.backend_independent(reason="the object store's absence at start")
def test_a_worker_starts_beside_an_object_store_that_is_away_and_uses_it_once_back(
    tmp_path: Path, s3: S3Server, redis: RedisServer
) -> None:
    port = int(s3.endpoint.rsplit(":", 1)[1])
    with proxy(port, started=False) as gate:
        env = {**s3_site(tmp_path, s3, gate.url, "60s"), "LORASHELF_REDIS_URL": redis.url}
        # when a worker starts while the object store does not answer
        with worker(env, cwd=tmp_path, wait=False) as running:
            # then it is ready at once (its start-up sweep done, ARQ running), the store
            # still away: the work that needs only the database does not wait for it
            running.wait_ready(timeout=30)
            assert "starting without it" in running.output()
            assert lorashelf("worker", "--check", env=env, cwd=tmp_path).returncode == 0
            # and once the store answers, the worker uses it, and stays up
            gate.start()
            wait_for(
                lambda: "the object store answers" in running.output(),
                timeout=30,
                what="the worker to reach the object store",
            )
            assert running.proc.poll() is None
            assert "Traceback" not in running.output()


@pytest.mark.backend_independent(reason="the object store's absence at start")
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_object_store_that_stays_away_ends_the_start_in_one_line(
    tmp_path: Path, s3: S3Server, command: str
) -> None:
    # given an object store that never answers, and two seconds of patience
    env = {
        **s3_site(tmp_path, s3, f"http://127.0.0.1:{free_port()}", "2s"),
        "LORASHELF_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never reached
    }
    # when the process starts
    args = ["serve", "--port", str(free_port())] if command == "serve" else ["worker"]
    done = lorashelf(*args, env=env, cwd=tmp_path)
    # then it gives up after waiting, with one last line that says so, and exit 1 (a
    # worker waits beside the work that needs only the database, then stops)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lorashelf: the object store did not become available within 2s")
    then = "nothing was started" if command == "serve" else "the worker stopped"
    assert last.endswith(then), last
    assert "waiting for the object store" in done.stderr
    assert "configuration error" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.postgres_only(reason="a PostgreSQL server that is down when serve starts")
def test_serve_waits_for_a_database_that_is_starting(tmp_path: Path) -> None:
    with postgres.cluster() as cluster:
        # given a database server that is down when serve starts, and back 3 s later
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_DATABASE_URL": cluster.url(cluster.new_database()),
            "LORASHELF_START_PATIENCE": "30s",
        }
        cluster.stop()
        port = free_port()
        back = open_when_logged(tmp_path / f"serve-{port}.log", "waiting for", cluster.resume)
        try:
            # when serve starts, then it becomes healthy once the database answers
            with serve(env, cwd=tmp_path, port=port) as server:
                log = server.log.read_text()
                assert "waiting for the database" in log
                assert "Traceback" not in log
                Owner.sign_up(server.url).create_model()
        finally:
            back.set()


@pytest.mark.postgres_only(reason="a PostgreSQL server that stays down")
def test_migrate_gives_up_on_a_database_that_stays_down_in_one_line(tmp_path: Path) -> None:
    with postgres.cluster() as cluster:
        # given a database server that is down, and two seconds of patience
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_DATABASE_URL": cluster.url(cluster.new_database()),
            "LORASHELF_START_PATIENCE": "2s",
        }
        cluster.stop()
        # when migrations are applied
        done = lorashelf("migrate", env=env, cwd=tmp_path)
        # then it waited, then gave up with one line and exit 1
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("lorashelf: the database did not become available within 2s")
        assert "waiting for the database" in done.stderr
        assert "Traceback" not in done.stderr
        cluster.resume()  # for the cluster's own clean-up
