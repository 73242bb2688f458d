"""Database configuration, connection and migrations (Tortoise's own tool)."""

from __future__ import annotations

import logging
import os
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext
from tortoise.log import logger as tortoise_log
from tortoise.migrations.api import migrate as _migrate

MODELS_MODULE = "storage.db.models"
MIGRATIONS_MODULE = "storage.migrations"


def _normalise(url: str) -> str:
    # Tortoise names the asyncpg backend "asyncpg://"; accept the usual postgres:// too.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "asyncpg://" + url[len(prefix) :]
    return url


DEFAULT_POOL_SIZE = 10

# PostgreSQL errors where a retry can succeed: serialization failure, deadlock (the
# server rolled one transaction back), a lock not available, too many connections.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "53300"})

# Held (pg_advisory_lock) while migrations run, so processes starting together on one
# PostgreSQL database apply them one after another, never twice at once.
_MIGRATION_LOCK = 0x6C6F7261  # "lora"


def is_postgres(database_url: str) -> bool:
    return _normalise(database_url).startswith("asyncpg://")


def _connection(database_url: str, pool_size: int) -> str | dict[str, Any]:
    """PostgreSQL through asyncpg with a pool of at most ``pool_size`` connections;
    SQLite through ``storage.db.sqlite`` (write transactions begin IMMEDIATE and wait for
    other processes' writes)."""
    url = _normalise(database_url)
    info = expand_db_url(url)
    if url.startswith("sqlite://"):
        return {"engine": "storage.db.sqlite", "credentials": info["credentials"]}
    credentials = dict(info["credentials"])
    credentials.setdefault("minsize", 1)
    credentials["maxsize"] = pool_size
    return {"engine": info["engine"], "credentials": credentials}


def is_busy(exc: BaseException) -> bool:
    """Whether an error means the database could not take this write now and a retry
    can succeed (SQLite: another writer held it past the busy timeout; PostgreSQL: a
    serialization failure, a deadlock or a lock not available): the caller answers
    TRY_AGAIN, never an internal error."""
    seen: BaseException | None = exc
    for _ in range(8):  # the error and what it wraps (Tortoise wraps asyncpg's)
        if seen is None:
            break
        if getattr(seen, "sqlstate", None) in _RETRYABLE_SQLSTATES:
            return True
        text = str(seen).lower()
        if "database is locked" in text or "database is busy" in text:
            return True
        seen = seen.__cause__ or (
            seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        )
    return False


def tortoise_config(database_url: str, pool_size: int = DEFAULT_POOL_SIZE) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url, pool_size)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` console script (makemigrations): see [tool.tortoise] in pyproject.toml.
TORTOISE_ORM = tortoise_config(os.environ.get("LORASHELF_DATABASE_URL") or "sqlite://:memory:")


def _not_shutdown(record: logging.LogRecord) -> bool:
    return record.getMessage() != "Tortoise-ORM shutdown"


async def _close_quietly() -> None:
    tortoise_log.addFilter(_not_shutdown)
    try:
        await Tortoise.close_connections()
    finally:
        tortoise_log.removeFilter(_not_shutdown)


async def migrate(database_url: str) -> None:
    """Apply every pending migration, then close the connections it opened (quietly:
    Tortoise logs "Tortoise-ORM shutdown" for that, which at start-up misleads).

    On PostgreSQL an advisory lock makes processes that start together (several
    ``serve`` and ``worker``) take turns: the first applies them, the others find
    nothing left to do."""
    _forget_statements()
    if not is_postgres(database_url):
        await _migrate(config=tortoise_config(database_url))
        await _close_quietly()
        return
    import asyncpg  # PostgreSQL only

    credentials = expand_db_url(_normalise(database_url))["credentials"]
    keys = ("host", "port", "user", "password", "database")
    lock = await asyncpg.connect(**{k: credentials[k] for k in keys if credentials.get(k)})
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await _migrate(config=tortoise_config(database_url, pool_size=1))
        finally:
            await _close_quietly()
    finally:
        await lock.close()  # ends the session, and with it the lock


def _forget_statements() -> None:
    """Tortoise keeps each model's INSERT statement per connection name and table, not
    per dialect: a process that connects to SQLite and later to PostgreSQL (the test
    suite does) would send SQLite's placeholders to PostgreSQL. Forget them."""
    EXECUTOR_CACHE.clear()


async def connect(database_url: str, pool_size: int = DEFAULT_POOL_SIZE) -> TortoiseContext:
    _forget_statements()
    return await Tortoise.init(
        config=tortoise_config(database_url, pool_size), _enable_global_fallback=True
    )


async def disconnect() -> None:
    await Tortoise.close_connections()


async def ping() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False
    return True
