"""In-app notifications: listing, counting, marking read."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from storage.models import Notification
from storage.pages import Page, newest_first


async def notifications_page(
    *, user_id: int, unread_only: bool, first: int | None, after: str | None
) -> Page[Notification]:
    query = Notification.filter(user_id=user_id)
    if unread_only:
        query = query.filter(read_at=None)
    return await newest_first(query, first=first, after=after)


async def unread_count(user_id: int) -> int:
    return int(await Notification.filter(user_id=user_id, read_at=None).count())


async def mark_read(*, user_id: int, ids: Iterable[int], now: datetime) -> list[Notification]:
    """Mark the user's own notifications read; ids of anybody else's are ignored."""
    wanted = list(ids)
    await Notification.filter(user_id=user_id, id__in=wanted, read_at=None).update(read_at=now)
    return list(await Notification.filter(user_id=user_id, id__in=wanted).order_by("-id"))


async def notification_of(*, user_id: int | None, notification_id: int) -> Notification | None:
    """One notification, only for the user it was sent to."""
    if user_id is None:
        return None
    return await Notification.get_or_none(id=notification_id, user_id=user_id)
