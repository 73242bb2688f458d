"""Reports: anybody signed in reports an object they can see; operators work through
the queue.

Reporting looks the subject up as the reporter sees it, in one query, so reporting a
hidden object (a private dataset, a draft, anything of anybody else's that is not
public) is the same answer after the same work as reporting an id that does not exist.
Nobody reports their own content. The reporter lists their reports and their outcome;
the owner of the subject never learns who reported it (nor that it was reported, until
an operator acts). The rate limit per reporter is the API's (``graph/http/ratelimit.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import audit, changes, operators
from storage.db.enums import AuditAction, ReportReason, ReportStatus
from storage.db.pages import Page, newest_first
from storage.db.site import Report
from storage.errors import InvalidState, NotFound, ServiceError
from storage.moderation.subjects import REPORTABLE, Subject
from storage.privacy import access, lookups
from storage.privacy.lookups import Kind
from storage.runtime import Runtime

DETAILS_MAX = 5000
MISSING = "Nothing to report: no such object."


def missing() -> NotFound:
    """The one answer for a subject that is hidden, missing, malformed or of a kind
    nobody reports."""
    return NotFound(MISSING, field="subjectId")


async def report_content(
    rt: Runtime,
    viewer: int | None,
    *,
    kind: Kind[Any] | None,
    public_id: str | None,
    reason: ReportReason,
    details: str | None,
) -> Report:
    """Report an object the reporter can see. Reporting the same object again while the
    first report is open returns that report."""
    reporter = lookups.require_viewer(viewer)
    text = (details or "").strip()
    if len(text) > DETAILS_MAX:
        raise ServiceError(
            f"Details may be at most {DETAILS_MAX:,} characters.", field="details", code="TOO_LONG"
        )
    if kind is None or kind not in REPORTABLE:
        raise missing()
    found = await lookups.visible_public(kind, reporter, [public_id])
    row = found.get(public_id or "")
    if row is None:
        raise missing()
    subject = Subject.of(kind, row)
    if subject.owner_id == reporter:
        raise ServiceError(
            "You cannot report your own content (delete or change it instead).",
            field="subjectId",
            code="OWN_CONTENT",
        )
    now = rt.clock.now()
    async with changes.transaction(now, public=False):  # reporter and operators
        existing = await Report.filter(
            reporter_id=reporter,
            subject_kind=kind.name,
            subject_id=subject.id,
            status=ReportStatus.OPEN,
        ).first()
        if existing is not None:
            return existing
        return await Report.create(
            reporter_id=reporter,
            subject_kind=kind.name,
            subject_id=subject.id,
            reason=reason,
            details=text,
            created_at=now,
        )


async def reports_page(
    *,
    viewer: int | None,
    operator: bool,
    status: ReportStatus | None,
    first: int | None,
    after: str | None,
) -> Page[Report]:
    """Reports the viewer may see, newest first: the queue for operators (all of them,
    or those in ``status``), one's own reports for anybody else."""
    query = Report.filter(access.visible_reports_q(viewer, operator=operator))
    if status is not None:
        query = query.filter(status=status)
    return await newest_first(query, tag="reports", first=first, after=after)


async def resolve_for(subject: Subject, *, status: ReportStatus, now: datetime) -> int:
    """Close the open reports on a subject an operator acted on (inside the action's
    transaction)."""
    return await Report.filter(
        subject_kind=subject.kind.name, subject_id=subject.id, status=ReportStatus.OPEN
    ).update(status=status, resolved_at=now)


async def dismiss(
    rt: Runtime, viewer: int | None, *, report_id: str | None, reason: str, request_id: str
) -> Report:
    """An operator closes a report without acting on its subject."""
    actor = await operators.require_operator(viewer)
    clean = audit.clean_reason(reason)
    report = await Report.get_or_none(public_id=report_id or "")
    if report is None:
        raise NotFound("No such report.", field="reportId")
    if report.status != ReportStatus.OPEN:
        raise InvalidState("This report is closed already.", field="reportId", code="REPORT_CLOSED")
    now = rt.clock.now()
    async with changes.transaction(now, public=False):  # operators and the reporter
        closed = await Report.filter(id=report.id, status=ReportStatus.OPEN).update(
            status=ReportStatus.DISMISSED, resolved_at=now
        )
        if not closed:
            raise InvalidState(
                "This report is closed already.", field="reportId", code="REPORT_CLOSED"
            )
        await audit.record(
            AuditAction.DISMISS_REPORT,
            await subject_of(report),
            actor=actor,
            at=now,
            reason=clean,
            request_id=request_id,
        )
    return await changes.reread(report)


async def subject_of(report: Report) -> Subject:
    """What a report is about, whatever its state now (for the audit entry, which names
    it by kind and key; never shown through this)."""
    kind = lookups.BY_NAME[report.subject_kind]
    row = await kind.model.get_or_none(id=report.subject_id)
    if row is None:  # gone for good since: the entry still names it
        return Subject(kind, report.subject_id, "", None)
    return Subject.of(kind, row)
