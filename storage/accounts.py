"""Accounts: sign-up, log-in, bearer tokens.

Passwords are hashed with argon2; tokens are 256 random bits handed to the
client once and stored only as their SHA-256, with an expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import RawSQL

from storage import changes
from storage.db import reads
from storage.db.models import AuthToken, User
from storage.errors import ServiceError
from storage.privacy import access

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{2,31}$")
PASSWORD_MIN = 10
PASSWORD_MAX = 1024

# argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): strong, and
# cheap enough (~50 ms) that log-in stays responsive on a small machine.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against for unknown usernames, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


_TOKEN_USER = '"auth_tokens"."user_id"'  # the token's user, in authenticate's query


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_username(raw: str) -> str:
    return raw.strip().lower()


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise ServiceError(
            f"Password must be at least {PASSWORD_MIN} characters long.",
            field="password",
            code="PASSWORD_TOO_SHORT",
        )
    if len(password) > PASSWORD_MAX:
        raise ServiceError(
            f"Password must be at most {PASSWORD_MAX} characters long.",
            field="password",
            code="PASSWORD_TOO_LONG",
        )


async def _issue_token(user: User, *, now: datetime, lifetime: int) -> str:
    token = secrets.token_urlsafe(32)  # 256 bits
    await AuthToken.create(
        user=user,
        token_hash=_token_hash(token),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    return token


async def sign_up(
    *,
    username: str,
    password: str,
    now: datetime,
    token_lifetime: int,
    held: Callable[[str], Awaitable[bool]] | None = None,
) -> tuple[User, str]:
    """A new account; ``held`` says whether a name is held back (a deleted account's,
    for a while), which answers as a taken one."""
    name = normalise_username(username)
    if not USERNAME_RE.match(name):
        raise ServiceError(
            "Username must be 3 to 32 characters: letters, digits, '-' or '_', "
            "starting with a letter or digit.",
            field="username",
            code="USERNAME_INVALID",
        )
    _check_password(password)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    if held is not None and await held(name):
        raise ServiceError("That username is taken.", field="username", code="USERNAME_TAKEN")
    try:
        async with changes.transaction(now, public=False):  # not shown before publishing
            user = await User.create(username=name, password_hash=password_hash, created_at=now)
            token = await _issue_token(user, now=now, lifetime=token_lifetime)
    except IntegrityError:
        raise ServiceError(
            "That username is taken.", field="username", code="USERNAME_TAKEN"
        ) from None
    return user, token


async def password_matches(user: User, password: str) -> bool:
    """Whether ``password`` is the account's (the whole of it; constant work)."""
    fits = len(password) <= PASSWORD_MAX
    try:
        return fits and bool(await asyncio.to_thread(_hasher.verify, user.password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


async def log_in(
    *, username: str, password: str, now: datetime, token_lifetime: int
) -> tuple[User, str]:
    user = await User.get_or_none(username=normalise_username(username), deleting_at=None)
    # The whole password is compared, never a prefix. One longer than any password can
    # be (sign-up refuses it) is wrong, after the same work as any other attempt.
    fits = len(password) <= PASSWORD_MAX
    stored = user.password_hash if user is not None and fits else _DUMMY_HASH
    ok: bool
    try:
        ok = await asyncio.to_thread(_hasher.verify, stored, password if fits else "")
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or not fits:
        raise ServiceError(
            "Wrong username or password.", field="password", code="INVALID_CREDENTIALS"
        )
    if user.suspended_at is not None:  # told only to whoever knows the password
        raise ServiceError(
            "This account is suspended by the operators of this site; you cannot sign in.",
            code="ACCOUNT_SUSPENDED",
        )
    rehashed = None
    if _hasher.check_needs_rehash(user.password_hash):
        rehashed = await asyncio.to_thread(_hasher.hash, password)
    async with changes.transaction(now, public=False):
        if rehashed is not None:
            await User.filter(id=user.id).update(password_hash=rehashed)
        token = await _issue_token(user, now=now, lifetime=token_lifetime)
    return user, token


async def change_password(
    *, user_id: int, current: str, new: str, now: datetime, token_lifetime: int
) -> tuple[User, str]:
    """Set a new password after checking the current one; every sign-in of the account
    ends (their download links with them) and a new token is issued."""
    user = await User.get(id=user_id)
    ok: bool
    try:
        fits = len(current) <= PASSWORD_MAX
        ok = fits and await asyncio.to_thread(_hasher.verify, user.password_hash, current)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        raise ServiceError(
            "The current password is wrong.", field="currentPassword", code="INVALID_CREDENTIALS"
        )
    try:
        _check_password(new)
    except ServiceError as exc:
        raise ServiceError(exc.message, field="newPassword", code=exc.code) from None
    password_hash = await asyncio.to_thread(_hasher.hash, new)
    async with changes.transaction(now, public=False):
        await User.filter(id=user_id).update(password_hash=password_hash)
        await AuthToken.filter(user_id=user_id, revoked_at=None).update(revoked_at=now)
        token = await _issue_token(user, now=now, lifetime=token_lifetime)
    return user, token


async def authenticate(token: str, *, now: datetime) -> tuple[User, AuthToken] | None:
    """The user a bearer token belongs to, or None if it is unknown, expired or revoked.

    One statement: the token, its user, and whether the user owns anything only they
    see (``AuthToken.owns_unshared``, :func:`storage.privacy.access.owns_unshared_sql`),
    read at the same instant as the token."""
    if not token or len(token) > 128:
        return None
    found = await _SIGN_IN(_token_hash(token), now)
    if not found or found[0].user.deleting_at is not None:  # an account being deleted is gone
        return None
    row = found[0]
    row.owns_unshared = bool(row.owns_unshared)  # SQLite answers 0 or 1
    return row.user, row


_SIGN_IN = reads.Read(
    AuthToken,
    lambda token_hash, now: (
        AuthToken.filter(
            token_hash=token_hash,
            revoked_at=None,
            expires_at__gt=now,
            user__suspended_at=None,  # a suspension ends every sign-in (and revokes them too)
        )
        .select_related("user")
        .annotate(owns_unshared=RawSQL(access.owns_unshared_sql(_TOKEN_USER)))
        .limit(1)
    ),
    joined={"auth_tokens__user": ("user", User)},
)


async def log_out(*, token_id: int, now: datetime) -> None:
    async with changes.transaction(now, public=False):
        await AuthToken.filter(id=token_id, revoked_at=None).update(revoked_at=now)


async def session_alive(token_id: int, *, now: datetime) -> bool:
    """Whether a sign-in (a bearer token) is still valid: not revoked, not expired."""
    return bool(
        await AuthToken.filter(
            id=token_id, revoked_at=None, expires_at__gt=now, user__suspended_at=None
        ).exists()
    )
