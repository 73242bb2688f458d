"""Database configuration, connection and migrations (Tortoise's own tool)."""

from __future__ import annotations

import logging
import os
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext
from tortoise.log import logger as tortoise_log
from tortoise.migrations.api import migrate as _migrate

MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"


def _normalise(url: str) -> str:
    # Tortoise names the asyncpg backend "asyncpg://"; accept the usual postgres:// too.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "asyncpg://" + url[len(prefix) :]
    return url


def _connection(database_url: str) -> str | dict[str, Any]:
    """PostgreSQL as Tortoise has it; SQLite through ``storage.sqlite`` (write
    transactions begin IMMEDIATE and wait for other processes' writes)."""
    url = _normalise(database_url)
    if not url.startswith("sqlite://"):
        return url
    info = expand_db_url(url)
    return {"engine": "storage.sqlite", "credentials": info["credentials"]}


def is_busy(exc: BaseException) -> bool:
    """Whether an error means another writer held the database past the busy timeout
    (a retry can succeed): the caller answers TRY_AGAIN, never an internal error."""
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
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


async def migrate(database_url: str) -> None:
    """Apply every pending migration, then close the connections it opened (quietly:
    Tortoise logs "Tortoise-ORM shutdown" for that, which at start-up misleads)."""
    await _migrate(config=tortoise_config(database_url))
    tortoise_log.addFilter(_not_shutdown)
    try:
        await Tortoise.close_connections()
    finally:
        tortoise_log.removeFilter(_not_shutdown)


async def connect(database_url: str) -> TortoiseContext:
    return await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def disconnect() -> None:
    await Tortoise.close_connections()


async def ping() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False
    return True
