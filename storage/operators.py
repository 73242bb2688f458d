"""Operators: the people who run a site. The role is granted and revoked from the
command line only (``lorashelf operator grant|revoke|list``), never through the API,
and each change is in the audit trail.

An operator acts on what is public (reports, takedowns, suspensions) and sees, on every
other path, exactly what any signed-in user sees: never a private dataset. Every
operator mutation starts with :func:`require_operator`, before anything about its
subject is looked up, so a refusal is the same answer after the same work whatever
the input names.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from storage import audit
from storage.accounts import normalise_username
from storage.db.enums import AuditAction
from storage.db.models import User
from storage.errors import Forbidden, NotFound
from storage.moderation.subjects import Subject
from storage.privacy import lookups


async def require_operator(viewer: int | None) -> User:
    """The viewer, if they are an operator (and not suspended); else FORBIDDEN. One query,
    read now: a revocation takes effect at the next request."""
    if viewer is None:
        raise Forbidden()
    user = await User.get_or_none(id=viewer, is_operator=True, suspended_at=None)
    if user is None:
        raise Forbidden()
    return user


async def is_operator(viewer: int | None) -> bool:
    if viewer is None:
        return False
    return bool(await User.filter(id=viewer, is_operator=True, suspended_at=None).exists())


async def _set(username: str, *, operator: bool, now: datetime, by: str) -> tuple[User, bool]:
    name = normalise_username(username)
    async with in_transaction():
        user = await User.select_for_update().get_or_none(username=name)
        if user is None:
            raise NotFound(f"No account is called {name!r}.", field="username")
        changed = user.is_operator != operator
        if changed:
            await User.filter(id=user.id).update(is_operator=operator)
            action = AuditAction.GRANT_OPERATOR if operator else AuditAction.REVOKE_OPERATOR
            await audit.record(
                action, Subject.of(lookups.USER, user), actor=None, actor_name=by, at=now
            )
    return await User.get(id=user.id), changed


async def grant(username: str, *, now: datetime, by: str = audit.COMMAND_LINE) -> tuple[User, bool]:
    """Make an account an operator; returns it and whether anything changed."""
    return await _set(username, operator=True, now=now, by=by)


async def revoke(
    username: str, *, now: datetime, by: str = audit.COMMAND_LINE
) -> tuple[User, bool]:
    return await _set(username, operator=False, now=now, by=by)


async def operators() -> list[User]:
    return list(await User.filter(is_operator=True).order_by("username"))
