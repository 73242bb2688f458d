"""In-app notifications: the rows, their wording, listing, counting, marking read.

A notification is stored in the same transaction as the change it reports: the
stored row *is* the in-app notification and the record that it was sent (a unique
constraint makes it once per dataset, kind, offset and window, ever).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage import access, events
from storage.config import describe_duration
from storage.models import (
    EventKind,
    LoraModel,
    ModelVersion,
    Notification,
    NotificationKind,
    TrainingDataset,
)
from storage.pages import Page, newest_first


async def notifications_page(
    *, user_id: int, unread_only: bool, first: int | None, after: str | None
) -> Page[Notification]:
    query = Notification.filter(access.owned_notifications_q(user_id))
    if unread_only:
        query = query.filter(read_at=None)
    return await newest_first(query, tag="notifications", first=first, after=after)


async def unread_count(user_id: int) -> int:
    return int(
        await Notification.filter(access.owned_notifications_q(user_id), read_at=None).count()
    )


async def mark_read(*, user_id: int, ids: Iterable[str], now: datetime) -> list[Notification]:
    """Mark the user's own notifications read (by public id); anybody else's are ignored."""
    wanted = list(ids)
    mine = Notification.filter(access.owned_notifications_q(user_id), public_id__in=wanted)
    await mine.filter(read_at=None).update(read_at=now)
    return list(await mine.order_by("-id"))


async def newest_id(user_id: int) -> int:
    """The key of the user's newest notification (0 for none): where a live
    subscription starts."""
    newest = (
        await Notification.filter(access.owned_notifications_q(user_id)).order_by("-id").first()
    )
    return newest.id if newest is not None else 0


async def added_since(user_id: int, *, after: int, limit: int) -> list[Notification]:
    """The user's own notifications stored after the one keyed ``after``, oldest first."""
    query = Notification.filter(access.owned_notifications_q(user_id), id__gt=after)
    return list(await query.order_by("id").limit(limit))


# Writing them ------------------------------------------------------------------


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
            await events.record(
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
