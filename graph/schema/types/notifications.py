"""The notification type: a message to its owner about one of their datasets."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from graph.schema import ids, relations
from graph.schema.context import Info
from graph.schema.enums import NotificationKind
from graph.schema.relations import related, then
from graph.schema.scalars import as_utc
from graph.schema.types.datasets import TrainingDatasetType
from graph.schema.types.relay import Node, node_type
from storage.db import models as db
from storage.privacy import lookups


@strawberry.type(name="Notification", description="A message to you about your datasets.")
@node_type(lookups.NOTIFICATION)
class NotificationType(Node):
    row: strawberry.Private[db.Notification]

    @classmethod
    def of(cls, row: db.Notification) -> NotificationType:
        return cls(
            id=strawberry.ID(ids.encode("Notification", row.public_id)),
            row=row,
            kind=row.kind,
            message=row.message,
            created_at=row.created_at.astimezone(UTC),
            read_at=as_utc(row.read_at),
        )

    kind: NotificationKind = strawberry.field(description="What it is about.")

    message: str = strawberry.field(
        description="The message, naming the model, version, file and date."
    )

    created_at: datetime = strawberry.field(description="When it was sent.")

    read_at: datetime | None = strawberry.field(
        description="When you marked it read; null while unread."
    )

    @strawberry.field(description="The dataset it is about (a tombstone once deleted).")
    def dataset(self, info: Info) -> TrainingDatasetType | None:
        if self.row.dataset_id is None:
            return None
        return then(related(info, relations.NOTICE_DATASET, self.row), TrainingDatasetType.maybe)
