"""Database configuration, connection and migrations (Tortoise's own tool)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.log import logger as tortoise_log
from tortoise.migrations.executor import MigrationExecutor
from tortoise.migrations.migration import Migration

MODELS_MODULE = "storage.db.models"
SITE_MODELS_MODULE = "storage.db.site"  # reports, the audit trail, outgoing e-mail
KEY_TABLES_MODULE = "storage.db.key_tables"
MIGRATIONS_MODULE = "storage.migrations"


def _normalise(url: str) -> str:
    # Tortoise names the asyncpg backend "asyncpg://"; accept the usual postgres:// too.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "asyncpg://" + url[len(prefix) :]
    return url


DEFAULT_POOL_SIZE = 10
IDLE_CONNECTION_LIFETIME = 30.0  # seconds a pooled PostgreSQL connection may sit idle
DEFAULT_BUSY_TIMEOUT = 15  # seconds a write waits for a lock (LORASHELF_DATABASE_BUSY_TIMEOUT)

# PostgreSQL errors where a retry can succeed: serialization failure, deadlock (the
# server rolled one transaction back), a lock not available, too many connections, and
# the server going away or coming back: an administrator's or a crash's shutdown, "the
# database system is starting up" (cannot connect now), and every connection exception
# (class 08: refused, lost, never established).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"})
_RETRYABLE_SQLSTATE_CLASSES = ("08",)

# What asyncpg says, without a SQL state, about a connection that a restarted server
# closed under it: an InterfaceError (other InterfaceErrors are our mistakes), or an
# InternalClientError from a connection whose session was ended mid-operation and that
# went back to the pool in that state (MagicStack/asyncpg#1069).
_LOST_CONNECTION = {
    "InterfaceError": ("connection is closed", "connection was closed", "pool is closing"),
    "InternalClientError": ("another operation",),
}
_LOST_SQLSTATES = frozenset({"57P01", "57P02"})

# Held (pg_advisory_lock) while migrations run, so processes starting together on one
# PostgreSQL database apply them one after another, never twice at once.
_MIGRATION_LOCK = 0x6C6F7261  # "lora"


def is_postgres(database_url: str) -> bool:
    return _normalise(database_url).startswith("asyncpg://")


def _connection(database_url: str, pool_size: int, busy_timeout: int) -> str | dict[str, Any]:
    """PostgreSQL through asyncpg with a pool of at most ``pool_size`` connections
    (``storage.db.postgresql``: every transaction gives back what it took); SQLite
    through ``storage.db.sqlite`` (write transactions begin IMMEDIATE and wait for other
    processes' writes). Either waits ``busy_timeout`` seconds for a lock another
    process holds, then fails (``is_busy``: the request answers TRY_AGAIN)."""
    url = _normalise(database_url)
    info = expand_db_url(url)
    if url.startswith("sqlite://"):
        credentials = {**info["credentials"], "busy_timeout": busy_timeout * 1000}
        return {"engine": "storage.db.sqlite", "credentials": credentials}
    credentials = dict(info["credentials"])
    credentials.setdefault("minsize", 1)
    credentials["maxsize"] = pool_size
    # Connections idle this long are closed (asyncpg keeps them 300 s by default): after
    # a burst, a quiet process gives its slots back for new processes to start.
    credentials.setdefault("max_inactive_connection_lifetime", IDLE_CONNECTION_LIFETIME)
    settings = dict(credentials.get("server_settings") or {})
    settings["lock_timeout"] = str(busy_timeout * 1000)
    credentials["server_settings"] = settings
    engine = info["engine"]
    if engine == "tortoise.backends.asyncpg":  # transactions that give back what they took
        engine = "storage.db.postgresql"
    return {"engine": engine, "credentials": credentials}


def is_busy(exc: BaseException) -> bool:
    """Whether an error means the database could not take this request now and a retry
    can succeed (SQLite: another writer held it past the busy timeout; PostgreSQL: a
    serialization failure, a deadlock, a lock not available, too many connections, or
    the server shutting down, starting up, refusing or dropping the connection): the
    caller answers TRY_AGAIN, never an internal error.

    After a connection was lost, every pooled connection is replaced when next taken or
    given back, so none left broken by the same restart answers later requests."""
    if connection_lost(exc):
        replace_pooled_connections()
        return True
    for seen in _chain(exc):
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in _RETRYABLE_SQLSTATES:
            return True
        text = str(seen).lower()
        if "database is locked" in text or "database is busy" in text:
            return True
    return False


def connection_lost(exc: BaseException) -> bool:
    """Whether an error says the connection to PostgreSQL went (the server shut down or
    crashed, the TCP connection was refused, reset or timed out, asyncpg found it
    closed), as opposed to the server answering with an error. A statement that failed
    this way may or may not have run: a ``COMMIT`` may have committed."""
    for seen in _chain(exc):
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate in _LOST_SQLSTATES or sqlstate.startswith(_RETRYABLE_SQLSTATE_CLASSES)
        ):
            return True
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        if any(m in str(seen).lower() for m in _LOST_CONNECTION.get(type(seen).__name__, ())):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and what it wraps (Tortoise wraps asyncpg's), at most 8 deep."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or (
            seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        )
    return chain


def replace_pooled_connections() -> None:
    """Have asyncpg replace every connection of the pool at its next acquire or release
    (``Pool.expire_connections``); nothing on SQLite or outside an event loop."""
    try:
        loop = asyncio.get_running_loop()
        client = get_connection("default")
    except Exception:  # noqa: BLE001 - no loop or no database: nothing pooled to replace
        return
    pool = getattr(client, "_pool", None)
    expire = getattr(pool, "expire_connections", None)
    if expire is not None:
        task = loop.create_task(expire())
        _expiring.add(task)  # held until done (the loop keeps only a weak reference)
        task.add_done_callback(_expiring.discard)


_expiring: set[asyncio.Task[None]] = set()


def tortoise_config(
    database_url: str,
    pool_size: int = DEFAULT_POOL_SIZE,
    busy_timeout: int = DEFAULT_BUSY_TIMEOUT,
) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url, pool_size, busy_timeout)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE, SITE_MODELS_MODULE, KEY_TABLES_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _console_config() -> dict[str, Any]:
    """For the ``tortoise`` console script: the configured database, or an in-memory one
    when its URL cannot be read (importing this module never fails, nor prints a URL:
    lorashelf's own configuration says what is wrong with it, masked)."""
    try:
        return tortoise_config(os.environ.get("LORASHELF_DATABASE_URL") or "sqlite://:memory:")
    except Exception:
        return tortoise_config("sqlite://:memory:")


# For the `tortoise` console script (makemigrations): see [tool.tortoise] in pyproject.toml.
TORTOISE_ORM = _console_config()


def _not_shutdown(record: logging.LogRecord) -> bool:
    return record.getMessage() != "Tortoise-ORM shutdown"


async def _close_quietly() -> None:
    tortoise_log.addFilter(_not_shutdown)
    try:
        await Tortoise.close_connections()
    finally:
        tortoise_log.removeFilter(_not_shutdown)


log = logging.getLogger("lorashelf.migrations")
APP = "models"


@dataclass(frozen=True)
class Pending:
    """A migration ``migrate`` would apply: its name and what it does (one line)."""

    name: str
    summary: str


@dataclass(frozen=True)
class MigrationState:
    """Where a database stands against this code's migrations."""

    applied: tuple[str, ...]  # recorded in the database, in the order they were applied
    pending: tuple[Pending, ...]  # what `migrate` would apply, in order
    unknown: tuple[str, ...]  # recorded but not in this code: a newer lorashelf applied them

    @property
    def newer(self) -> bool:
        return bool(self.unknown)


class DatabaseNewer(Exception):
    """The database was migrated by a newer lorashelf: this code must not run on it."""

    def __init__(self, unknown: tuple[str, ...]):
        self.unknown = unknown
        super().__init__(
            "the database has migrations this version does not know: " + ", ".join(unknown)
        )


def summary(migration: Migration) -> str:
    """One line on what a migration does: its module docstring's first sentence, else
    its operations as Tortoise describes them."""
    doc = (sys.modules[type(migration).__module__].__doc__ or "").strip()
    if doc:
        first = " ".join(doc.split("\n\n")[0].split())
        return first.split(". ")[0].rstrip(".")
    return "; ".join(operation.describe() for operation in migration.operations)


@asynccontextmanager
async def _executor(database_url: str) -> AsyncIterator[MigrationExecutor]:
    """Tortoise's migration executor on this database (one connection), closed after
    (quietly: Tortoise logs "Tortoise-ORM shutdown" for that, which at start-up
    misleads), also after a failure: an open SQLite connection is a thread that would
    keep the process alive."""
    _forget_statements()
    config = tortoise_config(database_url, pool_size=1)
    try:
        await Tortoise.init(config=config, init_connections=False)
        yield MigrationExecutor(get_connection("default"), config["apps"])
    finally:
        await _close_quietly()


async def _recorded(executor: MigrationExecutor) -> list[str]:
    """The migrations the database records, in the order they were applied. Raises when
    the database cannot be read (Tortoise's own reader takes any failure for "none")."""
    connection = executor.connection
    table = executor.recorder.table_name
    if connection.capabilities.dialect == "sqlite":
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        exists = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = $1"
        )
    _, found = await connection.execute_query(exists, [table])
    if not found:
        return []
    _, rows = await connection.execute_query(
        f'SELECT "app", "name" FROM "{table}" ORDER BY "id"'  # noqa: S608 - our table name
    )
    return [row["name"] for row in rows if row["app"] == APP]


async def _state(executor: MigrationExecutor) -> MigrationState:
    recorded = await _recorded(executor)
    plan = await executor.plan()  # reads the disk and the database's records
    known = {key.name for key in executor.loader.disk_migrations if key.app_label == APP}
    return MigrationState(
        applied=tuple(recorded),
        pending=tuple(Pending(step.migration.name, summary(step.migration)) for step in plan),
        unknown=tuple(name for name in recorded if name not in known),
    )


async def migration_state(database_url: str) -> MigrationState:
    """What ``migrate`` would do on this database, changing nothing (``migrate --check``).
    A SQLite file that does not exist yet is not created."""
    if _no_sqlite_file(database_url):
        async with _executor("sqlite://:memory:") as executor:
            return await _state(executor)
    async with _executor(database_url) as executor:
        return await _state(executor)


def _sqlite_lock_path(database_url: str) -> str | None:
    """The file whose lock SQLite's migrations take, beside the database (processes of
    one host starting together take turns, as PostgreSQL's advisory lock makes them)."""
    path = str(expand_db_url(_normalise(database_url))["credentials"]["file_path"])
    if path == ":memory:":
        return None
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f".{name}.migrating")


def _no_sqlite_file(database_url: str) -> bool:
    """Whether this is a SQLite database whose file does not exist (yet)."""
    if is_postgres(database_url):
        return False
    path = str(expand_db_url(_normalise(database_url))["credentials"]["file_path"])
    return path != ":memory:" and not os.path.exists(path)


async def migrate(database_url: str) -> tuple[str, ...]:
    """Apply every pending migration (each logged as it runs); the names applied.

    Raises :class:`DatabaseNewer`, changing nothing, when the database holds migrations
    this code does not know: a newer lorashelf migrated it, and older code could
    misread what it wrote.

    Processes that start together (several ``serve`` and ``worker``) take turns, under
    an advisory lock on PostgreSQL, a file lock beside a SQLite database: the first
    applies them, the others find nothing left to do."""
    if not is_postgres(database_url):
        lock_path = _sqlite_lock_path(database_url)
        if lock_path is None:
            return await _apply(database_url)
        with open(lock_path, "a") as held:  # noqa: ASYNC230 - an empty file, opened once
            await asyncio.to_thread(fcntl.flock, held, fcntl.LOCK_EX)
            return await _apply(database_url)  # closing the file releases the lock
    import asyncpg  # PostgreSQL only

    credentials = expand_db_url(_normalise(database_url))["credentials"]
    keys = ("host", "port", "user", "password", "database")
    lock = await asyncpg.connect(**{k: credentials[k] for k in keys if credentials.get(k)})
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        return await _apply(database_url)
    finally:
        await lock.close()  # ends the session, and with it the lock


async def _apply(database_url: str) -> tuple[str, ...]:
    started: dict[str, float] = {}

    def progress(event: str, app: str, name: str) -> None:
        if event == "apply_start":
            started[name] = time.monotonic()
            log.info("applying migration %s", name)
        elif event == "apply_done":
            log.info("applied migration %s in %.1f s", name, time.monotonic() - started[name])

    async with _executor(database_url) as executor:
        state = await _state(executor)
        if state.newer:
            raise DatabaseNewer(state.unknown)
        if state.pending:
            await executor.migrate(progress=progress)
        return tuple(p.name for p in state.pending)


def _forget_statements() -> None:
    """Tortoise keeps each model's INSERT statement per connection name and table, not
    per dialect: a process that connects to SQLite and later to PostgreSQL (the test
    suite does) would send SQLite's placeholders to PostgreSQL. Forget them."""
    EXECUTOR_CACHE.clear()


async def connect(
    database_url: str,
    pool_size: int = DEFAULT_POOL_SIZE,
    busy_timeout: int = DEFAULT_BUSY_TIMEOUT,
) -> TortoiseContext:
    _forget_statements()
    return await Tortoise.init(
        config=tortoise_config(database_url, pool_size, busy_timeout),
        _enable_global_fallback=True,
    )


async def disconnect(*, quietly: bool = False) -> None:
    """Close the connections (``quietly``: without Tortoise's "shutdown" line, for a
    check made before a process really starts)."""
    if quietly:
        await _close_quietly()
    else:
        await Tortoise.close_connections()


async def ping() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False
    return True
