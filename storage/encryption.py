"""Sealing the blobs stored before encryption: ``lorashelf encrypt-existing``, and a few
at a time in every sweep.

Migration 0010 listed every blob a database referred to (``plaintext_blobs``); the
sealed store reads those as they are until this module has sealed them. Each blob is
one step, safe to interrupt anywhere and to run in several processes at once:

1. copy it through a sealed writer (a new blob under a new key; a dataset's copy must
   hash to the dataset's ``sha256``);
2. point every row that refers to it at the copy, in one transaction, where it still
   refers to it (a row deleted or changed meanwhile keeps what it has);
3. remove the plaintext blob, every stored version of it, and unlist it.

A kill after 1 leaves an unreferenced sealed copy (collected with the orphans); after 2,
a listed blob nothing refers to, which the next run removes. ``--status`` (or
``SELECT count(*) FROM plaintext_blobs``) says how many are left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from tortoise.transactions import in_transaction

from storage.crypto import keystore
from storage.db.enums import DatasetStatus
from storage.db.models import ModelFile, TrainingDataset
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.encryption")

Outcome = Literal["sealed", "removed", "kept"]


async def _references(object_id: str) -> tuple[list[TrainingDataset], list[ModelFile]]:
    datasets = await TrainingDataset.filter(blob_key=object_id)
    files: list[ModelFile] = []
    for column in ModelFile.BLOB_COLUMNS:
        for row in await ModelFile.filter(**{column: object_id}):
            if all(row.id != seen.id for seen in files):
                files.append(row)
    return list(datasets), files


async def seal_one(rt: Runtime, object_id: str) -> Outcome:
    """Seal one blob stored in plaintext (see the module)."""
    datasets, files = await _references(object_id)
    if not datasets and not files:  # nothing refers to it any more: it just goes
        await rt.blobs.remove_bytes(object_id)
        return "removed"
    live = [d for d in datasets if d.status == DatasetStatus.AVAILABLE]
    live_files = [f for f in files if f.status == DatasetStatus.AVAILABLE]
    if not live and not live_files:
        return "kept"  # being deleted: its deletion removes it
    writer = rt.blobs.writer()
    try:
        async for chunk in rt.blobs.read(object_id):
            await writer.write(chunk)
        expected = {d.sha256 for d in live if d.sha256}
        if expected and expected != {writer.hexdigest()}:
            log.error(
                "blob %s: its bytes do not match the dataset's sha256; left as it is", object_id
            )
            await writer.abort()
            return "kept"
        copy = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    changed = 0
    async with in_transaction():
        changed += await TrainingDataset.filter(
            blob_key=object_id, status=DatasetStatus.AVAILABLE
        ).update(blob_key=copy)
        for column in ModelFile.BLOB_COLUMNS:
            changed += await ModelFile.filter(
                **{column: object_id}, status=DatasetStatus.AVAILABLE
            ).update(**{column: copy})
    if not changed:  # another process sealed it first, or its rows went meanwhile
        await rt.blobs.delete(copy)
        return "kept"
    datasets, files = await _references(object_id)
    if not datasets and not files:
        await rt.blobs.remove_bytes(object_id)  # the plaintext, every version; unlisted
    return "sealed"


async def remaining() -> int:
    """How many blobs are still stored in plaintext."""
    return await keystore.plaintext_count()


async def seal_some(
    rt: Runtime, *, seconds: float, stop: Callable[[], Awaitable[bool]] | None = None
) -> int:
    """Seal blobs stored in plaintext for about ``seconds``, and only while ``stop`` says
    nothing else waits (the sweep's share of the work: a deletion falling due is never
    held up for it); how many were sealed or removed."""
    done = 0
    deadline = time.monotonic() + seconds
    after = ""
    while time.monotonic() < deadline:
        batch = await keystore.plaintext_batch(20, after=after)
        if not batch:
            break
        for object_id in batch:
            after = object_id
            if stop is not None and await stop():
                return done
            if await seal_one(rt, object_id) != "kept":
                done += 1
            if time.monotonic() >= deadline:
                break
    return done
