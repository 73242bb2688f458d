"""The owner's notices about moderation, with their wording: a takedown, a
restoration, a suspension, a reinstatement. Like the retention notices
(``storage/retention/notices.py``), a notice is stored in the transaction of the change
it reports, with its e-mail (``storage/mail/outbox.py``); the caller delivers it after
the commit."""

from __future__ import annotations

from datetime import datetime

from storage.config.settings import Settings
from storage.db.enums import NotificationKind
from storage.db.models import LoraModel, ModelVersion, Notification
from storage.mail import messages, outbox
from storage.moderation.subjects import Subject


async def describe(subject: Subject) -> str:
    """A model or version as its owner knows it: 'your model "Cats"', 'version "v1" of
    your model "Cats"'."""
    row = subject.row
    if isinstance(row, ModelVersion):
        model = await LoraModel.get(id=row.model_id)
        return f'version "{row.name}" of your model "{model.name}"'
    if isinstance(row, LoraModel):
        return f'your model "{row.name}"'
    return "your content"


async def _record(
    settings: Settings, *, user_id: int, kind: NotificationKind, message: str, now: datetime
) -> Notification:
    notification = await Notification.create(
        user_id=user_id,
        kind=kind,
        offset_seconds=0,
        window_end=now,
        message=message,
        created_at=now,
    )
    await outbox.enqueue_notice(settings, notification, now=now)
    return notification


async def taken_down(
    settings: Settings, subject: Subject, *, reason: str, now: datetime
) -> Notification:
    what = await describe(subject)
    message = (
        f"The operators of this site took down {what} on {messages.moment(now)}. Reason: {reason} "
        "It is hidden from everybody but you; its downloads stopped. Your private "
        "datasets keep their own deletion dates unless the law required their removal "
        "(then you get a separate notice)."
    )
    assert subject.owner_id is not None
    return await _record(
        settings,
        user_id=subject.owner_id,
        kind=NotificationKind.CONTENT_TAKEN_DOWN,
        message=message,
        now=now,
    )


async def restored(
    settings: Settings, subject: Subject, *, reason: str, now: datetime
) -> Notification:
    what = await describe(subject)
    message = (
        f"The operators of this site restored {what} on {messages.moment(now)}: it is visible "
        f"again. Reason: {reason}"
    )
    assert subject.owner_id is not None
    return await _record(
        settings,
        user_id=subject.owner_id,
        kind=NotificationKind.CONTENT_RESTORED,
        message=message,
        now=now,
    )


async def suspended(
    settings: Settings, user_id: int, *, reason: str, now: datetime
) -> Notification:
    message = (
        f"The operators of this site suspended your account on {messages.moment(now)}. Reason: "
        f"{reason} You cannot sign in and your public content is hidden. Your private "
        "datasets keep their deletion dates and are deleted on time."
    )
    return await _record(
        settings, user_id=user_id, kind=NotificationKind.ACCOUNT_SUSPENDED, message=message, now=now
    )


async def reinstated(
    settings: Settings, user_id: int, *, reason: str, now: datetime
) -> Notification:
    message = (
        f"The operators of this site reinstated your account on {messages.moment(now)}: you "
        f"can sign in again and your public content is visible again. Reason: {reason}"
    )
    return await _record(
        settings,
        user_id=user_id,
        kind=NotificationKind.ACCOUNT_REINSTATED,
        message=message,
        now=now,
    )
