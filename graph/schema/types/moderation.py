"""The types of running a site: a takedown as its owner sees it, the subject of a
report or an audit entry as operators name it, reports, audit entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import AuditAction, ReportReason, ReportStatus
from graph.schema.scalars import as_utc
from graph.schema.types.relay import Node, node_of
from storage.db import site
from storage.moderation.subjects import Subject, name_of
from storage.privacy import access, lookups


@strawberry.type(name="TakeDown", description="Why and when the site's operators hid something.")
class TakeDownType:
    reason: str = strawberry.field(description="The operators' reason, as the owner is told it.")
    at: datetime = strawberry.field(description="When it was taken down.")

    @classmethod
    def of(cls, row: Any) -> TakeDownType | None:
        """A model's or version's takedown, if it has one."""
        if row.taken_down_at is None:
            return None
        return cls(reason=row.taken_down_reason or "", at=row.taken_down_at.astimezone(UTC))

    @classmethod
    def shown(cls, info: Info, row: Any) -> TakeDownType | None:
        """A model's or version's takedown as the viewer may see it: its owner and the
        operators do, nobody else (to others a taken-down subject is simply not there)."""
        ctx = info.context
        if not (access.owns(ctx.viewer_id, row.owner_id) or ctx.operator):
            return None
        return cls.of(row)


@strawberry.type(
    name="ModerationSubject",
    description=(
        "What a report or an audit entry is about, as operators see it (and the owner, for "
        "an entry about their own object): named, never opened. Its name and owner are "
        "shown while it is public or hidden by moderation; for anything else (deleted, a "
        "draft again, a private dataset) only its kind and ID remain."
    ),
)
class ModerationSubjectType:
    subject: strawberry.Private[Subject]
    found: strawberry.Private[Subject | None]

    @classmethod
    def of(cls, subject: Subject, found: Subject | None) -> ModerationSubjectType:
        return cls(subject=subject, found=found)

    @strawberry.field(description="Its global ID.")
    def id(self) -> strawberry.ID:
        public_id = self.subject.public_id or "gone"  # a row removed for good since
        return strawberry.ID(f"{ids.PREFIX[self.subject.kind.name]}_{public_id}")

    @strawberry.field(description='Its type: "Model", "ModelVersion", "ModelFile", ...')
    def kind(self) -> str:
        return self.subject.kind.name

    @strawberry.field(description="Its name (a model's, a version's, a file's, a username).")
    def name(self) -> str | None:
        return name_of(self.found.row) if self.found is not None else None

    @strawberry.field(description="Its owner's username.")
    async def owner_username(self, info: Info) -> str | None:
        if self.found is None or self.found.owner_id is None:
            return None
        return await info.context.loaders.usernames.load(self.found.owner_id)

    @strawberry.field(description="Its takedown, if it is taken down (models and versions).")
    def taken_down(self) -> TakeDownType | None:
        row = self.found.row if self.found is not None else None
        return TakeDownType.of(row) if hasattr(row, "taken_down_at") else None

    @strawberry.field(description="Whether it is an account that is suspended.")
    def suspended(self) -> bool:
        row = self.found.row if self.found is not None else None
        return getattr(row, "suspended_at", None) is not None and self.subject.kind is lookups.USER

    @strawberry.field(
        description="The object itself, as you may see it now (null when you may not: "
        "hidden things are their owner's alone)."
    )
    async def node(self, info: Info) -> Node | None:
        row = await info.context.loaders.of(self.subject.kind).load(self.subject.id)
        return node_of(self.subject.kind, row) if row is not None else None  # type: ignore[no-any-return]


async def _named(info: Info, kind_name: str, pk: int, public_id: str = "") -> ModerationSubjectType:
    kind = lookups.BY_NAME[kind_name]
    found = await info.context.loaders.moderated.load((kind_name, pk))
    subject = found if found is not None else Subject(kind, pk, public_id, None)
    return ModerationSubjectType.of(subject, found)


@strawberry.type(
    name="Report",
    description=(
        "A report of something somebody could see, to the site's operators. Its reporter "
        "and the operators see it; the owner of what was reported never learns who "
        "reported it."
    ),
)
class ReportType:
    row: strawberry.Private[site.Report]

    @classmethod
    def of(cls, row: site.Report) -> ReportType:
        return cls(
            row=row,
            id=strawberry.ID(ids.encode("Report", row.public_id)),
            reason=row.reason,
            details=row.details,
            status=row.status,
            created_at=row.created_at.astimezone(UTC),
            resolved_at=as_utc(row.resolved_at),
        )

    id: strawberry.ID = strawberry.field(description="The report's ID.")
    reason: ReportReason = strawberry.field(description="Why it was reported.")
    details: str = strawberry.field(description="What the reporter wrote.")
    status: ReportStatus = strawberry.field(description="Where it is: its outcome once closed.")
    created_at: datetime = strawberry.field(description="When it was reported.")
    resolved_at: datetime | None = strawberry.field(
        description="When the operators closed it; null while open."
    )

    @strawberry.field(
        description="What was reported, as you may see it now (null once you may not)."
    )
    async def subject(self, info: Info) -> Node | None:
        kind = lookups.BY_NAME[self.row.subject_kind]
        row = await info.context.loaders.of(kind).load(self.row.subject_id)
        return node_of(kind, row) if row is not None else None  # type: ignore[no-any-return]

    @strawberry.field(
        description="Operators only: what was reported, named even when it is hidden."
    )
    async def about(self, info: Info) -> ModerationSubjectType | None:
        if not info.context.operator:
            return None
        return await _named(info, self.row.subject_kind, self.row.subject_id)

    @strawberry.field(description="Operators only: who reported it (null once they left).")
    async def reporter_username(self, info: Info) -> str | None:
        if not info.context.operator or self.row.reporter_id is None:
            return None
        return await info.context.loaders.usernames.load(self.row.reporter_id)


@strawberry.type(
    name="AuditEntry",
    description=(
        "One thing an operator did, as recorded then: entries are only ever added, never "
        "changed or removed. Operators see every entry; the owner of a subject sees the "
        "entries about it, without who acted."
    ),
)
class AuditEntryType:
    row: strawberry.Private[site.AuditEntry]

    @classmethod
    def of(cls, row: site.AuditEntry) -> AuditEntryType:
        return cls(
            row=row,
            id=strawberry.ID(ids.encode("AuditEntry", row.public_id)),
            at=row.at.astimezone(UTC),
            action=row.action,
            reason=row.reason,
            destroy_private_data=row.destroy_private_data,
        )

    id: strawberry.ID = strawberry.field(description="The entry's ID.")
    at: datetime = strawberry.field(description="When it was done.")
    action: AuditAction = strawberry.field(description="What was done.")
    reason: str = strawberry.field(description="The reason given (the owner is told it).")
    destroy_private_data: bool = strawberry.field(
        description="Whether the takedown asked for the private data under it to be deleted."
    )

    @strawberry.field(description="What it was done to.")
    async def subject(self, info: Info) -> ModerationSubjectType:
        row = self.row
        return await _named(info, row.subject_kind, row.subject_id, row.subject_public_id)

    @strawberry.field(description='Operators only: who did it ("command line" for a grant).')
    def actor(self, info: Info) -> str | None:
        return self.row.actor_name if info.context.operator else None

    @strawberry.field(description="Operators only: the operator's notes.")
    def details(self, info: Info) -> str | None:
        return self.row.details if info.context.operator else None

    @strawberry.field(description="Operators only: the request it was done in (for the logs).")
    def request_id(self, info: Info) -> str | None:
        return self.row.request_id if info.context.operator else None
