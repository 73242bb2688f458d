"""The user type: an account, and (for its owner) its datasets and notifications."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import DatasetStatus
from graph.schema.types.datasets import TrainingDatasetType
from graph.schema.types.models import ModelType
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
from storage import catalog, datasets, notifications
from storage.db import enums as stored
from storage.db import models as db
from storage.privacy import access, lookups


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
        return connection(info, page, ModelType.of)

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
        return connection(info, page, TrainingDatasetType.of)

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
        return connection(info, page, NotificationType.of)

    @strawberry.field(
        description="How many of your notifications are unread; null for anybody but yourself."
    )
    async def unread_notification_count(self, info: Info) -> int | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return await notifications.unread_count(self.row.id)
