"""Removing what a failed upload wrote to the store: at once, or owed and retried.

A failed upload ``PUT`` removes the blobs it already wrote (a weights file's original
header, with whatever training data its metadata names, is stored before the tensor
data arrives) there and then (:func:`remove`), having first recorded the removal as
owed in ``blob_removals`` (the database is the source of truth): if the object store
is away, the sweep retries it (:func:`retry_owed`) until it is done. If the database
cannot take the record either, this process keeps trying for a while, and the hourly
orphan collection is the last resort. The blob's data key is destroyed first
(``BlobStore.delete``), so what stays in the store meanwhile is unreadable ciphertext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tortoise.exceptions import IntegrityError

from storage import changes
from storage.blobs.base import BlobStore
from storage.db.models import BlobRemoval
from storage.system.clock import Clock

log = logging.getLogger("lorashelf.blobs")


REMOVE_NOW = 2.0  # seconds a failed upload's answer waits for its blobs' removal


async def remove(blobs: BlobStore, key: str, *, clock: Clock, wait: float = REMOVE_NOW) -> None:
    """Remove a failed upload's blob (and abort what its commit left in progress: an S3
    multipart upload): the removal is recorded as owed first (the sweep retries it),
    then made, the answer waiting for it at most ``wait`` seconds (a store that hangs
    holds no answer; the removal goes on in its task). Never raises: the upload's
    refusal stays the answer."""
    try:
        await owe(key, clock=clock)
        owed = True
    except Exception:  # noqa: BLE001 - the database away too: this process keeps trying
        owed = False
    removing = asyncio.ensure_future(_remove(blobs, key, owed=owed, clock=clock))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(removing), wait)
    changes.hold(removing)


async def _clear(blobs: BlobStore, key: str) -> None:
    """A failed upload's blob gone from the store, and any upload of it in progress."""
    await blobs.abort_uploads(key)
    await blobs.delete(key)


async def _remove(blobs: BlobStore, key: str, *, owed: bool, clock: Clock) -> None:
    try:
        await _clear(blobs, key)
    except Exception as exc:  # noqa: BLE001 - owed: the sweep retries
        log.warning("blob %s: not removed now (%s); the sweep will", key, exc)
        if not owed:
            changes.keep_trying(f"removing blob {key}", lambda: _removed_or_owed(blobs, key, clock))
        return
    with contextlib.suppress(Exception):  # else the sweep finds the blob gone already
        await BlobRemoval.filter(object_id=key).delete()


async def _removed_or_owed(blobs: BlobStore, key: str, clock: Clock) -> None:
    try:
        await _clear(blobs, key)
    except Exception:  # noqa: BLE001 - owed instead
        await owe(key, clock=clock)


async def owe(key: str, *, clock: Clock) -> None:
    """Record that a blob's removal is owed."""
    with contextlib.suppress(IntegrityError):  # owed already
        await BlobRemoval.create(object_id=key, recorded_at=clock.now())


async def retry_owed(
    blobs: BlobStore,
    *,
    limit: int,
    referenced: Callable[[list[str]], Awaitable[set[str]]],
) -> int:
    """The sweep's step: remove blobs whose removal is owed, oldest first; stops at the
    first failure (the store still away: the next sweep goes on). How many were
    removed. A key a row refers to (``referenced``: never expected) is left in place,
    only the debt forgotten."""
    owed = await BlobRemoval.all().order_by("recorded_at").limit(limit)
    if not owed:
        return 0
    keys = [row.object_id for row in owed]
    kept = await referenced(keys)
    removed = 0
    for key in keys:
        if key in kept:
            log.error("blob %s: owed a removal but referenced; kept", key)
        else:
            await _clear(blobs, key)
            removed += 1
        await BlobRemoval.filter(object_id=key).delete()
    return removed
