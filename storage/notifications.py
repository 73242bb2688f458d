"""The inbox: a user's in-app notifications, listed, counted, marked read, and followed
by live subscriptions. They are written, with their wording, by the retention notices
(:mod:`storage.retention.notices`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from storage import changes
from storage.db.models import Notification
from storage.db.pages import Page, newest_first
from storage.privacy import access


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
    async with changes.transaction(now, public=False):
        await mine.filter(read_at=None).update(read_at=now)
    return list(await changes.after_commit("re-reading notifications", mine.order_by("-id")) or [])


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
