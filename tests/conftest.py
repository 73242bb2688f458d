"""Shared fixtures: a real database (SQLite, or PostgreSQL with ``--db=postgres``) with
real migrations, the real ASGI app behind httpx, an injected clock, and small factories
for the usual objects."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import sqlite3
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph.http.app import create_app
from graph.schema import ids
from jobs.assembly import assemble
from storage.blobs.local import LocalBlobStore
from storage.blobs.store import open_blob_store
from storage.config.settings import Settings, load_settings
from storage.crypto import keystore
from storage.crypto.chunks import SEALED_CHUNK, ChunkCipher
from storage.crypto.master import MasterKeys
from storage.db import connection as db
from storage.db.models import new_public_id
from storage.privacy.lookups import DATASET, FILE, MODEL, NOTIFICATION, USER, VERSION
from storage.runtime import NoScheduler
from tests import postgres, processes
from tests.processes import RedisServer, S3Server, redis_server, s3_server

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class MutableClock:
    """The injected clock: tests move time instead of sleeping. What sleeps on it (the
    embedded runner, a job waiting for its due time) wakes when time is moved past its
    deadline, or when its wake event is set."""

    def __init__(self, now: datetime = START):
        self._now = now
        self._sleepers: dict[asyncio.Future[None], datetime] = {}

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def set(self, when: datetime) -> None:
        self._now = when
        for sleeper, deadline in list(self._sleepers.items()):
            if deadline <= when:
                del self._sleepers[sleeper]
                if not sleeper.done():
                    sleeper.set_result(None)

    async def sleep(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = asyncio.get_running_loop().create_future()
        self._sleepers[sleeper] = self._now + timedelta(seconds=seconds)
        waiting: set[asyncio.Future[Any]] = {sleeper}
        woken = asyncio.ensure_future(wake.wait()) if wake is not None else None
        if woken is not None:
            waiting.add(woken)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleepers.pop(sleeper, None)
            sleeper.cancel()
            if woken is not None:
                woken.cancel()

    async def asleep(self, timeout: float = 10.0) -> None:
        """Wait (in real time, at most ``timeout`` seconds) until something sleeps on
        this clock past its current time: whatever moving time woke has done its work."""
        async with asyncio.timeout(timeout):
            while not any(deadline > self._now for deadline in self._sleepers.values()):
                await asyncio.sleep(0.01)


def make_safetensors(
    metadata: dict[str, str] | None = None, tensors: dict[str, Any] | None = None
) -> bytes:
    """A real safetensors file, written by the ``safetensors`` package."""
    import numpy as np
    from safetensors.numpy import save

    if tensors is None:
        tensors = {
            "lora_unet_down.lora_down.weight": np.arange(16, dtype=np.float16).reshape(4, 4),
            "lora_unet_down.lora_up.weight": np.ones((4, 2), dtype=np.float32),
        }
    data: bytes = save(tensors, metadata=metadata)
    return data


def make_zip(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (files or {"images/cat.txt": b"meow" * 50}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def at(value: str | None) -> datetime:
    """A DateTime from the API."""
    assert value is not None
    return datetime.fromisoformat(value)


def contents_now(paths: Iterable[Path]) -> dict[Path, bytes]:
    """What each of ``paths`` holds now, leaving out those gone since they were listed:
    a running server deletes files while a test looks (a blob removed, a journal
    ended), and a file deleted between the listing and the read holds nothing."""
    found = {}
    for path in paths:
        try:
            found[path] = path.read_bytes()
        except FileNotFoundError:
            continue
    return found


def blob_files(root: Path) -> set[Path]:
    """Every committed blob under a blob directory (temp files excluded)."""
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts}


def blob_plaintext(path: Path, data_dir: Path | None = None) -> bytes | None:
    """What a committed local blob holds, decrypted as the server would (its data key
    from the database, unwrapped by the data dir's master key file); None if its key is
    gone
    (or the file). ``data_dir`` defaults to the blob directory's parent."""
    data_dir = data_dir or path.parent.parent.parent
    env = {"LORASHELF_DATA_DIR": str(data_dir)}
    if processes.test_database_url is not None:
        env["LORASHELF_DATABASE_URL"] = processes.test_database_url()
    settings = load_settings(env, create=False)
    key = path.name
    rows = sql_behind_the_back(
        settings, f"SELECT master_key_id, wrapped FROM blob_keys WHERE object_id = '{key}'"
    )
    if not rows:
        legacy = sql_behind_the_back(
            settings, f"SELECT 1 FROM plaintext_blobs WHERE object_id = '{key}'"
        )
        return contents_now([path]).get(path) if legacy else None
    master = MasterKeys(settings)
    master.load()
    data_key = master.unwrap(rows[0][0], bytes(rows[0][1]), purpose=keystore.purpose(key))
    stored = contents_now([path]).get(path)
    if stored is None:
        return None
    cipher = ChunkCipher(data_key, key)
    count = -(-len(stored) // SEALED_CHUNK)
    return b"".join(
        cipher.open(i, stored[i * SEALED_CHUNK : (i + 1) * SEALED_CHUNK], final=i == count - 1)
        for i in range(count)
    )


def dataset_blobs(root: Path) -> set[Path]:
    """The committed blobs that hold a dataset (a zip archive), not a weights file's:
    decrypted to tell (the data dir is the blob directory's parent)."""
    found = set()
    for path in blob_files(root):
        plain = blob_plaintext(path, root.parent)
        if plain is not None and plain[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            found.add(path)
    return found


def sql_behind_the_back(settings: Settings, statement: str) -> list[tuple[Any, ...]]:
    """Run one SQL statement on the app's database over a connection of its own (as
    somebody reading or breaking the database behind the server's back); its rows."""
    if not db.is_postgres(settings.database_url):
        with sqlite3.connect(settings.database_url.removeprefix("sqlite://")) as connection:
            return connection.execute(statement).fetchall()

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        connection = await asyncpg.connect(settings.database_url)
        try:
            return [tuple(row) for row in await connection.fetch(statement)]
        finally:
            await connection.close()

    return postgres.run_async(run)


def database_contents(settings: Settings) -> bytes:
    """Everything the database keeps, as bytes: SQLite's files as they are on disk (the
    journal included); on PostgreSQL every row of every table, as text."""
    if not db.is_postgres(settings.database_url):
        files = sorted(settings.data_dir.glob("lorashelf.sqlite3*"))
        assert files
        return b"".join(contents_now(files).values())
    tables = sql_behind_the_back(
        settings, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    rows = [
        row[0]
        for (table,) in tables
        for row in sql_behind_the_back(settings, f'SELECT t::text FROM "{table}" t')
    ]
    return "\n".join(rows).encode()


KINDS = (USER, MODEL, VERSION, DATASET, FILE, NOTIFICATION)


async def raw_id(global_id: str, type_name: str = "TrainingDataset") -> int:
    """The database key behind a global ID (for tests that call job functions)."""
    public_id = ids.decode(global_id, type_name)
    assert public_id is not None
    kind = next(k for k in KINDS if k.name == type_name)
    row = await kind.model.get(public_id=public_id)
    return int(row.pk)


def migrate_to(database_url: str, name: str) -> None:
    """Apply the migrations up to ``name`` only (a database as an earlier lorashelf left
    it), with Tortoise's own tool, on a connection of its own."""
    from tortoise import Tortoise
    from tortoise.migrations.api.migrate import migrate

    if database_url.startswith("sqlite://"):
        Path(database_url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        try:
            await migrate(config=db.tortoise_config(database_url), target=f"models.{name}")
        finally:
            await Tortoise.close_connections()

    postgres.run_async(run)


def missing_id(type_name: str) -> str:
    """A well-formed global ID of this type that no row has."""
    return ids.encode(type_name, new_public_id())


# The database backend: --db=sqlite (default) or --db=postgres ---------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the database every test runs on: SQLite files (default) or a throwaway "
        "PostgreSQL cluster started for the run (one fresh database per test)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): tests a mechanism only the SQLite backend has; not collected "
        "with --db=postgres (the reason says which mechanism)",
    )
    config.addinivalue_line(
        "markers",
        "postgres_only(reason): tests a mechanism only the PostgreSQL backend has; collected "
        "with --db=postgres only",
    )
    config.addinivalue_line(
        "markers",
        "backend_independent(reason): never reaches the database backend's own behaviour "
        "(file-format parsers, the module layout, the browser's view of the API); run in "
        "the SQLite pass only, not again with --db=postgres (the reason says why)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_postgres = config.getoption("--db") == "postgres"
    other = "sqlite_only" if on_postgres else "postgres_only"
    for item in items:
        for name in ("sqlite_only", "postgres_only", "backend_independent"):
            marker = item.get_closest_marker(name)
            if marker is not None and not (marker.kwargs.get("reason") or marker.args):
                raise pytest.UsageError(f"{item.nodeid}: {name} needs a reason")
    skipped = (other, "backend_independent") if on_postgres else (other,)
    elsewhere = [item for item in items if any(item.get_closest_marker(m) for m in skipped)]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        dropped = set(map(id, elsewhere))
        items[:] = [item for item in items if id(item) not in dropped]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, on a free port (stopped after the test)."""
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as server:
        yield server


@pytest.fixture(autouse=True)
def test_database(request: pytest.FixtureRequest) -> Iterator[postgres.LazyDatabase | None]:
    """With --db=postgres: this test's own database (made on first use, dropped after),
    for the ``env`` fixture and for the real processes the test starts."""
    if request.config.getoption("--db") != "postgres":
        yield None
        return
    database = postgres.LazyDatabase(request.getfixturevalue("postgres_cluster"))
    processes.test_database_url = database.url
    try:
        yield database
    finally:
        processes.test_database_url = None
        database.drop()


@contextlib.contextmanager
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """For a fixture wider than one test (module scope): with --db=postgres, the
    LORASHELF_DATABASE_URL of a database of its own, dropped at the end; else nothing."""
    if request.config.getoption("--db") != "postgres":
        yield {}
        return
    cluster: postgres.Cluster = request.getfixturevalue("postgres_cluster")
    name = cluster.new_database()
    try:
        yield {"LORASHELF_DATABASE_URL": cluster.url(name)}
    finally:
        cluster.drop_database(name)


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def env(
    tmp_path: Path, request: pytest.FixtureRequest, test_database: postgres.LazyDatabase | None
) -> dict[str, str]:
    """The environment the app is configured from (with --db=postgres, the test's own
    PostgreSQL database).

    A test changes it with a marker: ``@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s")``.
    """
    values = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    if test_database is not None:
        values["LORASHELF_DATABASE_URL"] = test_database.url()
    for marker in reversed(list(request.node.iter_markers("env"))):
        values.update(marker.kwargs)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with every migration applied, made once per test process: each
    test's database starts as a copy of it (as each PostgreSQL test database is a copy of
    a migrated template, tests/postgres.py). Applying the migrations to an empty
    database costs 1.5-3 s of CPU in Tortoise's migration state, once per test
    otherwise. Tests of the migrations themselves start from empty databases of their
    own; the real processes the tests start on a new data dir start from a copy too,
    unless a test asks for a first start (tests/processes.py, ``fresh``)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "lorashelf.sqlite3"
    postgres.run_async(lambda: db.migrate(f"sqlite://{path}"))
    assert not path.with_name(path.name + "-wal").exists(), "the template kept a log"
    return path


@pytest.fixture(autouse=True, scope="session")
def children_start_migrated(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the SQLite pass, the ``serve`` and ``worker`` processes the tests start on a new
    data dir begin from a copy of the migrated template (tests/processes.py)."""
    if request.config.getoption("--db") == "postgres":
        yield
        return
    processes.sqlite_template = request.getfixturevalue("sqlite_template")
    yield
    processes.sqlite_template = None


@pytest.fixture
async def database(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if not db.is_postgres(settings.database_url):
        path = Path(settings.database_url.removeprefix("sqlite://"))
        if not path.exists():
            template: Path = request.getfixturevalue("sqlite_template")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, path)
            path.chmod(0o600)
    await db.migrate(settings.database_url)  # nothing left to apply after a copy
    await db.connect(
        settings.database_url, settings.database_pool_size, settings.database_busy_timeout
    )
    yield
    await db.disconnect()


@pytest.fixture
def store(settings: Settings) -> LocalBlobStore:
    blobs = open_blob_store(settings)
    assert isinstance(blobs, LocalBlobStore)
    return blobs


@pytest.fixture
def ctx(settings: Settings, clock: MutableClock, store: LocalBlobStore) -> dict[str, Any]:
    """What a runner passes to the job functions: the same settings, clock and blob
    store the ``api`` fixture uses, so data set up through GraphQL is what they act on."""
    runtime = assemble(settings, clock=clock, blobs=store, scheduler=NoScheduler()).runtime
    return {"runtime": runtime}


@pytest.fixture
async def client(
    settings: Settings, clock: MutableClock, database: None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class Person:
    username: str
    token: str
    id: str


class Api:
    """GraphQL over HTTP plus factories for the usual objects (given ... steps)."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self._names = 0

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        body = await self.raw(query, variables, token)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def mutate(
        self, name: str, query: str, variables: dict[str, Any], token: str | None = None
    ) -> dict[str, Any]:
        """Run a mutation that must succeed; return its payload."""
        payload: dict[str, Any] = (await self.gql(query, variables, token))[name]
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload

    async def sign_up(
        self, username: str | None = None, password: str = "correct horse battery"
    ) -> Person:
        if username is None:
            self._names += 1
            username = f"user{self._names}"
        payload = await self.mutate(
            "signUp",
            "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } userErrors { code } } }",
            {"i": {"username": username, "password": password}},
        )
        return Person(username, payload["token"], payload["user"]["id"])

    async def create_model(self, owner: Person, name: str = "Cats") -> str:
        payload = await self.mutate(
            "createModel",
            "mutation($i: CreateModelInput!) { createModel(input: $i) { model { id } userErrors { code } } }",
            {"i": {"name": name, "description": "a LoRA"}},
            owner.token,
        )
        model_id: str = payload["model"]["id"]
        return model_id

    async def create_version(
        self, owner: Person, model_id: str, name: str = "v1", base_model: str = "SDXL_1_0"
    ) -> str:
        payload = await self.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code } } }",
            {"i": {"modelId": model_id, "name": name, "baseModel": base_model}},
            owner.token,
        )
        version_id: str = payload["version"]["id"]
        return version_id

    async def start_upload(
        self,
        owner: Person,
        version_id: str,
        size: int,
        visibility: str = "PRIVATE",
        filename: str = "data.zip",
        owns_rights: bool | None = None,
    ) -> dict[str, Any]:
        """Returns the raw payload (dataset, uploadUrl, userErrors)."""
        data = await self.gql(
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id status } uploadUrl userErrors { field code message } } }",
            {
                "i": {
                    "versionId": version_id,
                    "filename": filename,
                    "sizeBytes": size,
                    "visibility": visibility,
                    "ownsRights": owns_rights
                    if owns_rights is not None
                    else visibility == "PUBLIC",
                }
            },
            owner.token,
        )
        payload: dict[str, Any] = data["startDatasetUpload"]
        return payload

    async def put(self, url: str, body: bytes) -> httpx.Response:
        return await self.http.put(url, content=body)

    async def upload(
        self, owner: Person, version_id: str, visibility: str = "PRIVATE", body: bytes | None = None
    ) -> str:
        """A dataset uploaded completely; returns its global ID."""
        content = body if body is not None else make_zip()
        payload = await self.start_upload(owner, version_id, len(content), visibility)
        assert payload["userErrors"] == [], payload["userErrors"]
        response = await self.put(payload["uploadUrl"], content)
        assert response.status_code == 200, response.text
        dataset_id: str = payload["dataset"]["id"]
        return dataset_id

    async def start_file_upload(
        self, owner: Person, version_id: str, size: int, filename: str = "lora.safetensors"
    ) -> dict[str, Any]:
        """Returns the raw payload (file, uploadUrl, userErrors)."""
        data = await self.gql(
            "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
            "{ file { id status } uploadUrl userErrors { field code message } } }",
            {"i": {"versionId": version_id, "filename": filename, "sizeBytes": size}},
            owner.token,
        )
        payload: dict[str, Any] = data["startModelFileUpload"]
        return payload

    async def upload_file(
        self,
        owner: Person,
        version_id: str,
        body: bytes | None = None,
        filename: str = "lora.safetensors",
    ) -> str:
        """A weights file uploaded completely; returns its global ID."""
        content = body if body is not None else make_safetensors()
        payload = await self.start_file_upload(owner, version_id, len(content), filename)
        assert payload["userErrors"] == [], payload["userErrors"]
        response = await self.put(payload["uploadUrl"], content)
        assert response.status_code == 200, response.text
        file_id: str = payload["file"]["id"]
        return file_id

    async def publish(
        self, owner: Person, version_id: str, *, with_file: bool = True
    ) -> dict[str, Any]:
        """Publish a draft; unless told not to, first give it a weights file if it has
        none (publishing needs one)."""
        if with_file:
            files = await self.gql(
                "query($id: ID!) { node(id: $id) { ... on ModelVersion { files { id } } } }",
                {"id": version_id},
                owner.token,
            )
            node = files["node"]
            if node is not None and not node["files"]:
                await self.upload_file(owner, version_id)
        payload = await self.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id status publishedAt } userErrors { code } } }",
            {"i": {"versionId": version_id}},
            owner.token,
        )
        version: dict[str, Any] = payload["version"]
        return version

    async def model_with_dataset(
        self, owner: Person, visibility: str = "PRIVATE", publish: bool = True
    ) -> tuple[str, str, str]:
        """Given a model with one version and a dataset: (model, version, dataset) IDs."""
        model_id = await self.create_model(owner)
        version_id = await self.create_version(owner, model_id)
        dataset_id = await self.upload(owner, version_id, visibility)
        if publish:
            await self.publish(owner, version_id)
        return model_id, version_id, dataset_id

    async def private_datasets(self, count: int) -> list[int]:
        """``count`` private datasets of one new owner's versions published now (their
        windows end together): their database keys."""
        owner = await self.sign_up()
        keys = []
        for _ in range(count):
            _, _, dataset_id = await self.model_with_dataset(owner, "PRIVATE")
            keys.append(await raw_id(dataset_id))
        return keys


SET_VISIBILITY = (
    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
    "{ dataset { visibility } userErrors { code } } }"
)


async def set_visibility(api: Api, owner: Person, dataset_id: str, visibility: str) -> None:
    """Make a dataset public (confirming the rights) or private; it must succeed."""
    await api.mutate(
        "setDatasetVisibility",
        SET_VISIBILITY,
        {
            "i": {
                "datasetId": dataset_id,
                "visibility": visibility,
                "ownsRights": visibility == "PUBLIC",
            }
        },
        owner.token,
    )


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, one per test run, with the standard AWS variables set for this
    process (and so for the processes it starts); each test takes its own bucket."""
    with s3_server(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in server.env.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        yield server
