"""What falls due, and what a crash left behind: the indexed queries the sweep and the
embedded runner use, and the repairs they lead to.

``expires_at`` says when a private dataset's bytes must be gone and ``next_reminder_at``
when its next reminder falls due, both indexed with ``status``. Every query walks an
index in bounded batches, so its cost grows with the work that is due, not with the
size of the table. Every repair is a conditional update, safe to run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from tortoise.queryset import QuerySet

from storage.crypto import keystore
from storage.db.enums import DatasetStatus, ExportStatus, Visibility
from storage.db.models import DataExport, ModelFile, TrainingDataset
from storage.retention import header_firewall
from storage.retention.deletion import dataset_by_id, published
from storage.retention.policy import next_reminder
from storage.runtime import Runtime
from storage.system.claim_holder import HOST, holder_gone

log = logging.getLogger("lorashelf.jobs")

Stored = type[TrainingDataset] | type[ModelFile]  # what holds uploaded bytes


async def _ids(query: QuerySet[TrainingDataset] | QuerySet[ModelFile]) -> list[int]:
    return [row.id for row in await query.only("id")]


async def overdue_expiries(now: datetime, *, limit: int) -> list[int]:
    rows = (
        TrainingDataset.filter(status=DatasetStatus.AVAILABLE, expires_at__lte=now)
        .filter(visibility=Visibility.PRIVATE)
        .order_by("expires_at")
        .limit(limit)
    )
    return await _ids(rows)


async def coming(now: datetime, until: datetime, *, limit: int) -> list[TrainingDataset]:
    """Private datasets with an expiry or a reminder due after ``now`` and by ``until``,
    soonest first (two index ranges)."""
    available = TrainingDataset.filter(status=DatasetStatus.AVAILABLE)
    expiring = available.filter(
        visibility=Visibility.PRIVATE, expires_at__gt=now, expires_at__lte=until
    )
    reminding = available.filter(next_reminder_at__gt=now, next_reminder_at__lte=until)
    ids = set(await _ids(expiring.order_by("expires_at").limit(limit)))
    ids |= set(await _ids(reminding.order_by("next_reminder_at").limit(limit)))
    return list(await TrainingDataset.filter(id__in=sorted(ids)[: 2 * limit]))


async def coming_files(now: datetime, until: datetime, *, limit: int) -> list[ModelFile]:
    """Weights files whose withheld header keys are erased after ``now``, by ``until``."""
    return list(
        await ModelFile.filter(
            status=DatasetStatus.AVAILABLE, header_expires_at__gt=now, header_expires_at__lte=until
        )
        .order_by("header_expires_at")
        .limit(limit)
    )


async def stale_claims(
    model: Stored, status: DatasetStatus, now: datetime, *, older_than: int, limit: int
) -> list[int]:
    """Rows held in ``status`` (a deletion, an upload) by a claim that is older than
    ``older_than`` seconds, or whose holder on this host is known to be dead (finished
    at once: a restarted process does not wait for the lease)."""
    cutoff = now - timedelta(seconds=older_than)
    aged = model.filter(status=status, claimed_at__lte=cutoff).order_by("claimed_at")
    found = await _ids(aged.limit(limit))
    mine = model.filter(status=status, claimed_by__startswith=f"{HOST}:").exclude(id__in=found)
    for row in await mine.limit(limit).only("id", "claimed_by"):
        if holder_gone(row.claimed_by):
            found.append(row.id)
    return found[:limit]


async def stuck_deletions(
    model: Stored, now: datetime, *, older_than: int, limit: int
) -> list[int]:
    """Datasets or files claimed for deletion that a crashed process left unfinished."""
    return await stale_claims(
        model, DatasetStatus.DELETING, now, older_than=older_than, limit=limit
    )


async def windowless(*, limit: int) -> list[int]:
    """Private datasets with their bytes but no window: a state no service leaves behind,
    repaired by the sweep (a window is never left open-ended)."""
    rows = (
        TrainingDataset.filter(
            status=DatasetStatus.AVAILABLE, visibility=Visibility.PRIVATE, expires_at=None
        )
        .order_by("id")
        .limit(limit)
    )
    return await _ids(rows)


async def give_window(rt: Runtime, dataset_id: int, *, now: datetime) -> bool:
    """Repair a windowless private dataset: a full window from now (the draft lifetime
    for a draft). Returns whether it was needed."""
    dataset = await dataset_by_id(dataset_id)
    if dataset is None:
        return False
    window = rt.policy.window_for(private=True, published=await published(dataset), start=now)
    fixed = await TrainingDataset.filter(
        id=dataset_id,
        status=DatasetStatus.AVAILABLE,
        visibility=Visibility.PRIVATE,
        expires_at=None,
    ).update(**window.fields())
    if fixed:
        await rt.dataset_changed(dataset_id)
        await header_firewall.refresh(rt, dataset.version_id)
    return bool(fixed)


# Reminders ---------------------------------------------------------------------


async def due_reminders(now: datetime, *, limit: int) -> list[int]:
    rows = (
        TrainingDataset.filter(status=DatasetStatus.AVAILABLE, next_reminder_at__lte=now)
        .order_by("next_reminder_at")
        .limit(limit)
    )
    return await _ids(rows)


async def advance_reminder(
    dataset: TrainingDataset, *, past: datetime, offsets: tuple[int, ...]
) -> None:
    """Move ``next_reminder_at`` beyond ``past``, unless the row changed meanwhile."""
    await TrainingDataset.filter(
        id=dataset.id,
        next_reminder_at=dataset.next_reminder_at,
        expires_at=dataset.expires_at,
    ).update(next_reminder_at=next_reminder(dataset.expires_at, offsets, after=past))


# Abandoned uploads and orphan blobs --------------------------------------------


def abandoned(row: TrainingDataset | ModelFile, now: datetime, *, older_than: int) -> bool:
    """An upload whose URL expired with no bytes, or whose PUT died mid-way (its claim
    not refreshed for ``older_than`` seconds, or its holder gone)."""
    if row.status == DatasetStatus.PENDING_UPLOAD:
        return row.upload_expires_at is not None and row.upload_expires_at <= now
    if row.status != DatasetStatus.UPLOADING:
        return False
    stale = row.claimed_at is None or (now - row.claimed_at).total_seconds() >= older_than
    return stale or holder_gone(row.claimed_by)


async def abandoned_uploads(
    model: Stored, now: datetime, *, older_than: int, limit: int
) -> list[int]:
    """Uploads whose URL expired with no bytes, or whose PUT died mid-way."""
    expired = model.filter(status=DatasetStatus.PENDING_UPLOAD, upload_expires_at__lte=now)
    found = await _ids(expired.order_by("id").limit(limit))
    found += await stale_claims(
        model, DatasetStatus.UPLOADING, now, older_than=older_than, limit=limit
    )
    return found[:limit]


async def discard_upload(
    rt: Runtime, model: Stored, pk: int, *, now: datetime, older_than: int
) -> bool:
    """Forget a record whose bytes never arrived (and recompute its version's header
    windows, which a pending public dataset may have held open). Safe to rerun: the
    row is removed only as it was read (same status and claim)."""
    row = await model.get_or_none(id=pk)
    if row is None or not abandoned(row, now, older_than=older_than):
        return False
    deleted = await model.filter(
        id=pk, status=row.status, claimed_at=row.claimed_at, upload_nonce=row.upload_nonce
    ).delete()
    if deleted:
        await header_firewall.refresh(rt, row.version_id)
    return deleted > 0


async def referenced_blob_keys(keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` a dataset, a weights file or a data export still refers to."""
    wanted = list(keys)
    found: set[str] = set()
    rows = await TrainingDataset.filter(blob_key__in=wanted).values_list("blob_key", flat=True)
    found.update(str(k) for k in rows if k is not None)
    for column in ModelFile.BLOB_COLUMNS:
        rows = await ModelFile.filter(**{f"{column}__in": wanted}).values_list(column, flat=True)
        found.update(str(k) for k in rows if k is not None)
    rows = await DataExport.filter(blob_key__in=wanted).values_list("blob_key", flat=True)
    found.update(str(k) for k in rows if k is not None)
    return found


# The embedded runner's alarm clock ---------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def remove_orphans(rt: Runtime, cutoff: datetime) -> int:
    """Remove the blobs no row refers to, the data keys whose blob never made it into
    place (a crash between the two) and the temporary files, all older than ``cutoff``
    (so an upload in flight is never touched). How many were removed."""
    removed = await rt.blobs.remove_stale_temp_files(older_than=cutoff)
    async for keys in rt.blobs.keys_older_than(cutoff):
        referenced = await referenced_blob_keys(keys)
        for key in keys:
            if key not in referenced:
                await rt.blobs.delete(key)
                removed += 1
    async for keys in keystore.created_before(cutoff):
        referenced = await referenced_blob_keys(keys)
        for key in keys:
            if key not in referenced:
                await rt.blobs.delete(key)
                removed += 1
    if removed:
        log.info("removed %s orphan blob files", removed)
    return removed


async def next_due(now: datetime) -> datetime | None:
    """The earliest instant at which an expiry, a reminder, a header erasure or the end
    of a data export falls due (maybe past)."""
    # "After the epoch" rather than "not null": a range the (status, instant) indexes
    # seek to, where "not null" walks past every row without one (public datasets).
    available = TrainingDataset.filter(status=DatasetStatus.AVAILABLE)
    expiry = (
        await available.filter(visibility=Visibility.PRIVATE, expires_at__gt=EPOCH)
        .order_by("expires_at")
        .first()
    )
    reminder = (
        await available.filter(next_reminder_at__gt=EPOCH).order_by("next_reminder_at").first()
    )
    header = (
        await ModelFile.filter(status=DatasetStatus.AVAILABLE, header_expires_at__gt=EPOCH)
        .order_by("header_expires_at")
        .first()
    )
    export = (
        await DataExport.filter(status=ExportStatus.READY, expires_at__gt=EPOCH)
        .order_by("expires_at")
        .first()
    )
    candidates = [
        t
        for t in (
            expiry.expires_at if expiry else None,
            reminder.next_reminder_at if reminder else None,
            header.header_expires_at if header else None,
            export.expires_at if export else None,
        )
        if t is not None
    ]
    return min(candidates) if candidates else None
