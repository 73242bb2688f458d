"""What ``serve``, ``worker`` and ``migrate`` check before they start, and how a start
that cannot go on ends: one line on stderr and an exit at once (2: the configuration or
the database must change; 1: a dependency stayed away or a migration failed)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import NoReturn

from graph.banner import lorashelf_version
from storage.blobs.base import StoreUnavailable
from storage.config.parse import ConfigError
from storage.config.settings import Settings
from storage.db.connection import DatabaseNewer
from storage.system.patience import StillUnavailable, patiently


def refuse(exc: ConfigError) -> NoReturn:
    print(f"lorashelf: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


def check_blob_store(settings: Settings) -> None:
    """Stop with one line if the blob store cannot be used (a missing bucket, no
    credentials), before the server starts."""
    from storage.blobs.store import open_blob_store

    async def check() -> None:
        store = open_blob_store(settings)
        try:
            await patiently(
                "the object store",
                store.connect,
                transient=lambda exc: isinstance(exc, StoreUnavailable),
                patience=settings.start_patience,
            )
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except ConfigError as exc:
        refuse(exc)
    except StillUnavailable as exc:
        unavailable(exc)


def unavailable(exc: StillUnavailable, *, then: str = "nothing was started") -> NoReturn:
    """A dependency stayed away for LORASHELF_START_PATIENCE: one line, exit 1 (not a
    configuration error: the same start can succeed once it is back)."""
    print(f"lorashelf: {exc}; {then}", file=sys.stderr)
    exit_at_once(1)


def check_master_key(settings: Settings) -> None:
    """With the database migrated: stop with one line if the master key file is missing
    while keys wrapped by it are stored (never a new key over encrypted data), or a key
    something stored needs is not configured; on a first start, make the key file."""
    from storage.crypto.keystore import check_master_keys
    from storage.crypto.master import MasterKeys
    from storage.db import connection

    async def check() -> None:
        await connection.connect(settings.database_url, settings.database_pool_size)
        try:
            await check_master_keys(MasterKeys(settings))
        finally:
            await connection.disconnect(quietly=True)

    try:
        asyncio.run(check())
    except ConfigError as exc:
        refuse(exc)


def private_files() -> None:
    """What this process creates (the database, blobs, temporary files) is its user's
    alone: files 0600, directories 0700, whatever the umask it was started with."""
    from storage.config.settings import UMASK

    os.umask(UMASK)


def exit_at_once(code: int) -> NoReturn:
    """Exit now, with ``code``: after a failed start nothing is worth waiting for, and a
    thread a half-started component left behind (a database connection, a runner)
    would otherwise keep the process alive without serving."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def newer_database(exc: DatabaseNewer) -> NoReturn:
    print(
        f"lorashelf: the database was migrated by a newer lorashelf: "
        f"{'migration' if len(exc.unknown) == 1 else 'migrations'} {', '.join(exc.unknown)} "
        f"{'is' if len(exc.unknown) == 1 else 'are'} unknown to lorashelf {lorashelf_version()}. "
        "Run that newer version (going back to an older one is not supported; see "
        "'Upgrading' in docs/deployment.md).",
        file=sys.stderr,
    )
    exit_at_once(2)


def prepare_database(settings: Settings) -> None:
    """Before serve or worker starts: refuse a database newer than this code (exit 2),
    apply pending migrations (a failed one: exit 1 with its error; it was rolled back)."""
    from storage.db import connection as db

    try:
        asyncio.run(
            patiently(
                "the database",
                lambda: db.migrate(settings.database_url),
                transient=db.is_busy,
                patience=settings.start_patience,
            )
        )
    except db.DatabaseNewer as exc:
        newer_database(exc)
    except StillUnavailable as exc:
        unavailable(exc)
    except Exception:  # noqa: BLE001 - reported, then the start is over
        logging.getLogger("lorashelf.migrations").exception(
            "the database could not be migrated; nothing was started"
        )
        exit_at_once(1)
