"""Deletion in batches: what fell due claimed in one statement, finished together.

Mass expiry (a thousand datasets whose windows end in the same second) is done per
batch, not per row, in the order of :mod:`storage.retention.deletion`:

1. **claim** (:func:`claim_expired`): one conditional ``UPDATE ... RETURNING`` per batch
   (``AVAILABLE -> DELETING``, ``claimed_at`` = now: access ended, and the owner sees
   ``DELETED`` with ``deletedAt`` from here on). On PostgreSQL the rows are chosen by a
   subquery ``FOR UPDATE SKIP LOCKED``, so two workers claiming at once share the due
   rows without waiting for each other; SQLite has one writer.
2. **keys** (:func:`finish`): every data key of the batch destroyed, and
   ``key_destroyed_at`` recorded, in one transaction: only the database, never the
   object store, stands between the claim and the erasure.
3. **bytes**: every stored version deleted, in one call to the store (files in one
   thread hop, objects a bounded number at a time), what failed tried again, within
   ``BYTES_PATIENCE`` seconds for the whole batch. A down
   or hung object store delays neither the claim nor ``deletedAt``; a row whose bytes
   could not go stays ``DELETING`` (access ended, key destroyed) and the sweep finishes
   it once its claim's lease is over.
4. **tombstones**: for the rows whose bytes went, one conditional ``UPDATE`` writes
   every tombstone and receipt, one ``INSERT`` the history entries, one the owners'
   notices, in one transaction. Only the rows that update turned ``DELETING -> DELETED``
   get an entry and a notice: exactly once, whoever else finishes the same rows.

Every step is safe to run twice, late, concurrently or after a crash, as the per-row
path is (:func:`storage.retention.deletion.complete_deletion`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from storage import exports
from storage.crypto import keystore, receipts
from storage.db import bulk, reads
from storage.db.enums import DatasetStatus, DeletionReason, EventKind, Visibility
from storage.db.models import DatasetEvent, ModelFile, Notification, TrainingDataset, User
from storage.retention import header_firewall, notices
from storage.retention.deletion import receipt_payload
from storage.retention.policy import LIVE
from storage.runtime import Runtime
from storage.system.claim_holder import holder, holder_gone

log = logging.getLogger("lorashelf.retention")

BYTES_PATIENCE = 5.0  # seconds a batch waits on the object store; the sweep does the rest
BYTES_TRIES = 3  # attempts per object within that time
RETRY_PAUSE = 0.2  # seconds before the second attempt, doubling


def _postgres() -> bool:
    return bool(connections.get("default").capabilities.dialect != "sqlite")


async def claim_expired(now: datetime, *, limit: int) -> list[int]:
    """Claim up to ``limit`` private datasets whose window has ended, oldest first, in
    one conditional ``UPDATE ... RETURNING`` (their owners' data exports end in the same
    transaction); the ids this call claimed."""
    due = (
        TrainingDataset.filter(status__in=LIVE, visibility=Visibility.PRIVATE, expires_at__lte=now)
        .order_by("expires_at", "id")
        .limit(limit)
    )
    update = TrainingDataset.filter(
        id__in=Subquery(due.values("id")),
        status__in=LIVE,
        visibility=Visibility.PRIVATE,
        expires_at__lte=now,
    ).update(
        status=DatasetStatus.DELETING,
        deletion_reason=DeletionReason.EXPIRED,
        claimed_at=now,
        claimed_by=holder(),
    )
    async with in_transaction() as client:  # on SQLite: BEGIN IMMEDIATE, one writer
        update._db = client
        update._make_query()
        sql, params = update.query.get_parameterized_sql()
        if _postgres():
            # rows another worker is claiming are skipped, not waited for; the chosen ids
            # are read once (an initplan: an IN subquery may be rerun on a concurrent
            # update, and with SKIP LOCKED its rerun picks other rows, past the limit)
            if '"id" IN (SELECT' not in sql:  # pragma: no cover - a Tortoise change
                raise RuntimeError(f"unexpected claim statement: {sql}")
            cut = sql.index(") AND ", sql.index(" LIMIT "))
            sql = f"{sql[:cut]} FOR UPDATE SKIP LOCKED)){sql[cut + 1 :]}"
            sql = sql.replace('"id" IN (SELECT', '"id" = ANY(ARRAY(SELECT', 1)
        rows = await client.execute_query_dict(f'{sql} RETURNING "id", "owner_id"', list(params))
        if rows:  # their owners' data exports, which may hold them, end with the claim
            await exports.withdraw((int(row["owner_id"]) for row in rows), now)
    return sorted(int(row["id"]) for row in rows)


async def claim_all_expired(now: datetime, *, most: int) -> list[int]:
    """Every private dataset whose window has ended by ``now`` (``most`` of them at
    most), claimed ``CHUNK`` at a time, before any of their bytes is touched."""
    claimed: list[int] = []
    while len(claimed) < most:
        limit = min(CHUNK, most - len(claimed))
        batch = await claim_expired(now, limit=limit)
        claimed += batch
        if len(batch) < limit:
            break
    return claimed


async def left_behind(dataset_id: int, now: datetime, *, lease: int) -> bool:
    """Whether a claim of this dataset is in ``DELETING`` with nobody finishing it: its
    holder was this process, which stopped before destroying its key (an earlier try
    of a job) and is not at it now, or its holder is gone, or its lease is over."""
    row = await TrainingDataset.get_or_none(id=dataset_id)
    if row is None or row.status != DatasetStatus.DELETING or in_hand(dataset_id):
        return False
    if row.claimed_by == holder() and row.key_destroyed_at is None:
        return True  # stopped before its key went (after that, bytes are the sweep's)
    if holder_gone(row.claimed_by) or row.claimed_at is None:
        return True
    return (now - row.claimed_at).total_seconds() >= lease


async def _destroy_keys(rt: Runtime, rows: Sequence[TrainingDataset]) -> None:
    """Step 2 for a batch: the keys not yet destroyed, in one transaction."""
    pending = [r for r in rows if r.key_destroyed_at is None and r.blob_key is not None]
    if not pending:
        return
    async with in_transaction():
        at = rt.clock.now()
        await keystore.destroy(r.blob_key for r in pending if r.blob_key)
        marked = await TrainingDataset.filter(
            id__in=[r.id for r in pending], key_destroyed_at=None
        ).update(key_destroyed_at=at)
    await keystore.settle()
    if marked == len(pending):  # every one marked now: nothing to read back
        for row in pending:
            row.key_destroyed_at = at
        return
    # another process marked some first (a rerun after a crash): theirs are its times
    destroyed = await TrainingDataset.filter(id__in=[r.id for r in pending]).values_list(
        "id", "key_destroyed_at"
    )
    when = {int(i): at_ for i, at_ in destroyed}
    for row in pending:
        row.key_destroyed_at = when.get(row.id, row.key_destroyed_at)


async def _remove_bytes(rt: Runtime, rows: Sequence[TrainingDataset]) -> dict[int, datetime]:
    """Step 3 for a batch: every object deleted in one call to the store (files in one
    thread hop, objects a bounded number at a time), what failed tried again up to
    ``BYTES_TRIES`` times, all within ``BYTES_PATIENCE``; when each row's last copy went
    (rows whose object could not be deleted in time are left out)."""
    removed: dict[int, datetime] = {}
    owner = {row.blob_key: row.id for row in rows if row.blob_key is not None}
    for row in rows:
        if row.blob_key is None:
            removed[row.id] = rt.clock.now()

    def gone(key: str) -> None:
        removed[owner[key]] = rt.clock.now()  # read after the store said it went

    async def tries() -> None:
        pending, pause = sorted(owner), RETRY_PAUSE
        for attempt in range(1, BYTES_TRIES + 1):
            failed = await rt.blobs.remove_stored(pending, gone)
            if not failed:
                return
            if attempt == BYTES_TRIES:
                key, exc = next(iter(failed.items()))
                log.warning("%s objects not deleted yet (%s: %s)", len(failed), owner[key], exc)
                return
            pending = sorted(failed)
            await rt.clock.sleep(pause)
            pause *= 2

    if owner:
        try:
            await asyncio.wait_for(tries(), timeout=BYTES_PATIENCE)
        except TimeoutError:
            log.warning(
                "%s objects not deleted within %ss; the sweep retries",
                len(owner) - sum(1 for r in rows if r.blob_key and r.id in removed),
                BYTES_PATIENCE,
            )
    gone_keys = [row.blob_key for row in rows if row.id in removed and row.blob_key is not None]
    await rt.blobs.forget_plaintext(gone_keys)
    return removed


async def _write_tombstones(
    rt: Runtime,
    rows: Sequence[TrainingDataset],
    removed: dict[int, datetime],
    *,
    now: datetime,
    signer: receipts.Signer,
) -> tuple[list[TrainingDataset], list[Notification]]:
    """Step 4 for a batch: the tombstones, history entries and notices, in batched
    statements in one transaction. Returns the rows this call turned into tombstones
    and the notices it stored."""
    ready = [r for r in rows if r.id in removed]
    if not ready:
        return [], []
    reasons = {r.id: r.deletion_reason or DeletionReason.OWNER_REQUEST for r in ready}
    ended = {r.id: r.claimed_at or now for r in ready}
    owners = dict(
        await User.filter(id__in={r.owner_id for r in ready}).values_list("id", "public_id")
    )
    payloads = [
        receipt_payload(
            rt,
            r,
            reason=reasons[r.id],
            ended=ended[r.id],
            removed_at=removed[r.id],
            owner=owners[r.owner_id],
        )
        for r in ready
    ]
    made = signer.sign_all(payloads)
    signed = {r.id: receipt for r, receipt in zip(ready, made, strict=True)}
    told = [r for r in ready if reasons[r.id] in notices.DELETED_BECAUSE]
    notes = await notices.deletion_notices(told, when=ended, reasons=reasons)
    # a window ended by anything but expiry no longer has an expiry to show
    changes = {
        r.id: {
            "deleted_at": ended[r.id],
            "expires_at": r.expires_at if reasons[r.id] == DeletionReason.EXPIRED else None,
            "receipt_payload": signed[r.id].payload,
            "receipt_signature": signed[r.id].signature,
            "receipt_key_id": signed[r.id].key_id,
        }
        for r in ready
    }
    cleared = dict.fromkeys(("blob_key", "upload_nonce", "next_reminder_at"))
    stored: list[Notification] = []
    async with in_transaction():
        won = set(
            await bulk.update(
                TrainingDataset,
                changes,
                same={"status": DatasetStatus.DELETED, **cleared},
                where={"status": DatasetStatus.DELETING},
            )
        )
        done = [r for r in ready if r.id in won]
        await bulk.insert(
            DatasetEvent,
            [
                {
                    "dataset_id": r.id,
                    "kind": EventKind.DELETED,
                    "at": ended[r.id],
                    "detail": reasons[r.id].value,
                }
                for r in done
            ],
        )
        stored = await notices.store_deletions(
            rt.settings, [notes[r.id] for r in done if r.id in notes]
        )
    for r in done:
        r.status = DatasetStatus.DELETED
        r.deleted_at = ended[r.id]
    return done, stored


CHUNK = 500  # rows per batched statement (parameters stay far below every limit)
_CLAIMED = reads.Read(
    TrainingDataset,
    lambda ids: TrainingDataset.filter(id__in=ids, status=DatasetStatus.DELETING).order_by("id"),
)
BYTES_WAIT = 1.0  # seconds a caller waits for bytes and tombstones; then they run on alone
IN_HAND: set[int] = set()  # datasets this process is finishing now
_RUNNING: set[asyncio.Task[list[int]]] = set()  # bytes and tombstones running on alone


def in_hand(dataset_id: int) -> bool:
    """Whether this process is finishing this dataset's deletion right now."""
    return dataset_id in IN_HAND


def _chunks(rows: Sequence[TrainingDataset]) -> list[Sequence[TrainingDataset]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


async def finish(
    rt: Runtime, dataset_ids: Iterable[int], *, now: datetime, wait: float = BYTES_WAIT
) -> list[int]:
    """Steps 2 to 4 for claimed datasets (rows not ``DELETING`` are skipped), any number
    of them: keys and tombstones in statements of ``CHUNK`` rows, bytes all together
    within one ``BYTES_PATIENCE``. Safe to rerun.

    The keys are destroyed before it returns; the bytes and tombstones run in a task of
    their own, which the caller waits for at most ``wait`` seconds: a slow object store
    never holds up the next claim (a job slot, the embedded runner's loop). Returns the
    ids whose tombstone was written by then."""
    wanted = sorted(set(dataset_ids) - IN_HAND)
    if not wanted:
        return []
    IN_HAND.update(wanted)
    try:
        rows: list[TrainingDataset] = []
        for i in range(0, len(wanted), CHUNK):
            rows += await _CLAIMED(wanted[i : i + CHUNK])
        for chunk in _chunks(rows):
            await _destroy_keys(rt, chunk)
    except BaseException:
        IN_HAND.difference_update(wanted)
        raise
    if not rows:
        IN_HAND.difference_update(wanted)
        return []
    task = asyncio.create_task(_bytes_and_tombstones(rt, rows, now=now), name="lorashelf-bytes")
    _RUNNING.add(task)
    waited = {"caller": True}

    def ended(done: asyncio.Task[list[int]]) -> None:
        _RUNNING.discard(done)
        IN_HAND.difference_update(wanted)
        if not done.cancelled() and not waited["caller"] and done.exception() is not None:
            log.error("finishing deletions failed (the sweep retries)", exc_info=done.exception())

    task.add_done_callback(ended)
    finished, _ = await asyncio.wait({task}, timeout=wait)
    if task in finished:
        return task.result()
    waited["caller"] = False
    log.info("%s deletions: bytes and tombstones still under way", len(rows))
    return []


async def _bytes_and_tombstones(
    rt: Runtime, rows: list[TrainingDataset], *, now: datetime
) -> list[int]:
    removed = await _remove_bytes(rt, rows)
    signer = await receipts.signer(rt.master, now=rt.clock.now())  # after the bytes went
    done: list[TrainingDataset] = []
    stored: list[Notification] = []
    for chunk in _chunks(rows):
        written, told = await _write_tombstones(rt, chunk, removed, now=now, signer=signer)
        done += written
        stored += told
    for row in done:
        reason = row.deletion_reason or DeletionReason.OWNER_REQUEST
        ended = row.deleted_at or now
        late = (
            (ended - row.expires_at).total_seconds()
            if reason == DeletionReason.EXPIRED and row.expires_at is not None
            else None
        )
        rt.metrics.deleted(reason, lateness=late)
    await rt.deliver_all(stored)
    await rt.datasets_changed([row.id for row in done])
    # the header windows of the versions that have weights files still withholding keys
    held: list[Any] = await ModelFile.filter(
        version_id__in=[row.version_id for row in done],
        status=DatasetStatus.AVAILABLE,
        header_erased_at=None,
    ).values_list("version_id", flat=True)
    versions = sorted({int(v) for v in held})
    if versions:
        async with in_transaction():
            changed = [f for v in versions for f in await header_firewall.recompute(rt, v)]
        await header_firewall.reschedule(rt, changed)
    return [row.id for row in done]
