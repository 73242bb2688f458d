"""The retention jobs: plain ``async def f(ctx, ...)`` functions, arq style.

Both runners (the ARQ worker and the embedded runner in ``serve``) call these same
functions with a ``ctx`` dict holding ``ctx["runtime"]`` (a
:class:`storage.runtime.Runtime`). Each is idempotent and safe to run twice, late,
concurrently or after a crash: the state they act on is re-read from the database
and changed only by conditional updates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from storage import downloads, files, uploads
from storage.config.settings import Settings
from storage.db.enums import DatasetStatus, DeletionReason, Visibility
from storage.db.models import ModelFile, TrainingDataset
from storage.retention import deletion, due, header_firewall, notices
from storage.runtime import Runtime
from storage.system.clock import save_mark
from storage.system.disk import is_full

log = logging.getLogger("lorashelf.jobs")

BATCH = 100
MAX_BATCHES = 50  # per kind of work and sweep; what is left waits for the next sweep
LEASE = 30  # seconds a deletion's claim lasts before any sweep finishes it
EARLY_TOLERANCE = 0.05  # seconds an expiry job may start early and still wait for its time
ORPHAN_AGE = 3600  # seconds an unreferenced blob or temp file is kept before removal

Ctx = dict[str, Any]


def runtime_of(ctx: Ctx) -> Runtime:
    rt: Runtime = ctx["runtime"]
    return rt


def reminder_grace(settings: Settings) -> int:
    """How late a reminder may be and still be on time: two sweep intervals (one may run
    late). Later than that it says it is late."""
    return 2 * settings.sweep_interval


async def expire_dataset(ctx: Ctx, dataset_id: int) -> bool:
    """Delete a private dataset whose window has ended; anything else is left alone.

    Claims ``AVAILABLE -> DELETING`` with one conditional update, deletes the bytes,
    then writes the tombstone and the owner's notice. A rerun after a crash finishes
    a claim left in ``DELETING``. Returns whether this call wrote the tombstone.
    """
    rt = runtime_of(ctx)
    now = rt.clock.now()
    row = await deletion.dataset_by_id(dataset_id)
    if row is not None and row.expires_at is not None:
        early = (row.expires_at - now).total_seconds()
        if 0 < early <= EARLY_TOLERANCE:  # a queue may round the due time down a little
            await rt.clock.sleep(early)
            now = rt.clock.now()
    if row is not None and deletion.over(row, now) and row.blob_key is not None:
        # The bytes go first: nobody may read them any more, and deleting them needs no
        # space, so a full disk frees itself before the tombstone is written. (If they
        # cannot go now, the claim below still ends access; the deletion is retried.)
        try:
            await rt.blobs.delete(row.blob_key)
        except Exception:
            log.exception("dataset %s: could not delete its bytes yet", dataset_id)
    await deletion.claim_deletion(
        deletion.expiry_condition(dataset_id, now), reason=DeletionReason.EXPIRED, now=now
    )
    done = await deletion.complete_deletion(rt, dataset_id, now=now)
    if done:
        log.info("dataset %s expired and deleted", dataset_id)
    return done


async def send_reminder(ctx: Ctx, dataset_id: int, offset: int) -> bool:
    """Remind the owner ``offset`` seconds before deletion, once per dataset and offset.

    Skipped when pointless: the dataset is gone or public again, or its window moved.
    A reminder that could not be sent on time (an outage) is sent late, saying so,
    while the window is still open, unless a later one is already due (then that one
    alone is sent: one late reminder, not several at once). Returns whether a
    notification was stored by this call.
    """
    rt = runtime_of(ctx)
    now = rt.clock.now()
    dataset = await deletion.dataset_by_id(dataset_id)
    if (
        dataset is None
        or dataset.status != DatasetStatus.AVAILABLE
        or dataset.visibility != Visibility.PRIVATE
        or dataset.expires_at is None
        or dataset.expires_at <= now
    ):
        return False
    due_at = dataset.expires_at - timedelta(seconds=offset)
    if now < due_at:
        return False  # the window moved later; another job is scheduled for the new time
    sent = None
    late = (now - due_at).total_seconds()
    expires = dataset.expires_at
    superseded = any(
        o < offset and expires - timedelta(seconds=o) <= now for o in rt.policy.reminders
    )
    if superseded:
        log.info("reminder for dataset %s (%ss) superseded by a later one", dataset_id, offset)
    elif rt.policy.sends(offset, published=await deletion.published(dataset)):
        tardy = late > reminder_grace(rt.settings)
        sent = await notices.record_reminder(dataset, offset=offset, now=now, late=tardy)
        if sent is not None:
            rt.metrics.reminded(late=tardy)
        await rt.deliver(sent)
    if dataset.next_reminder_at is not None and dataset.next_reminder_at <= due_at:
        await due.advance_reminder(dataset, past=due_at, offsets=rt.policy.reminders)
    return sent is not None


async def erase_header(ctx: Ctx, file_id: int) -> bool:
    """Erase a weights file's withheld header keys once their window has ended: the
    stored file becomes the public one. Returns whether this call finished it."""
    rt = runtime_of(ctx)
    now = rt.clock.now()
    row = await ModelFile.get_or_none(id=file_id)
    if row is not None and row.header_expires_at is not None:
        early = (row.header_expires_at - now).total_seconds()
        if 0 < early <= EARLY_TOLERANCE:
            await rt.clock.sleep(early)
            now = rt.clock.now()
    done = await header_firewall.erase(rt, file_id, now=now)
    if done:
        log.info("file %s: withheld header keys erased", file_id)
    return done


async def _retrying_when_full(rt: Runtime, step: Callable[[], Awaitable[object]]) -> object:
    """Run a step; if the disk is full, give the reserve back to it and try once more
    (the step frees space itself: bytes go before tombstones are written)."""
    try:
        return await step()
    except Exception as exc:
        if not is_full(exc) or not rt.reserve.release():
            raise
        return await step()


async def _each(
    rt: Runtime,
    name: str,
    fetch: Callable[[], Awaitable[list[int]]],
    handle: Callable[[int], Awaitable[object]],
    counts: Counter[str],
) -> None:
    """Work through what ``fetch`` finds, batch after batch; log and continue per item."""
    seen: set[int] = set()
    for _ in range(MAX_BATCHES):
        batch = [i for i in await fetch() if i not in seen]
        if not batch:
            return
        for item in batch:
            seen.add(item)
            try:
                if await _retrying_when_full(rt, functools.partial(handle, item)):
                    counts[name] += 1
            except Exception:
                counts[f"{name}_failed"] += 1
                log.exception("sweep: %s failed for %s", name, item)


async def sweep(ctx: Ctx, *, startup: bool = False) -> dict[str, int]:
    """The safety net: overdue expiries, due reminders, due header erasures, stuck
    deletions and abandoned uploads (of datasets and weights files).

    Uses the indexes in bounded batches. Returns what it did, by kind. At start-up
    (``startup``) every deletion left half-done is finished at once, whoever claimed
    it (finishing a deletion twice is harmless); otherwise a claim is left to its
    holder for ``LEASE`` seconds, unless its holder is known to be gone.
    """
    rt = runtime_of(ctx)
    with rt.metrics.sweep_duration.time():
        now = rt.clock.now()
        counts: Counter[str] = Counter()
        await asyncio.to_thread(rt.reserve.ensure)  # held again once there is room
        await _due_work(ctx, rt, now, counts)
        await _crash_leftovers(rt, now, counts, startup=startup)
        await _housekeeping(rt, now, counts)
    if counts:
        log.info("sweep: %s", dict(counts))
    return dict(counts)


async def _due_work(ctx: Ctx, rt: Runtime, now: datetime, counts: Counter[str]) -> None:
    """What fell due: expiries, windows a private dataset lacks, reminders, erasures."""
    await _each(
        rt,
        "expired",
        lambda: due.overdue_expiries(now, limit=BATCH),
        lambda i: expire_dataset(ctx, i),
        counts,
    )
    await _each(
        rt,
        "windows_repaired",
        lambda: due.windowless(limit=BATCH),
        lambda i: due.give_window(rt, i, now=now),
        counts,
    )
    await _each(
        rt,
        "reminded",
        lambda: due.due_reminders(now, limit=BATCH),
        lambda i: _remind_latest(ctx, rt, i, now=now),
        counts,
    )
    await _each(
        rt,
        "headers_erased",
        lambda: header_firewall.due(now, limit=BATCH),
        lambda i: erase_header(ctx, i),
        counts,
    )


async def _remind_latest(ctx: Ctx, rt: Runtime, dataset_id: int, *, now: datetime) -> bool:
    """Send the latest reminder due (after an outage several may be; one is sent)."""
    row = await deletion.dataset_by_id(dataset_id)
    if row is None or row.expires_at is None or row.next_reminder_at is None:
        return False
    offset = round((row.expires_at - row.next_reminder_at).total_seconds())
    expires = row.expires_at
    offsets = [o for o in rt.policy.reminders if expires - timedelta(seconds=o) <= now]
    return await send_reminder(ctx, dataset_id, min(offsets, default=offset))


async def _crash_leftovers(
    rt: Runtime, now: datetime, counts: Counter[str], *, startup: bool
) -> None:
    """What a crash left: deletions claimed and not finished, uploads that died, and (at
    start-up) the temporary files of uploads whose writer is gone."""
    lease = 0 if startup else LEASE
    stale = uploads.staleness(rt.settings)
    for model, prefix in ((TrainingDataset, ""), (ModelFile, "files_")):
        finish = _finisher(rt, model, now=now)
        await _each(
            rt,
            f"{prefix}unstuck",
            functools.partial(due.stuck_deletions, model, now, older_than=lease, limit=BATCH),
            finish,
            counts,
        )
        await _each(
            rt,
            f"{prefix}abandoned",
            functools.partial(due.abandoned_uploads, model, now, older_than=stale, limit=BATCH),
            functools.partial(due.discard_upload, rt, model, now=now, older_than=stale),
            counts,
        )
    if startup:  # what a dead upload left: its temp file (an upload alive writes often)
        partial = await rt.blobs.remove_stale_temp_files(older_than=now - timedelta(seconds=stale))
        if partial:
            counts["partial_files_removed"] = partial


def _finisher(rt: Runtime, model: due.Stored, *, now: datetime) -> Callable[[int], Awaitable[bool]]:
    """How a claimed deletion of this kind of row is finished."""
    if model is ModelFile:
        return functools.partial(files.complete_file_deletion, rt, now=now)
    return functools.partial(deletion.complete_deletion, rt, now=now)


async def _housekeeping(rt: Runtime, now: datetime, counts: Counter[str]) -> None:
    """Forget used download links whose URLs can no longer work, and keep ``now`` as the
    latest instant seen (time as lorashelf sees it never goes back, across restarts)."""
    forgotten = await downloads.forget(now, older_than=ORPHAN_AGE)
    await save_mark(now)
    if forgotten:
        counts["links_forgotten"] = forgotten


async def collect_orphan_blobs(ctx: Ctx) -> int:
    """Remove blobs no row refers to, and temp files, left by a crash mid-upload.

    Only files older than an hour are considered, so an upload in flight is never
    touched. Returns how many files were removed.
    """
    rt = runtime_of(ctx)
    cutoff = rt.clock.now() - timedelta(seconds=ORPHAN_AGE)
    removed = await rt.blobs.remove_stale_temp_files(older_than=cutoff)
    async for keys in rt.blobs.keys_older_than(cutoff):
        referenced = await due.referenced_blob_keys(keys)
        for key in keys:
            if key not in referenced:
                await rt.blobs.delete(key)
                removed += 1
    if removed:
        log.info("removed %s orphan blob files", removed)
    return removed
