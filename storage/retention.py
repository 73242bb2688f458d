"""Retention in the database: windows, what is due, and the steps that do it.

The database is the source of truth: ``expires_at`` says when a private dataset's
bytes must be gone and ``next_reminder_at`` when its next reminder falls due, both
indexed with ``status``. Every query walks an index in bounded batches, so its cost
grows with the work that is due, not with the size of the table. Every step is a
conditional update, safe to run twice, late, concurrently or after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from storage import events
from storage.blobs import BlobStore
from storage.config import describe_duration
from storage.models import (
    DatasetStatus,
    DeletionReason,
    EventKind,
    LoraModel,
    ModelVersion,
    Notification,
    NotificationKind,
    TrainingDataset,
    Visibility,
)

LIVE = (DatasetStatus.PENDING_UPLOAD, DatasetStatus.UPLOADING, DatasetStatus.AVAILABLE)


async def _ids(query: QuerySet[TrainingDataset]) -> list[int]:
    return [row.id for row in await query.only("id")]


# Windows ---------------------------------------------------------------------


def next_reminder(
    expires_at: datetime | None, offsets: Sequence[int], *, after: datetime
) -> datetime | None:
    """The earliest reminder due strictly after ``after`` (reminders due before a
    window opened are never sent)."""
    if expires_at is None:
        return None
    dues = [expires_at - timedelta(seconds=o) for o in offsets]
    future = [due for due in dues if due > after]
    return min(future) if future else None


def window(
    now: datetime, *, retention: int, offsets: Sequence[int]
) -> tuple[datetime, datetime | None]:
    """A full private window starting now: (expires_at, next_reminder_at)."""
    expires_at = now + timedelta(seconds=retention)
    return expires_at, next_reminder(expires_at, offsets, after=now)


# Deletion ----------------------------------------------------------------------


async def claim_deletion(condition: Q, *, reason: DeletionReason, now: datetime) -> bool:
    """Claim a live dataset for deletion with one conditional update; True if this call won."""
    claimed = await TrainingDataset.filter(condition, status__in=LIVE).update(
        status=DatasetStatus.DELETING, deletion_reason=reason, claimed_at=now
    )
    return claimed > 0


async def claim(dataset_id: int, *, reason: DeletionReason, now: datetime) -> bool:
    """Claim a dataset for deletion by its owner or with its model. A private dataset
    whose window has already ended is recorded as expired (and its owner notified),
    whatever asked for the deletion."""
    if await claim_deletion(
        expiry_condition(dataset_id, now), reason=DeletionReason.EXPIRED, now=now
    ):
        return True
    return await claim_deletion(Q(id=dataset_id), reason=reason, now=now)


async def complete_deletion(
    dataset_id: int, *, now: datetime, blobs: BlobStore
) -> Notification | bool:
    """Delete the bytes of a claimed dataset, then leave the tombstone. Safe to rerun.

    The tombstone, its history entry and (for an expiry) the owner's deletion notice
    are written in one transaction by whichever call wins the final conditional
    update. Returns the notice for an expiry, True for another reason, and False
    when there was nothing (left) to do.
    """
    dataset = await TrainingDataset.get_or_none(id=dataset_id, status=DatasetStatus.DELETING)
    if dataset is None:
        return False
    if dataset.blob_key is not None:
        await blobs.delete(dataset.blob_key)
    reason = dataset.deletion_reason or DeletionReason.OWNER_REQUEST
    # A window ended by anything but expiry no longer has an expiry to show.
    expires_at = dataset.expires_at if reason == DeletionReason.EXPIRED else None
    async with in_transaction():
        done = await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.DELETING).update(
            status=DatasetStatus.DELETED,
            deleted_at=now,
            expires_at=expires_at,
            blob_key=None,
            upload_nonce=None,
            next_reminder_at=None,
        )
        if not done:
            return False
        await events.record(dataset_id, EventKind.DELETED, now, reason.value)
        if reason != DeletionReason.EXPIRED:
            return True
        dataset.deleted_at = now
        return await _deletion_notice(dataset, now=now)


def expiry_condition(dataset_id: int, now: datetime) -> Q:
    """A dataset may be deleted for expiry once its window has ended."""
    return Q(id=dataset_id, visibility=Visibility.PRIVATE, expires_at__lte=now)


async def overdue_expiries(now: datetime, *, limit: int) -> list[int]:
    rows = (
        TrainingDataset.filter(status=DatasetStatus.AVAILABLE, expires_at__lte=now)
        .filter(visibility=Visibility.PRIVATE)
        .order_by("expires_at")
        .limit(limit)
    )
    return await _ids(rows)


async def stuck_deletions(now: datetime, *, older_than: int, limit: int) -> list[int]:
    cutoff = now - timedelta(seconds=older_than)
    rows = (
        TrainingDataset.filter(status=DatasetStatus.DELETING, claimed_at__lte=cutoff)
        .order_by("claimed_at")
        .limit(limit)
    )
    return await _ids(rows)


# Reminders ---------------------------------------------------------------------


async def due_reminders(now: datetime, *, limit: int) -> list[int]:
    rows = (
        TrainingDataset.filter(status=DatasetStatus.AVAILABLE, next_reminder_at__lte=now)
        .order_by("next_reminder_at")
        .limit(limit)
    )
    return await _ids(rows)


async def advance_reminder(
    dataset: TrainingDataset, *, past: datetime, offsets: Sequence[int]
) -> None:
    """Move ``next_reminder_at`` beyond ``past``, unless the row changed meanwhile."""
    await TrainingDataset.filter(
        id=dataset.id,
        next_reminder_at=dataset.next_reminder_at,
        expires_at=dataset.expires_at,
    ).update(next_reminder_at=next_reminder(dataset.expires_at, offsets, after=past))


async def record_reminder(
    dataset: TrainingDataset, *, offset: int, now: datetime
) -> Notification | None:
    """Store the reminder for this dataset and offset, once ever (a unique constraint)."""
    assert dataset.expires_at is not None
    model, version = await _names(dataset)
    left = describe_duration(max(1, round((dataset.expires_at - now).total_seconds())))
    message = (
        f'Your private training dataset "{dataset.filename}" for {model} {version} will be '
        f"deleted on {_when(dataset.expires_at)} (in about {left}). Download it before then "
        "if you still need it."
    )
    try:
        async with in_transaction():
            notification = await Notification.create(
                user_id=dataset.owner_id,
                dataset_id=dataset.id,
                kind=NotificationKind.DATASET_EXPIRING,
                offset_seconds=offset,
                window_end=dataset.expires_at,
                message=message,
                created_at=now,
            )
            await events.record(
                dataset.id, EventKind.REMINDED, now, f"{describe_duration(offset)} before deletion"
            )
    except IntegrityError:
        return None
    return notification


# Abandoned uploads and orphan blobs --------------------------------------------


def _abandoned(now: datetime, older_than: int) -> Q:
    cutoff = now - timedelta(seconds=older_than)
    return Q(status=DatasetStatus.PENDING_UPLOAD, upload_expires_at__lte=now) | Q(
        status=DatasetStatus.UPLOADING, claimed_at__lte=cutoff
    )


async def abandoned_uploads(now: datetime, *, older_than: int, limit: int) -> list[int]:
    """Uploads whose URL expired with no bytes, or whose PUT died mid-way."""
    rows = TrainingDataset.filter(_abandoned(now, older_than)).order_by("id").limit(limit)
    return await _ids(rows)


async def discard_upload(dataset_id: int, *, now: datetime, older_than: int) -> bool:
    """Forget a dataset record whose bytes never arrived. Safe to rerun."""
    deleted = await TrainingDataset.filter(_abandoned(now, older_than), id=dataset_id).delete()
    return deleted > 0


async def referenced_blob_keys(keys: Iterable[str]) -> set[str]:
    wanted = list(keys)
    found = await TrainingDataset.filter(blob_key__in=wanted).values_list("blob_key", flat=True)
    return {str(k) for k in found if k is not None}


# The embedded runner's alarm clock ---------------------------------------------


async def next_due(now: datetime) -> datetime | None:
    """The earliest instant at which an expiry or a reminder falls due (maybe past)."""
    available = TrainingDataset.filter(status=DatasetStatus.AVAILABLE)
    expiry = (
        await available.filter(visibility=Visibility.PRIVATE, expires_at__isnull=False)
        .order_by("expires_at")
        .first()
    )
    reminder = (
        await available.filter(next_reminder_at__isnull=False).order_by("next_reminder_at").first()
    )
    candidates = [
        t
        for t in (
            expiry.expires_at if expiry else None,
            reminder.next_reminder_at if reminder else None,
        )
        if t is not None
    ]
    return min(candidates) if candidates else None


# Messages ------------------------------------------------------------------------


async def _names(dataset: TrainingDataset) -> tuple[str, str]:
    version = await ModelVersion.get(id=dataset.version_id)
    model = await LoraModel.get(id=version.model_id)
    return model.name, version.name


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _deletion_notice(dataset: TrainingDataset, *, now: datetime) -> Notification:
    model, version = await _names(dataset)
    message = (
        f'Your private training dataset "{dataset.filename}" for {model} {version} was '
        f"deleted on {_when(now)}: its retention window ended."
    )
    return await Notification.create(
        user_id=dataset.owner_id,
        dataset_id=dataset.id,
        kind=NotificationKind.DATASET_DELETED,
        offset_seconds=0,
        window_end=dataset.expires_at or now,
        message=message,
        created_at=now,
    )
