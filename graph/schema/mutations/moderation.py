"""Running a site: anybody signed in reports what they can see; operators take down and
restore, suspend and reinstate, and close reports.

Every operator mutation checks the role first (FORBIDDEN for anybody else, the same
answer whatever the input names: nothing about a subject is looked up before). The
role itself is granted on the command line only: no mutation grants it.
"""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import ReportReason
from graph.schema.mutations.accounts import rate_limited
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    null_field,
    payload_mutation,
    user_errors_field,
)
from graph.schema.types.moderation import ModerationSubjectType, ReportType
from storage import reports, suspensions, takedowns
from storage.db import enums as stored
from storage.moderation.subjects import Subject
from storage.privacy import lookups
from storage.privacy.lookups import Kind


def _subject_id(global_id: strawberry.ID) -> tuple[Kind[Any] | None, str | None]:
    """The kind and public id in a global ID (the kind read from the ID alone)."""
    decoded = ids.decode_any(str(global_id))
    if decoded is None:
        return None, None
    return lookups.BY_NAME.get(decoded[0]), decoded[1]


def _named(subject: Subject) -> ModerationSubjectType:
    return ModerationSubjectType.of(subject, subject)


@strawberry.input(description="Report something you can see to the site's operators.")
class ReportContentInput:
    subject_id: strawberry.ID = strawberry.field(
        description="What you report: a model, a version, a weights file, a public dataset "
        "or a user."
    )
    reason: ReportReason = strawberry.field(description="Why.")
    details: str | None = strawberry.field(
        default=None, description="What the operators should know (at most 5,000 characters)."
    )


@strawberry.type(description="The result of reportContent.")
class ReportContentPayload:
    report: ReportType | None = null_field(
        "Your report (the open one you made before, if you reported this already)."
    )
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Report something you can see to the site's operators (rate-limited). Reporting what "
    "you cannot see answers as for an ID that does not exist.",
)
async def report_content(
    info: Info, input: Annotated[ReportContentInput, INPUT]
) -> ReportContentPayload:
    ctx = info.context
    reporter = lookups.require_viewer(ctx.viewer_id)
    if not await ctx.services.limiter.allow_report(user_id=reporter):
        raise rate_limited()
    kind, public_id = _subject_id(input.subject_id)
    row = await ctx.call(
        reports.report_content,
        kind=kind,
        public_id=public_id,
        reason=stored.ReportReason(input.reason),
        details=input.details,
    )
    return ReportContentPayload(report=ReportType.of(row))


@strawberry.input(description="Take a model or a version down (operators only).")
class TakeDownInput:
    subject_id: strawberry.ID = strawberry.field(description="The model or model version.")
    reason: str = strawberry.field(description="Why: the owner is told this.")
    details: str | None = strawberry.field(
        default=None, description="Notes for the operators (in the audit trail only)."
    )
    destroy_private_data: bool = strawberry.field(
        default=False,
        description="Where the law requires it: also delete the private datasets under it, as "
        "an owner deletion would (reason TAKEN_DOWN), without anybody seeing them. The answer "
        "is the same whether there were any.",
    )


@strawberry.input(description="Restore a model or a version taken down (operators only).")
class RestoreInput:
    subject_id: strawberry.ID = strawberry.field(description="The model or model version.")
    reason: str = strawberry.field(description="Why: the owner is told this.")


@strawberry.type(description="The result of takeDown.")
class TakeDownPayload:
    subject: ModerationSubjectType | None = null_field("What was taken down.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of restore.")
class RestorePayload:
    subject: ModerationSubjectType | None = null_field("What was restored.")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Operators: take a published model or version down. It is hidden from everybody but "
    "its owner (who is told why), its downloads stop, and the open reports on it are closed "
    "as acted on. Anybody else: FORBIDDEN."
)
async def take_down(info: Info, input: Annotated[TakeDownInput, INPUT]) -> TakeDownPayload:
    ctx = info.context
    kind, public_id = _subject_id(input.subject_id)
    subject = await ctx.call(
        takedowns.take_down,
        kind=kind,
        public_id=public_id,
        reason=input.reason,
        details=input.details,
        destroy_private_data=input.destroy_private_data,
        request_id=ctx.request_id,
    )
    return TakeDownPayload(subject=_named(subject))


@payload_mutation(
    "Operators: show a model or version taken down again (its owner is told). Anybody else: "
    "FORBIDDEN."
)
async def restore(info: Info, input: Annotated[RestoreInput, INPUT]) -> RestorePayload:
    ctx = info.context
    kind, public_id = _subject_id(input.subject_id)
    subject = await ctx.call(
        takedowns.restore,
        kind=kind,
        public_id=public_id,
        reason=input.reason,
        request_id=ctx.request_id,
    )
    return RestorePayload(subject=_named(subject))


@strawberry.input(description="Suspend an account (operators only).")
class SuspendUserInput:
    user_id: strawberry.ID = strawberry.field(description="The account.")
    reason: str = strawberry.field(description="Why: the owner is told this.")


@strawberry.input(description="Reinstate a suspended account (operators only).")
class UnsuspendUserInput:
    user_id: strawberry.ID = strawberry.field(description="The account.")
    reason: str = strawberry.field(description="Why: the owner is told this.")


@strawberry.type(description="The result of suspendUser.")
class SuspendUserPayload:
    subject: ModerationSubjectType | None = null_field("The account.")
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The result of unsuspendUser.")
class UnsuspendUserPayload:
    subject: ModerationSubjectType | None = null_field("The account.")
    user_errors: list[UserError] = user_errors_field()


def _user_id(global_id: strawberry.ID) -> str | None:
    return ids.decode(str(global_id), lookups.USER.name)


@payload_mutation(
    "Operators: suspend an account. It cannot sign in (every sign-in ends now), its public "
    "content is hidden, its private datasets keep their windows and are deleted on time. "
    "Anybody else: FORBIDDEN."
)
async def suspend_user(info: Info, input: Annotated[SuspendUserInput, INPUT]) -> SuspendUserPayload:
    ctx = info.context
    user = await ctx.call(
        suspensions.suspend,
        public_id=_user_id(input.user_id),
        reason=input.reason,
        request_id=ctx.request_id,
    )
    return SuspendUserPayload(subject=_named(Subject.of(lookups.USER, user)))


@payload_mutation("Operators: reinstate a suspended account. Anybody else: FORBIDDEN.")
async def unsuspend_user(
    info: Info, input: Annotated[UnsuspendUserInput, INPUT]
) -> UnsuspendUserPayload:
    ctx = info.context
    user = await ctx.call(
        suspensions.unsuspend,
        public_id=_user_id(input.user_id),
        reason=input.reason,
        request_id=ctx.request_id,
    )
    return UnsuspendUserPayload(subject=_named(Subject.of(lookups.USER, user)))


@strawberry.input(description="Close a report without acting on it (operators only).")
class DismissReportInput:
    report_id: strawberry.ID = strawberry.field(description="The report.")
    reason: str = strawberry.field(description="Why (in the audit trail).")


@strawberry.type(description="The result of dismissReport.")
class DismissReportPayload:
    report: ReportType | None = null_field("The report, now DISMISSED.")
    user_errors: list[UserError] = user_errors_field()


@payload_mutation(
    "Operators: close a report without acting on its subject. Anybody else: FORBIDDEN.",
)
async def dismiss_report(
    info: Info, input: Annotated[DismissReportInput, INPUT]
) -> DismissReportPayload:
    ctx = info.context
    row = await ctx.call(
        reports.dismiss,
        report_id=ids.decode(str(input.report_id), "Report"),
        reason=input.reason,
        request_id=ctx.request_id,
    )
    return DismissReportPayload(report=ReportType.of(row))
