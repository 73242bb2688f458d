"""The user type: an account, and (for its owner) its datasets and notifications."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import DatasetStatus
from graph.schema.types.datasets import TrainingDatasetType
from graph.schema.types.exports import DataExportType
from graph.schema.types.models import ModelType
from graph.schema.types.moderation import AuditEntryType, ReportType
from graph.schema.types.notifications import NotificationType
from graph.schema.types.relay import (
    AfterArg,
    Connection,
    FirstArg,
    IncludeNsfwArg,
    Node,
    connection,
    node_type,
    opened,
)
from storage import audit, catalog, datasets, exports, notifications, reports
from storage.db import enums as stored
from storage.db import models as db
from storage.privacy import access, lookups


@strawberry.type(
    name="EmailPreferences", description="Which e-mail you receive besides moderation notices."
)
class EmailPreferencesType:
    reminders: bool = strawberry.field(description="Reminders before a private dataset is deleted.")
    deletions: bool = strawberry.field(
        description="Notices after a private dataset was deleted without your asking."
    )


@strawberry.type(name="User", description="A person with an account.")
@node_type(lookups.USER)
class UserType(Node):
    row: strawberry.Private[db.User]

    @classmethod
    def of(cls, row: db.User) -> UserType:
        return cls(
            id=strawberry.ID(ids.encode("User", row.public_id)), row=row, username=row.username
        )

    username: str = strawberry.field(description="The user's unique name.")

    @strawberry.field(
        description=(
            "The user's models that you may see, newest first (your own always include NSFW ones)."
        )
    )
    async def models(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        include_nsfw: IncludeNsfwArg = False,
    ) -> Connection[ModelType]:
        page = await catalog.models_page(
            viewer=info.context.viewer_id,
            narrow=catalog.CatalogueFilter(owner_id=self.row.public_id, include_nsfw=include_nsfw),
            first=first,
            after=opened(info, after),
        )
        return await connection(info, page, ModelType.of, lookups.MODEL.name)

    @strawberry.field(
        description=(
            "The user's training datasets that you may see, newest first: for yourself all "
            'of them, tombstones included (your "my datasets" page); for anybody else only '
            "public ones."
        )
    )
    async def training_datasets(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        status: Annotated[
            DatasetStatus | None, strawberry.argument(description="Only datasets in this state.")
        ] = None,
    ) -> Connection[TrainingDatasetType]:
        page = await datasets.datasets_page(
            viewer=info.context.viewer_id,
            owner_id=self.row.id,
            status=stored.DatasetStatus(status) if status else None,
            first=first,
            after=opened(info, after),
        )
        return await connection(info, page, TrainingDatasetType.of, lookups.DATASET.name)

    @strawberry.field(
        description="Your notifications, newest first; null for anybody but yourself."
    )
    async def notifications(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        unread_only: Annotated[
            bool, strawberry.argument(description="Only notifications not yet read.")
        ] = False,
    ) -> Connection[NotificationType] | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        page = await notifications.notifications_page(
            user_id=self.row.id, unread_only=unread_only, first=first, after=opened(info, after)
        )
        return await connection(info, page, NotificationType.of, lookups.NOTIFICATION.name)

    @strawberry.field(
        description=(
            "Your data exports (requestDataExport), newest first; null for anybody but yourself."
        )
    )
    async def data_exports(
        self, info: Info, first: FirstArg = None, after: AfterArg = None
    ) -> Connection[DataExportType] | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        page = await exports.exports_page(
            info.context.viewer_id, owner_id=self.row.id, first=first, after=opened(info, after)
        )
        return await connection(info, page, DataExportType.of, "DataExport")

    @strawberry.field(
        description="How many of your notifications are unread; null for anybody but yourself."
    )
    async def unread_notification_count(self, info: Info) -> int | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return await notifications.unread_count(self.row.id)

    @strawberry.field(
        description=(
            "Your e-mail address, confirmed or awaiting confirmation (emailVerified says "
            "which); null for anybody but yourself."
        )
    )
    def email(self, info: Info) -> str | None:
        return self.row.email if access.owns(info.context.viewer_id, self.row.id) else None

    @strawberry.field(
        description=(
            "Whether your e-mail address is confirmed (nothing is sent to it before); null "
            "for anybody but yourself, and when you have none."
        )
    )
    def email_verified(self, info: Info) -> bool | None:
        if not access.owns(info.context.viewer_id, self.row.id) or self.row.email is None:
            return None
        return self.row.email_verified_at is not None

    @strawberry.field(description="Which e-mail you receive; null for anybody but yourself.")
    def email_preferences(self, info: Info) -> EmailPreferencesType | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return EmailPreferencesType(
            reminders=self.row.email_reminders, deletions=self.row.email_deletions
        )

    @strawberry.field(
        description="Whether you are one of the site's operators; null for anybody but yourself."
    )
    def is_operator(self, info: Info) -> bool | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return info.context.operator

    @strawberry.field(
        description="Your reports and their outcome, newest first; null for anybody but yourself."
    )
    async def reports(
        self, info: Info, first: FirstArg = None, after: AfterArg = None
    ) -> Connection[ReportType] | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        page = await reports.reports_page(
            viewer=self.row.id, operator=False, status=None, first=first, after=opened(info, after)
        )
        return await connection(info, page, ReportType.of, "Report")

    @strawberry.field(
        description=(
            "What the site's operators did to your models, versions and account (without who "
            "did it), newest first; null for anybody but yourself."
        )
    )
    async def audit_log(
        self, info: Info, first: FirstArg = None, after: AfterArg = None
    ) -> Connection[AuditEntryType] | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        page = await audit.entries_page(
            viewer=self.row.id, operator=False, first=first, after=opened(info, after)
        )
        return await connection(info, page, AuditEntryType.of, "AuditEntry")
