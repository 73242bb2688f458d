"""GraphQL object types. Resolvers translate rows: loading goes through the
per-request DataLoaders (which apply the privacy rule) and storage services.

A type object is only ever built for a row its viewer may see (from a lookup, a
loader or a listing, all filtered by ``storage.access``); fields check only what
depends on more than seeing: downloading, and what is the owner's alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Generic, TypeVar

import strawberry

from graph import ids
from graph.context import Info
from graph.enums import (
    DatasetEventKind,
    DatasetStatus,
    DeletionReason,
    NotificationKind,
    VersionStatus,
    Visibility,
    shown_status,
)
from graph.scalars import BigInt
from storage import access, catalog, datasets, lookups, notifications
from storage import models as db
from storage.pages import Page
from storage.signing import DownloadGrant

T = TypeVar("T")


def as_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


# Relay plumbing ------------------------------------------------------------


@strawberry.interface(description="An object with a globally unique, opaque ID.")
class Node:
    id: strawberry.ID = strawberry.field(description="The opaque global ID of this object.")


@strawberry.type(description="Where a page of a connection ends.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last item on this page; pass it as `after`."
    )


@strawberry.type(description="One item of a connection, with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque position of this item.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of items (Relay connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items on this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


def connection(page: Page, wrap) -> Connection:  # type: ignore[no-untyped-def, type-arg]
    edges = [Edge(cursor=page.cursor(row), node=wrap(row)) for row in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
        ),
    )


FirstArg = Annotated[
    int | None,
    strawberry.argument(description="How many items to return (at most 100; default 20)."),
]
AfterArg = Annotated[str | None, strawberry.argument(description="Return items after this cursor.")]


# Objects -------------------------------------------------------------------


@strawberry.type(name="User", description="A person with an account.")
class UserType(Node):
    row: strawberry.Private[db.User]

    @classmethod
    def of(cls, row: db.User) -> UserType:
        return cls(id=strawberry.ID(ids.encode("User", row.id)), row=row, username=row.username)

    username: str = strawberry.field(description="The user's unique name.")

    @strawberry.field(description="The user's models that you may see, newest first.")
    async def models(
        self, info: Info, first: FirstArg = None, after: AfterArg = None
    ) -> Connection[ModelType]:
        page = await catalog.models_page(
            viewer=info.context.viewer_id, owner_id=self.row.id, first=first, after=after
        )
        return connection(page, ModelType.of)

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
            status=db.DatasetStatus(status) if status else None,
            first=first,
            after=after,
        )
        return connection(page, TrainingDatasetType.of)

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
            user_id=self.row.id, unread_only=unread_only, first=first, after=after
        )
        return connection(page, NotificationType.of)

    @strawberry.field(
        description="How many of your notifications are unread; null for anybody but yourself."
    )
    async def unread_notification_count(self, info: Info) -> int | None:
        if not access.owns(info.context.viewer_id, self.row.id):
            return None
        return await notifications.unread_count(self.row.id)


@strawberry.type(name="Model", description="A LoRA model: a name, a description and versions.")
class ModelType(Node):
    row: strawberry.Private[db.LoraModel]

    @classmethod
    def of(cls, row: db.LoraModel) -> ModelType:
        return cls(
            id=strawberry.ID(ids.encode("Model", row.id)),
            row=row,
            name=row.name,
            description=row.description,
            created_at=row.created_at.astimezone(UTC),
        )

    name: str = strawberry.field(description="The model's name.")

    description: str = strawberry.field(description="The model's description.")

    created_at: datetime = strawberry.field(description="When the model was created.")

    @strawberry.field(description="Who published the model.")
    async def owner(self, info: Info) -> UserType:
        user = await info.context.loaders.of(lookups.USER).load(self.row.owner_id)
        assert user is not None  # the owner of a visible model is visible
        return UserType.of(user)

    @strawberry.field(
        description=(
            "The versions you may see, newest first (drafts only for the owner); a model "
            "has at most 50."
        )
    )
    async def versions(self, info: Info) -> list[ModelVersionType]:
        rows = await info.context.loaders.versions_of_model.load(self.row.id)
        return [ModelVersionType.of(v) for v in rows]


@strawberry.type(name="ModelVersion", description="One trained version of a model.")
class ModelVersionType(Node):
    row: strawberry.Private[db.ModelVersion]

    @classmethod
    def of(cls, row: db.ModelVersion) -> ModelVersionType:
        return cls(
            id=strawberry.ID(ids.encode("ModelVersion", row.id)),
            row=row,
            name=row.name,
            status=row.status,
            published_at=as_utc(row.published_at),
            created_at=row.created_at.astimezone(UTC),
        )

    name: str = strawberry.field(description="The version's name, e.g. v1.")

    status: VersionStatus = strawberry.field(description="Draft or published.")

    published_at: datetime | None = strawberry.field(
        description="When the version was published; null for a draft."
    )

    created_at: datetime = strawberry.field(description="When the version was created.")

    @strawberry.field(description="The model this version belongs to.")
    async def model(self, info: Info) -> ModelType:
        model = await info.context.loaders.of(lookups.MODEL).load(self.row.model_id)
        assert model is not None  # the model of a visible version is visible
        return ModelType.of(model)

    @strawberry.field(
        description=(
            "The dataset this version was trained on, if you may see it: null when there is "
            "none, and for anybody but the owner when it is private."
        )
    )
    async def training_dataset(self, info: Info) -> TrainingDatasetType | None:
        dataset = await info.context.loaders.dataset_of_version.load(self.row.id)
        return TrainingDatasetType.of(dataset) if dataset is not None else None


@strawberry.type(name="DatasetEvent", description="One entry in a dataset's history.")
class DatasetEventType:
    @classmethod
    def of(cls, row: db.DatasetEvent) -> DatasetEventType:
        return cls(kind=row.kind, at=row.at.astimezone(UTC), detail=row.detail)

    kind: DatasetEventKind = strawberry.field(description="What happened.")

    at: datetime = strawberry.field(description="When it happened.")

    detail: str = strawberry.field(description="Details, e.g. the checksum of an upload.")


@strawberry.type(
    name="TrainingDataset",
    description=(
        "The data a model version was trained on: a zip archive, public or private. A "
        "private one is visible only to its owner and deleted automatically when its "
        "window ends (expiresAt)."
    ),
)
class TrainingDatasetType(Node):
    row: strawberry.Private[db.TrainingDataset]

    @classmethod
    def of(cls, row: db.TrainingDataset) -> TrainingDatasetType:
        deleting = row.status == db.DatasetStatus.DELETING  # access ended at the claim
        return cls(
            id=strawberry.ID(ids.encode("TrainingDataset", row.id)),
            row=row,
            filename=row.filename,
            size_bytes=BigInt(row.size_bytes),
            sha256=row.sha256,
            visibility=row.visibility,
            status=shown_status(row.status),
            expires_at=as_utc(row.expires_at),
            deleted_at=as_utc(row.claimed_at if deleting else row.deleted_at),
            deletion_reason=row.deletion_reason,
            created_at=row.created_at.astimezone(UTC),
            uploaded_at=as_utc(row.uploaded_at),
        )

    filename: str = strawberry.field(
        description="The file name given at upload (for display only)."
    )

    size_bytes: BigInt = strawberry.field(description="The size in bytes.")

    sha256: str | None = strawberry.field(
        description="SHA-256 of the bytes, hex; null until they arrive."
    )

    visibility: Visibility = strawberry.field(description="Public or private.")

    status: DatasetStatus = strawberry.field(
        description="Waiting for its bytes, available, or deleted."
    )

    expires_at: datetime | None = strawberry.field(
        description=(
            "When a private dataset of a published version stops being downloadable and is "
            "deleted; null for public datasets, unpublished versions, and datasets deleted "
            "before their window ended."
        )
    )

    deleted_at: datetime | None = strawberry.field(
        description=(
            "When the dataset was deleted (access ended then; the bytes are gone within "
            "moments); null while it exists."
        )
    )

    deletion_reason: DeletionReason | None = strawberry.field(
        description="Why the bytes were deleted; null while they exist."
    )

    created_at: datetime = strawberry.field(description="When the dataset was recorded.")

    uploaded_at: datetime | None = strawberry.field(
        description="When its bytes arrived; null until then."
    )

    @strawberry.field(description="The model version trained on this dataset.")
    async def version(self, info: Info) -> ModelVersionType | None:
        version = await info.context.loaders.of(lookups.VERSION).load(self.row.version_id)
        return ModelVersionType.of(version) if version is not None else None

    @strawberry.field(
        description=(
            "A signed URL that downloads the zip archive, good for a few minutes. It stops "
            "working at expiresAt and on deletion, whichever comes first, and is null "
            "whenever you may not download."
        )
    )
    async def download_url(self, info: Info) -> str | None:
        ctx = info.context
        now = ctx.now()
        if not access.downloadable(self.row, now):
            return None
        lifetime = ctx.services.settings.download_url_lifetime
        expires = now + timedelta(seconds=lifetime)
        grant = DownloadGrant(self.row.id, ctx.viewer_id, int(expires.timestamp()) + 1)
        token = ctx.services.signer.download_token(grant)
        return str(ctx.request.url_for("download", token=token))

    @strawberry.field(
        description=(
            "The dataset's history (its most recent 100 events), oldest first; only the "
            "owner sees it (else null)."
        )
    )
    async def events(self, info: Info) -> list[DatasetEventType] | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        rows = await info.context.loaders.events_of_dataset.load(self.row.id)
        return [DatasetEventType.of(r) for r in rows]


@strawberry.type(name="Notification", description="A message to you about your datasets.")
class NotificationType(Node):
    row: strawberry.Private[db.Notification]

    @classmethod
    def of(cls, row: db.Notification) -> NotificationType:
        return cls(
            id=strawberry.ID(ids.encode("Notification", row.id)),
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
    async def dataset(self, info: Info) -> TrainingDatasetType | None:
        if self.row.dataset_id is None:
            return None
        dataset = await info.context.loaders.of(lookups.DATASET).load(self.row.dataset_id)
        return TrainingDatasetType.of(dataset) if dataset is not None else None


@strawberry.type(description="What happens to private datasets, from the configured values.")
class RetentionPolicy:
    private_retention_seconds: int = strawberry.field(
        description="How long after publishing a private dataset is kept, in seconds."
    )
    reminder_offsets_seconds: list[int] = strawberry.field(
        description="When the owner is reminded, in seconds before deletion, largest first."
    )
    notice: str = strawberry.field(
        description="The sentence the upload form shows next to the sharing option."
    )
