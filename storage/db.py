"""Database configuration, connection and migrations (Tortoise's own tool)."""

from __future__ import annotations

import os
from typing import Any

from tortoise import Tortoise, connections
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as _migrate

MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"


def _normalise(url: str) -> str:
    # Tortoise names the asyncpg backend "asyncpg://"; accept the usual postgres:// too.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "asyncpg://" + url[len(prefix) :]
    return url


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _normalise(database_url)},
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


async def migrate(database_url: str) -> None:
    """Apply every pending migration, then close the connections it opened."""
    await _migrate(config=tortoise_config(database_url))
    await Tortoise.close_connections()


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
