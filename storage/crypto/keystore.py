"""The key store: one wrapped data key per sealed blob, in a table of its own.

Destroying a key is deleting its row; what makes the deletion final depends on the
database (:func:`settle`, :func:`vacuum`):

- SQLite runs with ``secure_delete`` on (storage.db.sqlite): the deleted row's bytes
  are overwritten with zeros, and a ``wal_checkpoint(TRUNCATE)`` after each destruction
  writes the zeroed page into the database file and empties the write-ahead log.
- PostgreSQL keeps a deleted row's bytes in the table's pages until they are reused:
  the sweep rewrites the table (``VACUUM FULL blob_keys``: a few kilobytes per thousand
  keys) whenever keys were deleted since it last did, and the old file is removed.

Also here: the start-up check of the master keys (never a new key file over wrapped
keys) and the list of blobs still stored in plaintext (written before sealing).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Literal

from tortoise import connections
from tortoise.expressions import Subquery
from tortoise.queryset import ValuesQuery

from storage.config.parse import ConfigError
from storage.crypto.master import MasterKeys
from storage.db.key_tables import BlobKey, PlaintextBlob, ReceiptKey

log = logging.getLogger("lorashelf.keys")


def purpose(object_id: str) -> str:
    """What a data key's wrapping is bound to: its blob."""
    return f"blob:{object_id}"


async def store(master: MasterKeys, object_id: str, data_key: bytes, *, now: datetime) -> None:
    """Keep a blob's data key, wrapped by the current master key."""
    kid, wrapped = master.wrap(data_key, purpose=purpose(object_id))
    await BlobKey.create(object_id=object_id, master_key_id=kid, wrapped=wrapped, created_at=now)


async def load(master: MasterKeys, object_id: str) -> bytes | None:
    """A blob's data key, or None if it has none (destroyed, or never sealed)."""
    row = await BlobKey.get_or_none(object_id=object_id)
    if row is None:
        return None
    return master.unwrap(row.master_key_id, bytes(row.wrapped), purpose=purpose(object_id))


async def destroy(object_ids: Iterable[str]) -> int:
    """Delete these blobs' keys (in the caller's transaction, if any); how many there were.
    Call :func:`settle` once the transaction is committed."""
    wanted = [k for k in object_ids if k]
    if not wanted:
        return 0
    return int(await BlobKey.filter(object_id__in=wanted).delete())


async def destroy_selected(object_ids: ValuesQuery[Literal[False]]) -> int:
    """Delete the keys of the blobs a query selects (``Model.filter(...).values(field)``),
    in one statement whatever it selects, in the caller's transaction; how many there
    were. Call :func:`settle` once the transaction is committed."""
    return int(await BlobKey.filter(object_id__in=Subquery(object_ids)).delete())


async def settle() -> bool:
    """After keys were destroyed (outside any transaction): on SQLite, write the zeroed
    pages into the database file and empty the write-ahead log. Returns False if a
    reader held the log (the next sweep tries again)."""
    client = connections.get("default")
    if client.capabilities.dialect != "sqlite":
        return True
    _, rows = await client.execute_query("PRAGMA wal_checkpoint(TRUNCATE)")
    busy = bool(rows) and bool(rows[0][0])
    if busy:
        log.info("key store: the write-ahead log is in use; emptied at the next sweep")
    return not busy


def postgres() -> bool:
    dialect: str = connections.get("default").capabilities.dialect
    return dialect != "sqlite"


_deletions_seen: int | None = None  # PostgreSQL: blob_keys' deleted rows at the last vacuum


async def vacuum() -> bool:
    """PostgreSQL: rewrite the key table if keys were deleted since this process last
    did (at its first sweep in any case), so no destroyed key stays in its pages.
    SQLite: :func:`settle`. Returns whether it rewrote or checkpointed."""
    global _deletions_seen
    client = connections.get("default")
    if client.capabilities.dialect == "sqlite":
        return await settle()
    _, rows = await client.execute_query(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'blob_keys'"
    )
    deleted = int(rows[0]["n_tup_del"]) if rows else 0
    if _deletions_seen is not None and deleted == _deletions_seen:
        return False
    await client.execute_script("VACUUM FULL blob_keys")
    _deletions_seen = deleted
    return True


async def created_before(cutoff: datetime, *, batch: int = 500) -> AsyncIterator[list[str]]:
    """Blob keys whose data key was stored before ``cutoff``, in batches (to find the
    keys of blobs a crash left unreferenced)."""
    after = ""
    while True:
        rows = (
            await BlobKey.filter(created_at__lt=cutoff, object_id__gt=after)
            .order_by("object_id")
            .limit(batch)
            .values_list("object_id", flat=True)
        )
        if not rows:
            return
        found = [str(r) for r in rows]
        yield found
        after = found[-1]


# Blobs written before sealing ------------------------------------------------------


async def is_plaintext(object_id: str) -> bool:
    return await PlaintextBlob.exists(object_id=object_id)


async def plaintext_batch(limit: int, *, after: str = "") -> list[str]:
    rows = PlaintextBlob.filter(object_id__gt=after).order_by("object_id").limit(limit)
    return [row.object_id for row in await rows]


async def plaintext_count() -> int:
    return await PlaintextBlob.all().count()


async def sealed(object_ids: Sequence[str]) -> None:
    """Plaintext blobs are gone (sealed under a new key, or deleted): one statement."""
    if object_ids:
        await PlaintextBlob.filter(object_id__in=list(object_ids)).delete()


# Start-up ----------------------------------------------------------------------------


async def _wrapped_by() -> set[str]:
    """The master keys anything stored is wrapped by."""
    blob = await BlobKey.all().distinct().values_list("master_key_id", flat=True)
    receipt = await ReceiptKey.all().distinct().values_list("master_key_id", flat=True)
    return {str(k) for k in [*blob, *receipt]}


async def ready(master: MasterKeys) -> MasterKeys:
    """The master keys, loaded (checked on first use: :func:`check_master_keys`)."""
    if not master.loaded():
        await check_master_keys(master)
    return master


async def check_master_keys(master: MasterKeys) -> None:
    """Load the master keys, making the key file on a first start. Refuses (ConfigError)
    to make one when keys are stored already (the file was lost: a new key could never
    read them), and to start without a master key that something stored needs."""
    # Stored keys are looked for before the file: a process that makes the file does so
    # before it stores a key, so one seen here means the file existed by then (read
    # after, a process starting at the same moment could have made both in between).
    stored = await BlobKey.exists() or await ReceiptKey.exists()
    if not master.load():
        if stored:
            raise ConfigError(
                f"LORASHELF_MASTER_KEY: the master key file {master.path} is missing, but "
                "data keys wrapped by a master key are stored: restore the file from your "
                "secrets backup (or set LORASHELF_MASTER_KEY). lorashelf never makes a new "
                "master key over encrypted data"
            )
        master.generate()
        log.info("generated the master key into %s", master.path)
    missing = await _wrapped_by() - set(master.ids())
    if missing:
        where = "LORASHELF_MASTER_KEY" if not master.from_file else str(master.path)
        raise ConfigError(
            f"LORASHELF_MASTER_KEY: stored keys are wrapped by master key(s) "
            f"{', '.join(sorted(missing))}, which {where} does not hold; give every master "
            "key still in use (comma-separated, the current one first)"
        )
