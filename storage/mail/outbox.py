"""Outgoing e-mail, kept in the database: the truth about what is to be sent, what was
sent, and what was given up.

A message is written in the same transaction as what it reports (a reminder, a deletion
notice, a takedown; an address verification), so a committed notice always has its
e-mail and a rolled-back one never does. Requests never send: the jobs do
(``jobs/mail.py:deliver_mail``), claiming each due message with a conditional update
(``PENDING -> SENDING``), and on failure putting it back with exponential back-off
until ``LORASHELF_MAIL_RETRY_FOR`` has passed; then it is a dead letter (``DEAD``,
counted in ``/metrics``). A message is checked again just before it is sent: one whose
address changed, was removed or opted out meanwhile is dropped. Once a message is
final (sent, dead, dropped) its address and text are cleared: only the fact remains.

Without ``LORASHELF_SMTP_URL`` nothing is ever written here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tortoise.expressions import Q
from tortoise.functions import Count

from storage.config.masks import mask_email
from storage.config.parse import describe_duration
from storage.config.settings import Settings
from storage.db.enums import MailKind, MailStatus
from storage.db.models import Notification, User
from storage.db.site import OutgoingMail
from storage.mail import links, messages
from storage.system.claim_holder import holder

log = logging.getLogger("lorashelf.mail")

BACKOFF_FIRST = 2.0  # seconds before the second attempt, doubling ...
BACKOFF_MOST = 900.0  # ... up to a quarter of an hour between attempts
LEASE = 300  # seconds a sender may hold a message before another takes it back
FINAL = (MailStatus.SENT, MailStatus.DEAD, MailStatus.DROPPED)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    return timedelta(seconds=min(BACKOFF_MOST, BACKOFF_FIRST * 2 ** max(0, attempts - 1)))


def verified_address(user: User) -> str | None:
    return user.email if user.email and user.email_verified_at is not None else None


def wants(user: User, kind: MailKind) -> bool:
    """Whether this account wants this kind of e-mail (moderation notices: always)."""
    if kind == MailKind.REMINDER:
        return bool(user.email_reminders)
    if kind == MailKind.DELETION:
        return bool(user.email_deletions)
    return True


async def enqueue(
    settings: Settings,
    *,
    user: User,
    kind: MailKind,
    recipient: str,
    rendered: messages.Rendered,
    now: datetime,
) -> OutgoingMail | None:
    """Queue one message (inside the caller's transaction). Nothing without SMTP."""
    if not settings.smtp_url:
        return None
    return await OutgoingMail.create(
        user_id=user.id,
        kind=kind,
        recipient=recipient,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        next_attempt_at=now,
        give_up_at=now + timedelta(seconds=settings.mail_retry_for),
        created_at=now,
    )


async def enqueue_notice(
    settings: Settings, notification: Notification, *, now: datetime
) -> OutgoingMail | None:
    """The e-mail of an in-app notification, if its owner has a confirmed address and
    wants this kind (inside the transaction that stores the notification)."""
    if not settings.smtp_url:
        return None
    kind = messages.MAIL_KIND[notification.kind]
    user = await User.get(id=notification.user_id)
    address = verified_address(user)
    if address is None or not wants(user, kind):
        return None
    topic = messages.TOPIC.get(kind)
    unsubscribe = links.unsubscribe_link(settings, user.id, topic) if topic else None
    rendered = messages.notice(
        notification=notification,
        username=user.username,
        site=settings.public_url,
        unsubscribe=unsubscribe,
    )
    return await enqueue(
        settings, user=user, kind=kind, recipient=address, rendered=rendered, now=now
    )


def verification(*, username: str, link: str, lifetime: int) -> messages.Rendered:
    return messages.verification(username=username, link=link, lifetime=describe_duration(lifetime))


# The senders' side (jobs/tasks.py) ---------------------------------------------------


async def due(now: datetime, *, limit: int) -> list[int]:
    rows = (
        OutgoingMail.filter(status=MailStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .limit(limit)
        .only("id")
    )
    return [row.id for row in await rows]


async def next_due() -> datetime | None:
    """When the next message falls due (maybe past), for the embedded runner's alarm."""
    row = (
        await OutgoingMail.filter(status=MailStatus.PENDING)
        .order_by("next_attempt_at")
        .only("id", "next_attempt_at")
        .first()
    )
    return row.next_attempt_at if row is not None else None


async def claim(mail_id: int, *, now: datetime) -> OutgoingMail | None:
    """Take a due message for sending (one conditional update: one sender wins)."""
    won = await OutgoingMail.filter(
        id=mail_id, status=MailStatus.PENDING, next_attempt_at__lte=now
    ).update(status=MailStatus.SENDING, claimed_at=now, claimed_by=holder())
    if not won:
        return None
    return await OutgoingMail.get(id=mail_id)


async def still_wanted(mail: OutgoingMail) -> User | None:
    """The account, if the message is still wanted: a verification only while the
    address awaits it; anything else only to the confirmed address, as preferred."""
    user = await User.get_or_none(id=mail.user_id)
    if user is None or mail.recipient is None or user.email != mail.recipient:
        return None
    if mail.kind == MailKind.VERIFY_ADDRESS:
        return user if user.email_verified_at is None else None
    return user if user.email_verified_at is not None and wants(user, mail.kind) else None


def _final(status: MailStatus, now: datetime) -> dict[str, object]:
    return {
        "status": status,
        "finished_at": now,
        "recipient": None,
        "subject": "",
        "text_body": "",
        "html_body": "",
        "claimed_at": None,
        "claimed_by": None,
    }


async def sent(mail: OutgoingMail, *, now: datetime) -> None:
    await OutgoingMail.filter(id=mail.id, status=MailStatus.SENDING).update(
        attempts=mail.attempts + 1, last_error=None, **_final(MailStatus.SENT, now)
    )
    log.info("mail %s (%s) sent to %s", mail.id, mail.kind.value, mask_email(mail.recipient))


async def dropped(mail: OutgoingMail, *, now: datetime) -> None:
    await OutgoingMail.filter(id=mail.id, status=MailStatus.SENDING).update(
        **_final(MailStatus.DROPPED, now)
    )
    log.info("mail %s (%s) no longer wanted: dropped", mail.id, mail.kind.value)


async def failed(mail: OutgoingMail, *, error: str, permanent: bool, now: datetime) -> bool:
    """An attempt failed: try again after the back-off, or give up (a permanent refusal,
    or the retry window is over). Returns whether it became a dead letter."""
    attempts = mail.attempts + 1
    retry_at = now + backoff(attempts)
    dead = permanent or retry_at >= mail.give_up_at
    error = error[:200]
    if dead:
        await OutgoingMail.filter(id=mail.id, status=MailStatus.SENDING).update(
            attempts=attempts, last_error=error, **_final(MailStatus.DEAD, now)
        )
        log.error(
            "mail %s (%s) to %s given up after %s attempts: %s",
            mail.id,
            mail.kind.value,
            mask_email(mail.recipient),
            attempts,
            error,
        )
    else:
        await OutgoingMail.filter(id=mail.id, status=MailStatus.SENDING).update(
            status=MailStatus.PENDING,
            attempts=attempts,
            last_error=error,
            next_attempt_at=retry_at,
            claimed_at=None,
            claimed_by=None,
        )
        log.warning(
            "mail %s (%s) to %s not sent (%s); attempt %s again at %s",
            mail.id,
            mail.kind.value,
            mask_email(mail.recipient),
            error,
            attempts + 1,
            retry_at.isoformat(timespec="seconds"),
        )
    return dead


async def release_stale(now: datetime) -> int:
    """Messages a sender took and never finished (it died): back in the queue, due now.
    (One may be sent twice; none is lost.)"""
    cutoff = now - timedelta(seconds=LEASE)
    return await OutgoingMail.filter(
        Q(claimed_at__lte=cutoff) | Q(claimed_at=None), status=MailStatus.SENDING
    ).update(status=MailStatus.PENDING, next_attempt_at=now, claimed_at=None, claimed_by=None)


async def counts() -> dict[str, int]:
    """Messages by status (for /metrics): DEAD are the dead letters."""
    rows = await (
        OutgoingMail.all().annotate(n=Count("id")).group_by("status").values_list("status", "n")
    )
    found = {status.value: 0 for status in MailStatus}
    for status, n in rows:
        found[MailStatus(status).value] = int(n)
    return found
