"""The audit trail: one append-only row per operator action (and per operator grant or
revocation from the command line).

Rows are only ever created here: no service updates or deletes one, and the database
refuses both (triggers, migration 0014), so the trail stays what was written whatever
runs against it. Operators list it (``auditLog``), the owner of a subject sees the
entries about their objects (without who acted), and ``lorashelf audit --since``
exports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from storage.db.enums import AuditAction
from storage.db.models import User
from storage.db.pages import Page, newest_first
from storage.db.site import AuditEntry
from storage.errors import ServiceError
from storage.moderation.subjects import Subject
from storage.privacy import access

COMMAND_LINE = "command line"
REASON_MAX = 2000
DETAILS_MAX = 10_000


def clean_reason(raw: str, *, field: str = "reason") -> str:
    """An operator's reason: required (the owner is told it), bounded."""
    reason = raw.strip()
    if not reason:
        raise ServiceError(
            "Give a reason: the owner is told it.", field=field, code="REASON_REQUIRED"
        )
    if len(reason) > REASON_MAX:
        raise ServiceError(
            f"A reason may be at most {REASON_MAX:,} characters.", field=field, code="TOO_LONG"
        )
    return reason


def clean_details(raw: str | None) -> str:
    details = (raw or "").strip()
    if len(details) > DETAILS_MAX:
        raise ServiceError(
            f"Details may be at most {DETAILS_MAX:,} characters.", field="details", code="TOO_LONG"
        )
    return details


async def record(
    action: AuditAction,
    subject: Subject,
    *,
    actor: User | None,
    at: datetime,
    reason: str = "",
    details: str = "",
    destroy_private_data: bool = False,
    request_id: str = "",
    actor_name: str | None = None,
) -> AuditEntry:
    """Append one entry (inside the caller's transaction: the action and its record
    commit together, or neither)."""
    return await AuditEntry.create(
        at=at,
        actor_id=actor.id if actor is not None else None,
        actor_name=(actor.username if actor is not None else actor_name or COMMAND_LINE)[:128],
        action=action,
        subject_kind=subject.kind.name,
        subject_id=subject.id,
        subject_public_id=subject.public_id,
        subject_owner_id=subject.owner_id,
        reason=reason,
        details=details,
        destroy_private_data=destroy_private_data,
        request_id=request_id[:64],
    )


async def entries_page(
    *, viewer: int | None, operator: bool, first: int | None, after: str | None
) -> Page[AuditEntry]:
    """The entries the viewer may see, newest first: every one for operators; for
    anybody else those about their own objects."""
    query = AuditEntry.filter(access.visible_audit_q(viewer, operator=operator))
    return await newest_first(query, tag="audit", first=first, after=after)


async def entries_since(since: datetime, *, batch: int = 500) -> AsyncIterator[AuditEntry]:
    """Every entry at or after ``since``, oldest first (the export), in batches."""
    last = 0
    while True:
        rows = await AuditEntry.filter(at__gte=since, id__gt=last).order_by("id").limit(batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        last = rows[-1].id
