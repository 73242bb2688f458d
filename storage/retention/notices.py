"""The owner's notices about a dataset's retention: the reminder before deletion and
the notice after it, with their wording.

A notice is stored in the same transaction as the change it reports: the stored row
*is* the in-app notification and the record that it was sent (a unique constraint
makes it once per dataset, kind, offset and window, ever). Listing, counting and
marking read are the inbox's (:mod:`storage.notifications`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.config.parse import describe_duration
from storage.db.enums import EventKind, NotificationKind
from storage.db.models import LoraModel, ModelVersion, Notification, TrainingDataset
from storage.retention import history


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _names(dataset: TrainingDataset) -> tuple[str, str]:
    version = await ModelVersion.get(id=dataset.version_id)
    model = await LoraModel.get(id=version.model_id)
    return model.name, version.name


async def record_reminder(
    dataset: TrainingDataset, *, offset: int, now: datetime, late: bool = False
) -> Notification | None:
    """Store the reminder for this dataset, offset and window, once ever (a unique
    constraint), with its history entry. None if it was already sent."""
    assert dataset.expires_at is not None
    model, version = await _names(dataset)
    left = describe_duration(max(1, round((dataset.expires_at - now).total_seconds())))
    message = (
        f'Your private training dataset "{dataset.filename}" for {model} {version} will be '
        f"deleted on {_when(dataset.expires_at)} (in about {left}). Download it before then "
        "if you still need it."
    )
    if late:
        message += " (This reminder comes late: it could not be sent on time.)"
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
            await history.record(
                dataset.id, EventKind.REMINDED, now, f"{describe_duration(offset)} before deletion"
            )
    except IntegrityError:
        return None
    return notification


async def record_deletion(dataset: TrainingDataset, *, now: datetime) -> Notification:
    """The owner's notice that a private dataset was deleted at the end of its window
    (inside the transaction that writes the tombstone)."""
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
