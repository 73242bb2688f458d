"""Deletion in the database: claims, keys, bytes, tombstones, receipts.

A dataset's deletion is four steps, in this order (:func:`complete_deletion`):

1. **claim**: one conditional update (``AVAILABLE -> DELETING``); access ends here;
2. **destroy the key**: its data key's row deleted from the key store, and the instant
   recorded as ``key_destroyed_at``, in one transaction (:func:`destroy_key`): from
   then on no copy of the bytes anywhere (backups, object versions) can be read;
3. **delete the object**: every stored version and delete marker of it;
4. **tombstone and receipt**: the tombstone, its signed receipt (what was deleted,
   when the window ended, when the key was destroyed, when the last copy went, why),
   its history entry and (for an expiry) the owner's notice, in one transaction.

Every step is safe to run twice, late, concurrently or after a crash: a crash between
steps leaves the row ``DELETING``, and the sweep finishes it from the step it reached.
Windows themselves are opened by :class:`storage.retention.policy.RetentionPolicy`;
what falls due is found by :mod:`storage.retention.due`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from storage import exports
from storage.crypto import keystore, receipts
from storage.db.enums import DatasetStatus, DeletionReason, EventKind, VersionStatus, Visibility
from storage.db.global_ids import encode
from storage.db.models import ModelVersion, Notification, TrainingDataset, User
from storage.retention import header_firewall, history, notices
from storage.retention.policy import LIVE
from storage.runtime import Runtime
from storage.system.claim_holder import holder


async def dataset_by_id(dataset_id: int) -> TrainingDataset | None:
    """A dataset row whatever its state, for the retention machinery (never for a viewer:
    viewers go through :mod:`storage.privacy.lookups`)."""
    return await TrainingDataset.get_or_none(id=dataset_id)


async def datasets_by_ids(dataset_ids: Sequence[int]) -> dict[int, TrainingDataset]:
    """Many rows of :func:`dataset_by_id` in one query, by id (a deleted-for-good one is
    left out)."""
    rows = await TrainingDataset.filter(id__in=list(dataset_ids))
    return {row.id: row for row in rows}


async def published(dataset: TrainingDataset) -> bool:
    """Whether the dataset's version is published (its window is then the private
    retention, else the draft lifetime)."""
    return await ModelVersion.filter(id=dataset.version_id, status=VersionStatus.PUBLISHED).exists()


# Deletion ----------------------------------------------------------------------


async def claim_deletion(condition: Q, *, reason: DeletionReason, now: datetime) -> bool:
    """Claim a live dataset for deletion with one conditional update; True if this call
    won. Its owner's data exports, which may hold it, end in the same transaction. The
    same statements run whether or not anything was claimed (an operator's takedown
    must not take longer for private data than for none)."""
    async with in_transaction():
        claimed = await TrainingDataset.filter(condition, status__in=LIVE).update(
            status=DatasetStatus.DELETING,
            deletion_reason=reason,
            claimed_at=now,
            claimed_by=holder(),
        )
        owners: list[Any] = await TrainingDataset.filter(
            condition, status=DatasetStatus.DELETING, claimed_at=now, claimed_by=holder()
        ).values_list("owner_id", flat=True)
        await exports.withdraw((int(o) for o in owners), now)
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


async def destroy_key(rt: Runtime, dataset: TrainingDataset) -> datetime | None:
    """Step 2: destroy a claimed dataset's data key and record the instant, in one
    transaction. Returns when it was destroyed (None: its bytes had no key, being stored
    before sealing, or there are none)."""
    if dataset.key_destroyed_at is not None or dataset.blob_key is None:
        return dataset.key_destroyed_at
    async with in_transaction():
        at = rt.clock.now()
        if await keystore.destroy([dataset.blob_key]):
            await TrainingDataset.filter(id=dataset.id, key_destroyed_at=None).update(
                key_destroyed_at=at
            )
    await keystore.settle()
    row = await TrainingDataset.get(id=dataset.id)
    dataset.key_destroyed_at = row.key_destroyed_at
    return dataset.key_destroyed_at


async def receipt_for(
    rt: Runtime,
    dataset: TrainingDataset,
    *,
    reason: DeletionReason,
    ended: datetime,
    removed_at: datetime,
) -> receipts.Receipt:
    """The signed receipt of a dataset's deletion (:mod:`storage.crypto.receipts`)."""
    owner = await User.get(id=dataset.owner_id)
    payload = receipt_payload(
        rt, dataset, reason=reason, ended=ended, removed_at=removed_at, owner=owner.public_id
    )
    return await receipts.sign(rt.master, payload, now=rt.clock.now())


def receipt_payload(
    rt: Runtime,
    dataset: TrainingDataset,
    *,
    reason: DeletionReason,
    ended: datetime,
    removed_at: datetime,
    owner: str | None,
) -> dict[str, Any]:
    """What a dataset's deletion receipt says (``owner``: the owner's public id)."""
    window_end = dataset.expires_at if reason == DeletionReason.EXPIRED else ended
    return {
        "kind": "TRAINING_DATASET_DELETED",
        "issuer": rt.settings.public_url or None,
        "owner": encode("User", owner),
        "dataset": {
            "id": encode("TrainingDataset", dataset.public_id),
            "filename": dataset.filename,
            "sha256": dataset.sha256,
            "sizeBytes": dataset.size_bytes,
            "visibility": dataset.visibility.value,
        },
        "reason": reason.value,
        "windowEndedAt": receipts.instant(window_end),
        "keyDestroyedAt": receipts.instant(dataset.key_destroyed_at),
        "lastCopyRemovedAt": receipts.instant(removed_at),
        "sealed": dataset.key_destroyed_at is not None,
    }


async def complete_deletion(rt: Runtime, dataset_id: int, *, now: datetime) -> bool:
    """Steps 2 to 4 of a claimed dataset's deletion (see the module). Safe to rerun.

    The tombstone, its receipt, its history entry and (for an expiry) the owner's
    deletion notice are written in one transaction by whichever call wins the final
    conditional update; that call then delivers the notice and tells the scheduler.
    ``deletedAt`` is the claim's instant, when access ended: written once, whoever
    finishes. Returns whether this call wrote the tombstone.
    """
    dataset = await TrainingDataset.get_or_none(id=dataset_id, status=DatasetStatus.DELETING)
    if dataset is None:
        return False
    # 2. the key
    await destroy_key(rt, dataset)
    # 3. the object, every version and delete marker of it
    if dataset.blob_key is not None:
        await rt.blobs.remove_bytes(dataset.blob_key)
    removed_at = rt.clock.now()
    # 4. the tombstone and its receipt
    reason = dataset.deletion_reason or DeletionReason.OWNER_REQUEST
    # A window ended by anything but expiry no longer has an expiry to show.
    expires_at = dataset.expires_at if reason == DeletionReason.EXPIRED else None
    notice: Notification | None = None
    ended = dataset.claimed_at or now
    async with in_transaction():
        receipt = await receipt_for(rt, dataset, reason=reason, ended=ended, removed_at=removed_at)
        done = await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.DELETING).update(
            status=DatasetStatus.DELETED,
            deleted_at=ended,
            expires_at=expires_at,
            blob_key=None,
            upload_nonce=None,
            next_reminder_at=None,
            receipt_payload=receipt.payload,
            receipt_signature=receipt.signature,
            receipt_key_id=receipt.key_id,
        )
        if not done:
            return False
        await history.record(dataset_id, EventKind.DELETED, ended, reason.value)
        if reason in notices.DELETED_BECAUSE:
            notice = await notices.record_deletion(rt.settings, dataset, now=ended, reason=reason)
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
