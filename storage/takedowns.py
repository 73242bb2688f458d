"""Takedowns: an operator hides a published model or version from everybody but its
owner, and may restore it.

A takedown is one transaction: the mark (``taken_down_at``, and the reason the owner
is shown), the open reports on the subject closed as acted on, the audit entry, and
the owner's notice (in the app, and by e-mail when they have a confirmed address).
After the commit the owner is notified and the catalogue's search text forgets a hidden
version. The service tells whether anonymous viewers saw the change (the subject was
visible to them before a takedown, or is after a restore: ``changes.transaction``);
only then does the API move the public generation, so anonymous answers cached before
are not reused. Downloads in flight re-ask the rule on their own
(``storage.downloads.still_allowed``, graph/http/streaming.py). After the answer,
every dataset under the subject is signalled as changed (live views and downloads
in flight re-read it through the rule at once).

Hiding is the privacy rule's (``storage/privacy/access.py``): everything under a hidden
model or version is hidden with it, on every path. The operator never sees a private
dataset: not in the answer, not in the audit entry, not in the work done before the
answer (the same statements whether there is private data under the subject or not). With
``destroyPrivateData`` the private datasets under the subject are claimed for deletion
in the same transaction (access ends at the commit, reason ``TAKEN_DOWN``) and deleted
after the answer, as an owner deletion deletes them (bytes first, then the tombstone
and the owner's notice); the sweep finishes a deletion a crash interrupts.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from tortoise.expressions import Q

from storage import audit, changes, operators, reports, search
from storage.db.enums import AuditAction, DatasetStatus, DeletionReason, ReportStatus, Visibility
from storage.db.models import LoraModel, ModelVersion, TrainingDataset
from storage.errors import InvalidState, NotFound, ServiceError
from storage.moderation import notices
from storage.moderation.subjects import TAKEABLE, Subject
from storage.privacy import lookups
from storage.privacy.lookups import Kind
from storage.retention import deletion
from storage.runtime import Runtime
from storage.system.claim_holder import holder

log = logging.getLogger("lorashelf.takedowns")

_finishing: set[asyncio.Task[None]] = set()  # work finishing after the answer


async def _subject(kind: Kind[Any] | None, public_id: str | None) -> Subject:
    """The model or version an operator names (the caller checked the operator). The
    kind is read from the id alone, before any lookup."""
    if kind is lookups.USER:
        raise ServiceError(
            "An account is suspended, not taken down (suspendUser).",
            field="subjectId",
            code="INVALID_SUBJECT",
        )
    if kind is lookups.FILE or kind is lookups.DATASET:
        raise ServiceError(
            "Take down the model version this belongs to: its files and dataset go with it.",
            field="subjectId",
            code="INVALID_SUBJECT",
        )
    if kind is None or kind not in TAKEABLE:
        raise NotFound("No such model or model version.", field="subjectId")
    row = await lookups.moderated(kind, public_id)
    if row is None:
        raise NotFound(kind.missing, field="subjectId")
    return Subject.of(kind, row)


async def _versions_under(subject: Subject) -> list[int]:
    if subject.kind is lookups.VERSION:
        return [subject.id]
    return [v.id for v in await ModelVersion.filter(model_id=subject.id).only("id")]


def _model_id(subject: Subject) -> int:
    row = subject.row
    return int(row.model_id) if isinstance(row, ModelVersion) else subject.id


async def _access_changed(rt: Runtime, version_ids: list[int]) -> None:
    """After the commit: what is under these versions is shown or hidden now. Every
    dataset is signalled changed (its live subscribers re-read it through the rule, and
    its downloads in flight re-ask it at once: graph/http/streaming.py)."""
    rows = await TrainingDataset.filter(version_id__in=version_ids).only("id")
    for row in rows:
        await rt.dataset_changed(row.id)


async def take_down(
    rt: Runtime,
    viewer: int | None,
    *,
    kind: Kind[Any] | None,
    public_id: str | None,
    reason: str,
    details: str | None,
    destroy_private_data: bool,
    request_id: str,
) -> Subject:
    actor = await operators.require_operator(viewer)
    clean = audit.clean_reason(reason)
    notes = audit.clean_details(details)
    subject = await _subject(kind, public_id)
    model: type[LoraModel] | type[ModelVersion] = subject.kind.model
    version_ids = await _versions_under(subject)
    seen = await lookups.seen_by_anybody(subject.kind, subject.id)  # hidden from now on
    now = rt.clock.now()
    claimed: list[int] = []
    async with changes.transaction(now, public=seen):
        marked = await model.filter(id=subject.id, taken_down_at=None).update(
            taken_down_at=now, taken_down_reason=clean
        )
        if not marked:
            raise InvalidState(
                "This is taken down already.", field="subjectId", code="ALREADY_TAKEN_DOWN"
            )
        await reports.resolve_for(subject, status=ReportStatus.ACTIONED, now=now)
        await audit.record(
            AuditAction.TAKE_DOWN,
            subject,
            actor=actor,
            at=now,
            reason=clean,
            details=notes,
            destroy_private_data=destroy_private_data,
            request_id=request_id,
        )
        notice = await notices.taken_down(rt.settings, subject, reason=clean, now=now)
        if destroy_private_data:
            claimed = await _claim_private(version_ids, now=now)
    await changes.after_commit("delivering the takedown notice", rt.deliver(notice))
    await changes.after_commit("refreshing search", search.refresh(_model_id(subject)))
    _after_answer(rt, version_ids, claimed, now)
    log.info("%s %s taken down by operator %s", subject.kind.name, subject.id, actor.id)
    return await _reread(subject)


async def _claim_private(version_ids: list[int], *, now: datetime) -> list[int]:
    """Claim the private datasets under the subject for deletion (inside the takedown's
    transaction): access ends at the commit. The same three statements whether there is
    private data under the subject or not, so the operator's answer takes the same work:
    two conditional updates (a window already over is recorded as expired, as an owner
    deletion records it), then one read of what they claimed."""
    under = Q(version_id__in=version_ids, visibility=Visibility.PRIVATE)
    await deletion.claim_deletion(
        under & Q(expires_at__lte=now), reason=DeletionReason.EXPIRED, now=now
    )
    await deletion.claim_deletion(under, reason=DeletionReason.TAKEN_DOWN, now=now)
    claimed = await TrainingDataset.filter(
        under, status=DatasetStatus.DELETING, claimed_at=now, claimed_by=holder()
    ).only("id")
    return [row.id for row in claimed]


def _after_answer(rt: Runtime, version_ids: list[int], claimed: list[int], now: datetime) -> None:
    """After the commit, in a task of its own: signal the datasets under the subject as
    changed, and delete the claimed ones' bytes and write their tombstones. Neither is
    awaited by the answer, so the operator's answer takes the same time whether there
    was private data under the subject or not (a crash meanwhile: the sweep finishes the
    claims, and downloads and live views check the rule again on their own)."""

    async def finish() -> None:
        try:
            await _access_changed(rt, version_ids)
        except Exception:
            log.exception("takedown: datasets under the subject not signalled")
        try:
            if claimed:
                await deletion.delete_claimed(rt, claimed, now=now)
        except Exception:  # the claims stand: access has ended; the sweep finishes them
            log.exception("takedown: private data claimed, deletion not finished yet")

    task = asyncio.get_running_loop().create_task(finish(), name="lorashelf-takedown-after")
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


async def restore(
    rt: Runtime,
    viewer: int | None,
    *,
    kind: Kind[Any] | None,
    public_id: str | None,
    reason: str,
    request_id: str,
) -> Subject:
    """Show a taken-down model or version again (private data destroyed by the takedown
    stays destroyed)."""
    actor = await operators.require_operator(viewer)
    clean = audit.clean_reason(reason)
    subject = await _subject(kind, public_id)
    model: type[LoraModel] | type[ModelVersion] = subject.kind.model
    now = rt.clock.now()
    async with changes.transaction(now, public=False) as change:
        cleared = await model.filter(id=subject.id, taken_down_at__isnull=False).update(
            taken_down_at=None, taken_down_reason=None
        )
        if not cleared:
            raise InvalidState("This is not taken down.", field="subjectId", code="NOT_TAKEN_DOWN")
        await audit.record(
            AuditAction.RESTORE, subject, actor=actor, at=now, reason=clean, request_id=request_id
        )
        notice = await notices.restored(rt.settings, subject, reason=clean, now=now)
        change.public = await lookups.seen_by_anybody(subject.kind, subject.id)
    await changes.after_commit("delivering the restore notice", rt.deliver(notice))
    await changes.after_commit("refreshing search", search.refresh(_model_id(subject)))
    _after_answer(rt, await _versions_under(subject), [], now)
    log.info("%s %s restored by operator %s", subject.kind.name, subject.id, actor.id)
    return await _reread(subject)


async def _reread(subject: Subject) -> Subject:
    row = await subject.kind.model.get(id=subject.id)
    return Subject.of(subject.kind, row)
