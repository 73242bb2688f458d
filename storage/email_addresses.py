"""E-mail addresses: an optional, verified address per account, and what it receives.

The address is personal data: it is shown to its owner alone (``User.email``), masked
in every log line (``storage.config.masks.mask_email``), and goes with the account.
``setEmail`` records it as awaiting verification and queues a message with a signed,
single-use link (``storage.signing.MailTokens``) valid for ``VERIFY_LIFETIME``; nothing
else is sent to it until the link is used. A link that is expired, already used or
replaced by a newer one answers with its own code. Reminders and deletion notices can
each be switched off (``setEmailPreferences``, or the ``List-Unsubscribe`` link of the
message itself); moderation notices cannot.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from storage import changes
from storage.config.masks import mask_email
from storage.config.parse import is_email_address
from storage.db.enums import MailKind
from storage.db.models import User
from storage.errors import ServiceError
from storage.mail import links, outbox
from storage.privacy import lookups
from storage.runtime import Runtime
from storage.signing import BadToken, EmailGrant

log = logging.getLogger("lorashelf.email")

VERIFY_LIFETIME = 24 * 3600  # seconds a verification link works


def _field_error(message: str, code: str, field: str = "email") -> ServiceError:
    return ServiceError(message, field=field, code=code)


def normalise(address: str) -> str:
    """The address as stored: trimmed, its domain in lower case (the part before ``@``
    is the mail server's to interpret, so it is kept as written)."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


async def set_email(rt: Runtime, viewer: int | None, *, email: str | None) -> User:
    """Set (or, with an empty value, remove) the account's address. A new address waits
    for verification: a link is sent to it."""
    user_id = lookups.require_viewer(viewer)
    raw = (email or "").strip()
    if not raw:
        user = await User.get(id=user_id)
        async with changes.transaction(rt.clock.now(), public=False):  # the owner's alone
            await User.filter(id=user_id).update(
                email=None, email_verified_at=None, email_nonce=None
            )
        log.info("user %s removed their e-mail address", user_id)
        return await changes.reread(user)
    if not rt.settings.smtp_url:
        raise _field_error(
            "This site sends no e-mail (its operators have not configured it).",
            "EMAIL_UNAVAILABLE",
        )
    if not is_email_address(raw):
        raise _field_error("That is not an e-mail address (name@example.com).", "INVALID_EMAIL")
    address = normalise(raw)
    user = await User.get(id=user_id)
    if user.email == address and user.email_verified_at is not None:
        return user  # already confirmed: nothing to send
    now = rt.clock.now()
    nonce = secrets.token_hex(16)
    grant = EmailGrant(user_id, nonce, int((now + timedelta(seconds=VERIFY_LIFETIME)).timestamp()))
    link = links.verification_link(rt.settings, links.tokens(rt.settings).verification(grant))
    rendered = outbox.verification(username=user.username, link=link, lifetime=VERIFY_LIFETIME)
    async with changes.transaction(now, public=False):  # the owner's alone
        await User.filter(id=user_id).update(
            email=address, email_verified_at=None, email_nonce=nonce
        )
        await outbox.enqueue(
            rt.settings,
            user=user,
            kind=MailKind.VERIFY_ADDRESS,
            recipient=address,
            rendered=rendered,
            now=now,
        )
    log.info("user %s: verification sent to %s", user_id, mask_email(address))
    await changes.after_commit("queueing the verification", rt.scheduler.mail_queued())
    return await changes.reread(user)


async def verify_email(rt: Runtime, *, token: str) -> User:
    """Confirm an address with the token of its verification link (no sign-in needed:
    the link may be opened on another device)."""
    try:
        grant = links.tokens(rt.settings).read_verification(token.strip())
    except BadToken:
        raise _field_error(
            "This verification link is not valid (copy the whole link).", "TOKEN_INVALID", "token"
        ) from None
    user = await User.get_or_none(id=grant.user_id)
    if user is None or user.email is None or user.email_nonce is None:
        raise _field_error(
            "This verification link no longer applies: the address was removed.",
            "TOKEN_SUPERSEDED",
            "token",
        )
    if user.email_nonce != grant.nonce:
        raise _field_error(
            "A newer verification link was sent since: use the latest one.",
            "TOKEN_SUPERSEDED",
            "token",
        )
    if user.email_verified_at is not None:
        raise _field_error(
            "This link was already used: the address is confirmed.", "TOKEN_USED", "token"
        )
    now = rt.clock.now()
    if now.timestamp() >= grant.expires:
        raise _field_error(
            "This verification link has expired: set the address again for a new one.",
            "TOKEN_EXPIRED",
            "token",
        )
    done = await User.filter(id=user.id, email_nonce=grant.nonce, email_verified_at=None).update(
        email_verified_at=now
    )
    if not done:
        raise _field_error(
            "This link was already used: the address is confirmed.", "TOKEN_USED", "token"
        )
    log.info("user %s confirmed %s", user.id, mask_email(user.email))
    return await User.get(id=user.id)


async def set_preferences(
    rt: Runtime, viewer: int | None, *, reminders: bool | None, deletions: bool | None
) -> User:
    """Which optional e-mail the account receives; what is not given stays as it is."""
    user_id = lookups.require_viewer(viewer)
    changes: dict[str, bool] = {}
    if reminders is not None:
        changes["email_reminders"] = reminders
    if deletions is not None:
        changes["email_deletions"] = deletions
    if changes:
        await User.filter(id=user_id).update(**changes)
    return await User.get(id=user_id)


TOPIC_FIELD = {"reminders": "email_reminders", "deletions": "email_deletions"}


def read_unsubscribe(rt: Runtime, token: str) -> tuple[int, str]:
    """The account and the topic an unsubscribe link stops (TOKEN_INVALID if it is not
    one of ours)."""
    try:
        user_id, topic = links.tokens(rt.settings).read_unsubscribe(token.strip())
    except BadToken:
        raise _field_error("This link is not valid.", "TOKEN_INVALID", "token") from None
    if topic not in TOPIC_FIELD:
        raise _field_error("This link is not valid.", "TOKEN_INVALID", "token")
    return user_id, topic


async def unsubscribe(rt: Runtime, *, token: str) -> str:
    """Stop one kind of optional e-mail through the link (or ``List-Unsubscribe``) of a
    message; returns the topic stopped. Idempotent."""
    user_id, topic = read_unsubscribe(rt, token)
    await User.filter(id=user_id).update(**{TOPIC_FIELD[topic]: False})
    log.info("user %s stopped e-mail %s", user_id, topic)
    return topic
