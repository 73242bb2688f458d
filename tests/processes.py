"""Real processes for end-to-end tests: `lorashelf serve`, `lorashelf worker`, redis-server.

Every helper is a context manager that stops what it started, also when the test
fails; on failure it prints the tail of the process's log (pytest shows it).
Children never inherit ``LORASHELF_*`` variables from the test run's environment:
each test passes exactly the configuration it means.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

LORASHELF = [sys.executable, "-m", "graph.cli"]
ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")
_names = itertools.count(1)


# Ports for servers and proxies the tests start, stop and start again on the same port:
# below the kernel's ephemeral range (32768 and up on Linux), where a client's outgoing
# connection never takes one while it is free between a stop and a start (a proxy
# started again failed with "Address already in use" in CI), and a slice of it for each
# xdist worker, so that two workers never pick the same one.
PORTS = range(20000, 32000)
_next_port = itertools.count()


def free_port() -> int:
    """A loopback port nothing listens on now, which stays ours across a stop and a
    start (see PORTS)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    size = len(PORTS) // max(workers, 1)
    first = PORTS.start + size * index
    offset = os.getpid() % size  # another run on the machine starts elsewhere
    for _ in range(size):
        port = first + (offset + next(_next_port)) % size
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + size - 1}")


# With ``--db=postgres``: the current test's database URL (tests/conftest.py sets it
# for each test); children get it as LORASHELF_DATABASE_URL unless ``env`` sets one.
test_database_url: Callable[[], str] | None = None


# With the SQLite pass: a database with every migration applied (tests/conftest.py
# makes it once per test process). A ``serve`` or ``worker`` started on a data dir that
# does not exist yet starts from a copy of it, as a PostgreSQL test database is a copy
# of a migrated template: applying the migrations costs 3-4 s of CPU per start. Tests
# of a first start pass ``fresh=True`` and get the path a new install takes.
sqlite_template: Path | None = None


def seed_data_dir(env: Mapping[str, str], *, fresh: bool) -> None:
    """Give a child's new data dir a migrated SQLite database (see :data:`sqlite_template`)."""
    data_dir = env.get("LORASHELF_DATA_DIR")
    if (
        fresh
        or sqlite_template is None
        or not data_dir
        or "LORASHELF_DATABASE_URL" in env
        or test_database_url is not None
        or Path(data_dir).exists()
    ):
        return
    Path(data_dir).mkdir(parents=True, mode=0o700)
    database = Path(data_dir) / "lorashelf.sqlite3"
    shutil.copyfile(sqlite_template, database)
    database.chmod(0o600)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: ours minus LORASHELF_*, plus ``env`` (and the
    test's PostgreSQL database when the suite runs on PostgreSQL)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LORASHELF_")}
    database = {}
    if test_database_url is not None and "LORASHELF_DATABASE_URL" not in env:
        database = {"LORASHELF_DATABASE_URL": test_database_url()}
    return {**inherited, "PYTHONPATH": str(ROOT), **database, **env}


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(
    probe: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
        last = probe()
    return last


def wait_until_healthy(
    base_url: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 30,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = f":\n{log_tail(log)}" if log else ""
            raise RuntimeError(f"server exited with {proc.returncode}{tail}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy in time")


# lorashelf serve ---------------------------------------------------------------


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path):
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        _terminate(self.proc)


@contextmanager
def serve(
    env: Mapping[str, str],
    cwd: Path,
    port: int | None = None,
    args: Sequence[str] = (),
    *,
    fresh: bool = False,
    healthy_within: float = 30,
) -> Iterator[Server]:
    """Run `lorashelf serve` (with ``args``) until the block ends (its links are built for
    the address it listens on, unless ``env`` sets LORASHELF_PUBLIC_URL). A new data dir
    starts from a migrated database unless ``fresh`` (:func:`seed_data_dir`)."""
    seed_data_dir(env, fresh=fresh)
    port = port or free_port()
    log = cwd / f"serve-{port}.log"
    if "LORASHELF_SMTP_URL" in env and "LORASHELF_PUBLIC_URL" not in env:
        # e-mail carries absolute links, so a deployment that sends it must say where it
        # is: this one is where it listens
        env = {**env, "LORASHELF_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*LORASHELF, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log)
    try:
        wait_until_healthy(server.url, proc, timeout=healthy_within, log=log)
        yield server
    except BaseException:
        print(f"--- {log.name} (last lines) ---\n{log_tail(log)}")
        raise
    finally:
        server.stop()


# lorashelf worker --------------------------------------------------------------


class Worker:
    READY = "worker ready"

    def __init__(self, proc: subprocess.Popen[bytes], log: Path):
        self.proc = proc
        self.log = log

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 20) -> None:
        """Until its log says it is connected and running (its startup sweep is queued)."""
        deadline = time.monotonic() + timeout
        while self.READY not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.proc.returncode}:\n{log_tail(self.log)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(f"worker not ready after {timeout}s:\n{log_tail(self.log)}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        _terminate(self.proc)


@contextmanager
def worker(
    env: Mapping[str, str],
    cwd: Path,
    *,
    wait: bool = True,
    args: Sequence[str] = (),
    ready_within: float = 20,
    fresh: bool = False,
) -> Iterator[Worker]:
    """Run `lorashelf worker` (with ``args``) until the block ends; by default wait until
    it is ready. A new data dir starts from a migrated database unless ``fresh``."""
    seed_data_dir(env, fresh=fresh)
    log = cwd / f"worker-{os.getpid()}-{next(_names)}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*LORASHELF, "worker", *args],
            cwd=cwd,
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Worker(proc, log)
    try:
        if wait:
            running.wait_ready(timeout=ready_within)
        yield running
    except BaseException:
        print(f"--- {log.name} (last lines) ---\n{log_tail(log)}")
        raise
    finally:
        running.stop()


def lorashelf(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run one `lorashelf` command to completion and capture its output."""
    return subprocess.run(
        [*LORASHELF, *args],
        cwd=cwd,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# redis-server ------------------------------------------------------------------


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A throwaway redis-server on loopback: no persistence, its own directory."""

    def __init__(self, executable: str, port: int, workdir: Path):
        self.executable = executable
        self.port = port
        self.workdir = workdir
        self.log = workdir / f"redis-{port}.log"
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not redis_ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}:\n{log_tail(self.log)}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (its data is gone: nothing is persisted); `start()` brings it back empty."""
        if self.proc is not None:
            self.resume()
            _terminate(self.proc, timeout=10)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: it keeps its port, accepts connections, but answers nothing (a hung Redis)."""
        assert self.proc is not None and self.proc.poll() is None, "redis-server is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@contextmanager
def redis_server(workdir: Path | None = None) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, stopped when the block ends.

    Raises (the test fails, it does not skip) when redis-server is not installed.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError(
            "redis-server is not on PATH: the retention end-to-end tests need a real Redis "
            "(apt-get install redis-server; scripts/test installs it in CI)"
        )
    with _workdir(workdir) as directory:
        server = RedisServer(executable, free_port(), directory)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="lorashelf-redis-") as name:
        yield Path(name)


# moto's S3 server ----------------------------------------------------------------


@dataclass
class S3Server:
    """moto's server mode on a loopback port: an S3-compatible endpoint, state in memory."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a client of this server needs."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self) -> Any:
        """A plain (blocking) boto3 client for the test's own checks."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self, *, versioning: str | None = None) -> str:
        """A fresh, empty bucket (unversioned unless told: Enabled or Suspended)."""
        name = f"lorashelf-{os.getpid()}-{next(_names)}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioning == "Suspended":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
        return name

    def everything_in(self, bucket: str) -> list[str]:
        """Every object version and delete marker in a bucket (what deletion must not leave)."""
        found: list[str] = []
        pages = self.client().get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:  # a page holds at most 1,000
            found += [f"{v['Key']}@{v['VersionId']}" for v in page.get("Versions", [])]
            found += [
                f"{m['Key']}@{m['VersionId']} (marker)" for m in page.get("DeleteMarkers", [])
            ]
        return found


@contextmanager
def s3_server(workdir: Path, module: str = "moto.server") -> Iterator[S3Server]:
    """moto's S3 server (``python -m moto.server``, or ``module``: tests/moto_server.py
    for many objects) on a free loopback port."""
    port = free_port()
    log = workdir / f"moto-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                httpx.get(f"{server.endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"moto server not up in 30s:\n{log_tail(log)}") from None
                time.sleep(0.1)
        yield server
    finally:
        _terminate(proc)


# GraphQL over HTTP against a real server ---------------------------------------


class GraphQLError(AssertionError):
    pass


def gql(
    url: str,
    query: str,
    variables: Mapping[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 10,
) -> Any:
    """POST a GraphQL request; fail on HTTP or GraphQL errors; return ``data``."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        headers=headers,
        timeout=timeout,
    )
    if response.status_code != 200:
        raise GraphQLError(f"HTTP {response.status_code}: {response.text}")
    body = response.json()
    if "errors" in body:
        raise GraphQLError(str(body["errors"]))
    return body["data"]


@dataclass
class Published:
    """A private dataset of a just-published version, as its owner saw it then."""

    dataset_id: str
    version_id: str
    published_at: datetime
    expires_at: datetime
    download_url: str
    body: bytes


DATASET_FIELDS = (
    "id status visibility expiresAt deletedAt deletionReason downloadUrl events { kind at } "
    "deletionReceipt { keyId }"
)


class Owner:
    """A signed-up user of a running server: the given/when steps of the e2e tests."""

    def __init__(self, url: str, username: str, token: str):
        self.url = url
        self.username = username
        self.token = token

    @classmethod
    def sign_up(cls, url: str, username: str | None = None) -> Owner:
        username = username or f"creator{os.getpid()}x{next(_names)}"
        payload = gql(
            url,
            "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { code message } } }",
            {"i": {"username": username, "password": "correct horse battery"}},
        )["signUp"]
        assert payload["userErrors"] == [], payload["userErrors"]
        return cls(url, username, payload["token"])

    def gql(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        return gql(self.url, query, variables, self.token)

    def put(self, url: str, content: bytes, timeout: float = 10) -> httpx.Response:
        """An upload's bytes PUT to its URL (a subclass may retry, as a real client)."""
        return httpx.put(url, content=content, timeout=timeout)

    def mutate(self, name: str, query: str, variables: Mapping[str, Any]) -> Any:
        payload = self.gql(query, variables)[name]
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload

    def create_model(self, name: str = "Cats") -> str:
        model_id: str = self.mutate(
            "createModel",
            "mutation($i: CreateModelInput!) { createModel(input: $i) "
            "{ model { id } userErrors { code message } } }",
            {"i": {"name": name, "description": "a LoRA"}},
        )["model"]["id"]
        return model_id

    def upload_weights(self, version_id: str, body: bytes | None = None) -> str:
        """A weights file (a real safetensors file) uploaded to a draft; its ID."""
        from tests.conftest import make_safetensors

        content = body if body is not None else make_safetensors()
        started = self.mutate(
            "startModelFileUpload",
            "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
            "{ file { id } uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "lora.safetensors",
                    "sizeBytes": len(content),
                }
            },
        )
        put = self.put(started["uploadUrl"], content)
        assert put.status_code == 200, put.text
        file_id: str = started["file"]["id"]
        return file_id

    def publish_private_dataset(
        self, model_id: str | None = None, version: str = "v1", body: bytes | None = None
    ) -> Published:
        """Given a (new) model, a version with a private dataset uploaded, published now."""
        model_id = model_id or self.create_model()
        version_id = self.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code message } } }",
            {"i": {"modelId": model_id, "name": version, "baseModel": "SDXL_1_0"}},
        )["version"]["id"]
        self.upload_weights(version_id)
        content = body if body is not None else zip_bytes({"images/cat.txt": b"meow" * 500})
        started = self.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id } uploadUrl userErrors { code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": "cats.zip",
                    "sizeBytes": len(content),
                    "visibility": "PRIVATE",
                    "ownsRights": False,
                }
            },
        )
        put = self.put(started["uploadUrl"], content)
        assert put.status_code == 200, put.text
        published = self.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { publishedAt trainingDataset { id expiresAt downloadUrl } } "
            "userErrors { code message } } }",
            {"i": {"versionId": version_id}},
        )["version"]
        dataset = published["trainingDataset"]
        assert dataset["id"] == started["dataset"]["id"]
        assert dataset["expiresAt"] is not None and dataset["downloadUrl"] is not None
        return Published(
            dataset_id=dataset["id"],
            version_id=version_id,
            published_at=parse_time(published["publishedAt"]),
            expires_at=parse_time(dataset["expiresAt"]),
            download_url=dataset["downloadUrl"],
            body=content,
        )

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """The dataset as its owner sees it (tombstones included)."""
        node: dict[str, Any] | None = self.gql(
            f"query($id: ID!) {{ node(id: $id) {{ ... on TrainingDataset {{ {DATASET_FIELDS} }} }} }}",
            {"id": dataset_id},
        )["node"]
        assert node is not None, f"the owner cannot see dataset {dataset_id}"
        return node

    def datasets(self) -> dict[str, dict[str, Any]]:
        """Every dataset of the owner's (tombstones included) as the owner sees it, by ID:
        their listing, a page of 100 at a time (one request for what ``dataset`` reads
        one by one)."""
        found: dict[str, dict[str, Any]] = {}
        after = None
        while True:
            page = self.gql(
                "query($after: String) { viewer { trainingDatasets(first: 100, after: $after) "
                f"{{ edges {{ node {{ {DATASET_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}",
                {"after": after},
            )["viewer"]["trainingDatasets"]
            found.update({edge["node"]["id"]: edge["node"] for edge in page["edges"]})
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def notifications(self) -> list[dict[str, Any]]:
        """The owner's notifications, newest first: kind, createdAt, message, dataset id."""
        edges = self.gql(
            "{ viewer { notifications(first: 100) { edges { node "
            "{ id kind message createdAt dataset { id } } } } } }"
        )["viewer"]["notifications"]["edges"]
        return [edge["node"] for edge in edges]

    def notifications_about(self, dataset_id: str, kind: str) -> list[dict[str, Any]]:
        return [
            n
            for n in self.notifications()
            if n["kind"] == kind and (n["dataset"] or {}).get("id") == dataset_id
        ]


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, f"{value!r} has no UTC offset"
    return moment


def now_utc() -> datetime:
    return datetime.now(UTC)


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def wait_for_reminder(owner: Owner, dataset_id: str, timeout: float = 10) -> dict[str, Any]:
    """Poll as the owner until a DATASET_EXPIRING notification about the dataset appears."""
    found = wait_for(
        lambda: owner.notifications_about(dataset_id, "DATASET_EXPIRING"),
        timeout=timeout,
        interval=0.1,
        what=f"a DATASET_EXPIRING notification about {dataset_id}",
    )
    return found[0]


def finished_tombstone(dataset: Mapping[str, Any]) -> bool:
    """Status DELETED, deletedAt set *and* the receipt there. From the claim on (access
    ended, bytes maybe not yet gone) the owner already sees DELETED with deletedAt (the
    moment access ended); the receipt is written with the tombstone, its history entry
    and its notice, in one transaction, once the bytes are gone."""
    return (
        dataset["status"] == "DELETED"
        and dataset["deletedAt"] is not None
        and dataset.get("deletionReceipt") is not None
    )


def wait_for_deletion(owner: Owner, dataset_id: str, timeout: float = 10) -> dict[str, Any]:
    """Poll as the owner until the dataset is a finished tombstone (above); return it."""
    return wait_for(
        lambda: finished_tombstone(d := owner.dataset(dataset_id)) and d,
        timeout=timeout,
        interval=0.1,
        what=f"dataset {dataset_id} to be DELETED",
    )


def seconds_until(moment: datetime) -> float:
    return (moment - now_utc()).total_seconds()


def sleep_until(moment: datetime, extra: float = 0.0) -> None:
    time.sleep(max(0.0, seconds_until(moment) + extra))
