"""Suspensions: an operator suspends an account, and may reinstate it.

A suspended account cannot sign in (``logIn`` answers ``ACCOUNT_SUSPENDED`` to the
right password only; a wrong one is wrong as for anybody), every sign-in it had ends
at once (and the download links minted for them with it), and everything public of
it is hidden, exactly as a takedown hides it (``storage/privacy/access.py``). Its
private datasets are left alone: they keep their windows and are deleted on time, with
their reminders (by e-mail too: the owner cannot sign in to read them in the app).
One transaction: the mark, the sign-ins ended, the open reports on the account closed,
the audit entry and the owner's notice. The public generation moves only when anonymous
viewers see the account (something of it is public) before a suspension or after a
reinstatement (``changes.transaction``).
"""

from __future__ import annotations

import logging

from storage import audit, changes, operators, reports
from storage.db.enums import AuditAction, ReportStatus
from storage.db.models import AuthToken, TrainingDataset, User
from storage.errors import InvalidState, NotFound, ServiceError
from storage.moderation import notices
from storage.moderation.subjects import Subject
from storage.privacy import lookups
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.suspensions")


async def _account(public_id: str | None) -> User:
    user = await lookups.moderated(lookups.USER, public_id)
    if user is None:
        raise NotFound(lookups.USER.missing, field="userId")
    return user


async def _access_changed(rt: Runtime, user_id: int) -> None:
    for row in await TrainingDataset.filter(owner_id=user_id).only("id"):
        await rt.dataset_changed(row.id)


async def suspend(
    rt: Runtime, viewer: int | None, *, public_id: str | None, reason: str, request_id: str
) -> User:
    actor = await operators.require_operator(viewer)
    clean = audit.clean_reason(reason)
    user = await _account(public_id)
    if user.id == actor.id:
        raise ServiceError(
            "You cannot suspend your own account.", field="userId", code="CANNOT_SUSPEND_SELF"
        )
    seen = await lookups.seen_by_anybody(lookups.USER, user.id)  # hidden from now on
    now = rt.clock.now()
    async with changes.transaction(now, public=seen):
        marked = await User.filter(id=user.id, suspended_at=None).update(
            suspended_at=now, suspension_reason=clean
        )
        if not marked:
            raise InvalidState(
                "This account is suspended already.", field="userId", code="ALREADY_SUSPENDED"
            )
        await AuthToken.filter(user_id=user.id, revoked_at=None).update(revoked_at=now)
        subject = Subject.of(lookups.USER, user)
        await reports.resolve_for(subject, status=ReportStatus.ACTIONED, now=now)
        await audit.record(
            AuditAction.SUSPEND_USER,
            subject,
            actor=actor,
            at=now,
            reason=clean,
            request_id=request_id,
        )
        notice = await notices.suspended(rt.settings, user.id, reason=clean, now=now)
    await changes.after_commit("delivering the suspension notice", rt.deliver(notice))
    await changes.after_commit("ending the account's access", _access_changed(rt, user.id))
    log.info("user %s suspended by operator %s", user.id, actor.id)
    return await User.get(id=user.id)


async def unsuspend(
    rt: Runtime, viewer: int | None, *, public_id: str | None, reason: str, request_id: str
) -> User:
    actor = await operators.require_operator(viewer)
    clean = audit.clean_reason(reason)
    user = await _account(public_id)
    now = rt.clock.now()
    async with changes.transaction(now, public=False) as change:
        cleared = await User.filter(id=user.id, suspended_at__isnull=False).update(
            suspended_at=None, suspension_reason=None
        )
        if not cleared:
            raise InvalidState(
                "This account is not suspended.", field="userId", code="NOT_SUSPENDED"
            )
        await audit.record(
            AuditAction.UNSUSPEND_USER,
            Subject.of(lookups.USER, user),
            actor=actor,
            at=now,
            reason=clean,
            request_id=request_id,
        )
        notice = await notices.reinstated(rt.settings, user.id, reason=clean, now=now)
        change.public = await lookups.seen_by_anybody(lookups.USER, user.id)
    await changes.after_commit("delivering the reinstatement notice", rt.deliver(notice))
    await changes.after_commit("restoring the account's access", _access_changed(rt, user.id))
    log.info("user %s reinstated by operator %s", user.id, actor.id)
    return await User.get(id=user.id)
