"""The training dataset type and its history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from graph.schema import ids, relations
from graph.schema.context import Info
from graph.schema.enums import (
    DatasetEventKind,
    DatasetStatus,
    DeletionReason,
    Visibility,
    shown_reason,
    shown_status,
)
from graph.schema.links import download_link
from graph.schema.relations import related, then
from graph.schema.scalars import BigInt, as_utc
from graph.schema.types.receipts import DeletionReceiptType
from graph.schema.types.relay import Node, node_of, node_type
from storage import signing
from storage.db import enums as stored
from storage.db import models as db
from storage.privacy import access, lookups

if TYPE_CHECKING:
    from graph.schema.types.versions import ModelVersionType

VersionRef = Annotated["ModelVersionType", strawberry.lazy("graph.schema.types.versions")]


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
@node_type(lookups.DATASET)
class TrainingDatasetType(Node):
    row: strawberry.Private[db.TrainingDataset]

    @classmethod
    def maybe(cls, row: db.TrainingDataset | None) -> TrainingDatasetType | None:
        return cls.of(row) if row is not None else None

    @classmethod
    def of(cls, row: db.TrainingDataset) -> TrainingDatasetType:
        deleting = row.status == stored.DatasetStatus.DELETING  # access ended at the claim
        return cls(
            id=strawberry.ID(ids.encode("TrainingDataset", row.public_id)),
            row=row,
            filename=row.filename,
            size_bytes=BigInt(row.size_bytes),
            sha256=row.sha256,
            visibility=row.visibility,
            status=shown_status(row.status),
            expires_at=as_utc(row.expires_at),
            deleted_at=as_utc(row.claimed_at if deleting else row.deleted_at),
            deletion_reason=shown_reason(row.deletion_reason),
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
            "When a private dataset stops being downloadable and is deleted: publishedAt + "
            "the retention period, or, while its version is a draft, its upload + the draft "
            "lifetime (see retentionPolicy); null for public datasets, pending uploads, and "
            "datasets deleted before their window ended."
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

    @strawberry.field(
        description=(
            "When the dataset's encryption key was destroyed (its bytes were unreadable "
            "from then on, wherever a copy was kept); only the owner sees it (else null)."
        )
    )
    def key_destroyed_at(self, info: Info) -> datetime | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        return as_utc(self.row.key_destroyed_at)

    @strawberry.field(
        description=(
            "The signed receipt of the dataset's deletion (on its tombstone); only the "
            "owner sees it (else null)."
        )
    )
    def deletion_receipt(self, info: Info) -> DeletionReceiptType | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        row = self.row
        return DeletionReceiptType.stored(
            row.receipt_payload, row.receipt_signature, row.receipt_key_id
        )

    @strawberry.field(description="The model version trained on this dataset.")
    def version(self, info: Info) -> VersionRef | None:
        return then(related(info, relations.VERSION, self.row), _version)

    @strawberry.field(
        description=(
            "A signed URL that downloads the zip archive, good for a few minutes. It stops "
            "working at expiresAt and on deletion, whichever comes first, and is null "
            "whenever you may not download."
        )
    )
    async def download_url(self, info: Info) -> str | None:
        if not access.downloadable(self.row, info.context.now()):
            return None
        return download_link(info, signing.DATASET, self.row.id)

    @strawberry.field(
        description=(
            "The dataset's history (its most recent 100 events), oldest first; only the "
            "owner sees it (else null)."
        )
    )
    def events(self, info: Info) -> list[DatasetEventType] | None:
        if not access.owns(info.context.viewer_id, self.row.owner_id):
            return None
        return then(
            related(info, relations.EVENTS, self.row),
            lambda rows: [DatasetEventType.of(r) for r in rows],
        )


def _version(version: db.ModelVersion | None) -> ModelVersionType | None:
    if version is None:
        return None
    return cast("ModelVersionType", node_of(lookups.VERSION, version))
