"""Deletion in the database: claims, bytes, tombstones.

The database is the source of truth: a deletion is claimed with one conditional update
(``AVAILABLE -> DELETING``), the bytes go, then the tombstone, its history entry and
(for an expiry) the owner's notice are written in one transaction. Every step is safe
to run twice, late, concurrently or after a crash. Windows themselves are opened by
:class:`storage.retention.policy.RetentionPolicy`; what falls due is found by
:mod:`storage.retention.due`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from storage.db.enums import DatasetStatus, DeletionReason, EventKind, VersionStatus, Visibility
from storage.db.models import ModelVersion, Notification, TrainingDataset
from storage.retention import header_firewall, history, notices
from storage.retention.policy import LIVE
from storage.runtime import Runtime
from storage.system.claim_holder import holder


async def dataset_by_id(dataset_id: int) -> TrainingDataset | None:
    """A dataset row whatever its state, for the retention machinery (never for a viewer:
    viewers go through :mod:`storage.privacy.lookups`)."""
    return await TrainingDataset.get_or_none(id=dataset_id)


async def published(dataset: TrainingDataset) -> bool:
    """Whether the dataset's version is published (its window is then the private
    retention, else the draft lifetime)."""
    return await ModelVersion.filter(id=dataset.version_id, status=VersionStatus.PUBLISHED).exists()


# Deletion ----------------------------------------------------------------------


async def claim_deletion(condition: Q, *, reason: DeletionReason, now: datetime) -> bool:
    """Claim a live dataset for deletion with one conditional update; True if this call won."""
    claimed = await TrainingDataset.filter(condition, status__in=LIVE).update(
        status=DatasetStatus.DELETING, deletion_reason=reason, claimed_at=now, claimed_by=holder()
    )
    return claimed > 0


def over(dataset: TrainingDataset, now: datetime) -> bool:
    """Whether a private dataset's window has ended (its bytes may go, whatever else)."""
    return (
        dataset.visibility == Visibility.PRIVATE
        and dataset.expires_at is not None
        and dataset.expires_at <= now
    )


def expiry_condition(dataset_id: int, now: datetime) -> Q:
    """A dataset may be deleted for expiry once its window has ended."""
    return Q(id=dataset_id, visibility=Visibility.PRIVATE, expires_at__lte=now)


async def claim(dataset_id: int, *, reason: DeletionReason, now: datetime) -> bool:
    """Claim a dataset for deletion by its owner or with its model. A private dataset
    whose window has already ended is recorded as expired (and its owner notified),
    whatever asked for the deletion."""
    if await claim_deletion(
        expiry_condition(dataset_id, now), reason=DeletionReason.EXPIRED, now=now
    ):
        return True
    return await claim_deletion(Q(id=dataset_id), reason=reason, now=now)


async def complete_deletion(rt: Runtime, dataset_id: int, *, now: datetime) -> bool:
    """Delete the bytes of a claimed dataset, then leave the tombstone. Safe to rerun.

    The tombstone, its history entry and (for an expiry) the owner's deletion notice
    are written in one transaction by whichever call wins the final conditional
    update; that call then delivers the notice and tells the scheduler. ``deletedAt``
    is the claim's instant, when access ended: written once, whoever finishes. Returns
    whether this call wrote the tombstone.
    """
    dataset = await TrainingDataset.get_or_none(id=dataset_id, status=DatasetStatus.DELETING)
    if dataset is None:
        return False
    if dataset.blob_key is not None:
        await rt.blobs.delete(dataset.blob_key)
    reason = dataset.deletion_reason or DeletionReason.OWNER_REQUEST
    # A window ended by anything but expiry no longer has an expiry to show.
    expires_at = dataset.expires_at if reason == DeletionReason.EXPIRED else None
    notice: Notification | None = None
    ended = dataset.claimed_at or now
    async with in_transaction():
        done = await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.DELETING).update(
            status=DatasetStatus.DELETED,
            deleted_at=ended,
            expires_at=expires_at,
            blob_key=None,
            upload_nonce=None,
            next_reminder_at=None,
        )
        if not done:
            return False
        await history.record(dataset_id, EventKind.DELETED, ended, reason.value)
        if reason == DeletionReason.EXPIRED:
            notice = await notices.record_deletion(dataset, now=ended)
    late = (ended - expires_at).total_seconds() if expires_at is not None else None
    rt.metrics.deleted(reason, lateness=late)
    await rt.deliver(notice)
    await rt.dataset_changed(dataset_id)
    await header_firewall.refresh(rt, dataset.version_id)
    return True


async def delete_claimed(rt: Runtime, dataset_ids: Iterable[int], *, now: datetime) -> None:
    """Finish claims made together (a model or version deleted): bytes go now."""
    for dataset_id in dataset_ids:
        await complete_deletion(rt, dataset_id, now=now)
