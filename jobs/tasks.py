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
from typing import Any, cast

from jobs.adapters.scheduler import plan_ahead
from storage import account_deletion, downloads, encryption, exports, files, idempotency, uploads
from storage.blobs import removals
from storage.blobs.base import skipped_while_away
from storage.config.settings import Settings
from storage.crypto import keystore
from storage.db.enums import DatasetStatus, Visibility
from storage.db.models import DataExport, ModelFile, TrainingDataset
from storage.mail import outbox
from storage.retention import batches, deletion, due, header_firewall, notices
from storage.retention.policy import LIVE
from storage.runtime import Runtime
from storage.system.clock import save_mark
from storage.system.disk import is_full

log = logging.getLogger("lorashelf.jobs")

BATCH = 100
MAX_BATCHES = 50  # per kind of work and sweep; what is left waits for the next sweep
LEASE = 30  # seconds a deletion's claim lasts before any sweep finishes it
EARLY_TOLERANCE = 0.05  # seconds an expiry job may start early and still wait for its time
ORPHAN_AGE = 3600  # seconds an unreferenced blob or temp file is kept before removal
PLAN_AHEAD = 2  # sweep intervals of exact-time jobs each ARQ sweep enqueues again
PLAN_LIMIT = 5000  # datasets (and files) a sweep plans ahead at most, soonest first
ENCRYPT_SECONDS = 20.0  # per sweep: sealing blobs stored before encryption, a few at a time

Ctx = dict[str, Any]


def runtime_of(ctx: Ctx) -> Runtime:
    rt: Runtime = ctx["runtime"]
    return rt


def reminder_grace(settings: Settings) -> int:
    """How late a reminder may be and still be on time: two sweep intervals (one may run
    late). Later than that it says it is late."""
    return 2 * settings.sweep_interval


async def expire_dataset(ctx: Ctx, dataset_id: int) -> bool:
    """Delete a private dataset whose window has ended, with every other one due now;
    anything else is left alone.

    Claims the due datasets in batches (one conditional ``UPDATE ... RETURNING`` each,
    this one among them), then destroys their keys, deletes their bytes and writes
    their tombstones, receipts and the owners' notices together
    (:mod:`storage.retention.batches`). The claims come first: a slow object store
    never delays them. A claim of this dataset left in ``DELETING`` by a crash, or an
    earlier try of this job, is finished too; one another process holds is left to
    it (the sweep finishes it if that process dies). Returns whether this call wrote
    this dataset's tombstone.
    """
    rt = runtime_of(ctx)
    now = rt.clock.now()
    row = await deletion.dataset_by_id(dataset_id)
    if row is not None and row.expires_at is not None:
        early = (row.expires_at - now).total_seconds()
        if 0 < early <= EARLY_TOLERANCE:  # a queue may round the due time down a little
            await rt.clock.sleep(early)
            now = rt.clock.now()
    # Only a job whose dataset is still due claims (every due dataset has its job): the
    # jobs of a batch someone else claimed write nothing.
    due_now = row is not None and row.status in LIVE and deletion.over(row, now)
    claimed = await _claim_due(rt, now) if due_now else []
    if dataset_id not in claimed and await batches.left_behind(dataset_id, now, lease=LEASE):
        claimed.append(dataset_id)
    finish = functools.partial(batches.finish, rt, claimed, now=now)
    done = cast(list[int], await _retrying_when_full(rt, finish))
    if done:
        log.info("%s datasets expired and deleted", len(done))
    return dataset_id in done


async def _claim_due(rt: Runtime, now: datetime) -> list[int]:
    """Claim every due dataset; on a full disk the reserve is given back for the claims'
    writes (the bytes, deleted next, free the room the tombstones take)."""
    claim = functools.partial(batches.claim_all_expired, now, most=BATCH * MAX_BATCHES)
    return cast(list[int], await _retrying_when_full(rt, claim))


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
        sent = await notices.record_reminder(
            rt.settings, dataset, offset=offset, now=now, late=tardy
        )
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


async def build_export(ctx: Ctx, export_id: int) -> bool:
    """Build a data export that was asked for; whether this call built it."""
    return await exports.build(runtime_of(ctx), export_id)


async def expire_export(ctx: Ctx, export_id: int) -> bool:
    """Shred a data export whose window has ended (key destroyed, bytes deleted)."""
    rt = runtime_of(ctx)
    export = await DataExport.get_or_none(id=export_id)
    if export is not None and export.expires_at is not None:
        early = (export.expires_at - rt.clock.now()).total_seconds()
        if 0 < early <= EARLY_TOLERANCE:
            await rt.clock.sleep(early)
    return await exports.shred(rt, export_id)


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
    """The safety net: overdue expiries, due reminders, due header erasures, exports at
    their end, stuck deletions (of datasets, files and accounts), exports whose job was
    lost, abandoned uploads; then housekeeping (the key store's pages, blobs still in
    plaintext sealed a few at a time).

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
        redis = ctx.get("redis")  # ARQ's pool, in a worker's jobs
        if redis is not None:  # what a Redis restart lost, back at its exact time
            planned = await plan_ahead(redis, rt, now=now, sweeps=PLAN_AHEAD, limit=PLAN_LIMIT)
            if planned:
                counts["planned_again"] = planned
        await _due_work(ctx, rt, now, counts)
        await _crash_leftovers(rt, now, counts, startup=startup)
        await _housekeeping(rt, now, counts)
    if counts:
        log.info("sweep: %s", dict(counts))
    return dict(counts)


async def _due_work(ctx: Ctx, rt: Runtime, now: datetime, counts: Counter[str]) -> None:
    """What fell due: expiries, windows a private dataset lacks, reminders, erasures."""
    claimed = await _claim_due(rt, now)  # every claim first; then keys, bytes, tombstones
    expired = await _retrying_when_full(rt, functools.partial(batches.finish, rt, claimed, now=now))
    if expired:
        counts["expired"] += len(cast(list[int], expired))
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
    await _each(
        rt,
        "exports_shredded",
        lambda: exports.due(now, limit=BATCH),
        lambda i: expire_export(ctx, i),
        counts,
    )
    if rt.settings.smtp_url:
        await _mail_due(ctx, now, counts)


async def _mail_due(ctx: Ctx, now: datetime, counts: Counter[str]) -> None:
    """E-mail is sent beside the sweep, never in it (a slow SMTP server must not hold up
    a deletion): what a dead sender held is due again, and under ARQ a ``deliver_mail``
    job is queued when something is due (the embedded runner has its own mail loop)."""
    released = await outbox.release_stale(now)
    if released:
        counts["mail_released"] = released
    redis = ctx.get("redis")  # ARQ's pool, in a worker's jobs
    if redis is not None and await outbox.due(now, limit=1):
        await redis.enqueue_job("deliver_mail", _job_id=f"mail-sweep:{now.timestamp():.0f}")


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
    """What a crash left: deletions claimed and not finished, uploads that died, blobs
    of failed uploads whose removal is owed, and (at start-up) the temporary files of
    uploads whose writer is gone."""
    lease = 0 if startup else LEASE
    stale = uploads.staleness(rt.settings)
    seen: set[int] = set()
    for _ in range(MAX_BATCHES):  # datasets: finished in batches
        stuck = await due.stuck_deletions(TrainingDataset, now, older_than=lease, limit=BATCH)
        batch = [i for i in stuck if i not in seen]
        if not batch:
            break
        seen.update(batch)
        try:
            finish = functools.partial(batches.finish, rt, batch, now=now)
            counts["unstuck"] += len(cast(list[int], await _retrying_when_full(rt, finish)))
        except Exception:
            counts["unstuck_failed"] += len(batch)
            log.exception("sweep: finishing claimed deletions failed for %s", batch)
    for model, prefix in ((TrainingDataset, ""), (ModelFile, "files_")):
        if model is ModelFile:
            await _each(
                rt,
                f"{prefix}unstuck",
                functools.partial(due.stuck_deletions, model, now, older_than=lease, limit=BATCH),
                functools.partial(files.complete_file_deletion, rt, now=now),
                counts,
            )
        await _each(
            rt,
            f"{prefix}abandoned",
            functools.partial(due.abandoned_uploads, model, now, older_than=stale, limit=BATCH),
            functools.partial(due.discard_upload, rt, model, now=now, older_than=stale),
            counts,
        )
    await _each(
        rt,
        "accounts_deleted",
        lambda: account_deletion.unfinished(now, older_than=lease, limit=BATCH),
        lambda i: account_deletion.finish(rt, i),
        counts,
    )
    await _each(
        rt,
        "exports_built",
        lambda: exports.waiting(now, older_than=lease, limit=BATCH),
        lambda i: exports.build(rt, i),
        counts,
    )
    try:  # what failed uploads wrote, whose removal failed then (the store was away)
        removed = await removals.retry_owed(
            rt.blobs, limit=BATCH, referenced=due.referenced_blob_keys
        )
    except Exception as exc:  # noqa: BLE001 - still away: the next sweep goes on
        counts["blob_removals_failed"] += 1
        log.warning("sweep: owed blob removals not made yet (%s)", exc)
    else:
        if removed:
            counts["failed_uploads_removed"] = removed
    if startup:  # what a dead upload left: its temp file (an upload alive writes often)
        partial = await skipped_while_away(
            "stale temporary files",
            lambda: rt.blobs.remove_stale_temp_files(older_than=now - timedelta(seconds=stale)),
        )
        if partial:
            counts["partial_files_removed"] = partial


async def _housekeeping(rt: Runtime, now: datetime, counts: Counter[str]) -> None:
    """Forget used download links whose URLs can no longer work and idempotency keys
    past their 24 hours, and keep ``now`` as the latest instant seen (time as lorashelf
    sees it never goes back, across restarts)."""
    forgotten = await downloads.forget(now, older_than=ORPHAN_AGE)
    keys = await idempotency.purge(now, limit=BATCH)
    await save_mark(now)
    if forgotten:
        counts["links_forgotten"] = forgotten
    if keys:
        counts["idempotency_keys_forgotten"] = keys
    released = await account_deletion.release_holds(now)
    if released:
        counts["usernames_released"] = released
    # destroyed keys out of the key store's pages and log (SQLite: checkpoint;
    # PostgreSQL: the table rewritten when keys were deleted since). Upkeep, not a change
    # to anybody's data: logged, not counted with what the sweep did (whether a rewrite
    # is due depends on PostgreSQL's statistics, which lag behind by up to seconds)
    if await keystore.vacuum() and keystore.postgres():
        log.info("key store: rewritten without the keys destroyed since the last rewrite")

    async def something_due() -> bool:
        due_at = await due.next_due(rt.clock.now())
        return due_at is not None and due_at <= rt.clock.now()

    sealed = await skipped_while_away(
        "blobs stored in plaintext",
        lambda: encryption.seal_some(rt, seconds=ENCRYPT_SECONDS, stop=something_due),
    )
    if sealed:
        counts["blobs_encrypted"] = sealed


async def collect_orphan_blobs(ctx: Ctx) -> int:
    """Remove blobs no row refers to, and temp files, left by a crash mid-upload.

    Only files older than an hour are considered, so an upload in flight is never
    touched. Returns how many files were removed (none while the store is away: the
    next collection does it).
    """
    rt = runtime_of(ctx)
    cutoff = rt.clock.now() - timedelta(seconds=ORPHAN_AGE)
    return await skipped_while_away("orphan blobs", lambda: due.remove_orphans(rt, cutoff))
