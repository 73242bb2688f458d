"""The data export type (storage/exports.py)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.enums import DataExportStatus
from graph.schema.links import download_link
from graph.schema.scalars import BigInt, as_utc
from storage import signing
from storage.db import enums as stored
from storage.db import models as db
from storage.privacy import access


@strawberry.type(
    name="DataExport",
    description=(
        "One zip of everything you own (account, models, versions, weights files, datasets "
        "still in their window, history, notifications, receipts), sealed at rest; "
        "downloadable until expiresAt, then shredded."
    ),
)
class DataExportType:
    row: strawberry.Private[db.DataExport]

    id: strawberry.ID = strawberry.field(description="The export's opaque global ID.")
    status: DataExportStatus = strawberry.field(description="Being built, ready, or expired.")
    ready_at: datetime | None = strawberry.field(description="When it was ready; null before.")
    expires_at: datetime | None = strawberry.field(
        description="When it stops being downloadable and is shredded; null until ready."
    )
    size_bytes: BigInt | None = strawberry.field(
        description="The size of the zip in bytes; null until ready."
    )

    @classmethod
    def of(cls, row: db.DataExport) -> DataExportType:
        building = row.status == stored.ExportStatus.BUILDING
        return cls(
            row=row,
            id=strawberry.ID(ids.encode("DataExport", row.public_id)),
            status=stored.ExportStatus.PENDING if building else row.status,
            ready_at=as_utc(row.ready_at),
            expires_at=as_utc(row.expires_at),
            size_bytes=BigInt(row.size_bytes) if row.size_bytes is not None else None,
        )

    @strawberry.field(
        description=(
            "A signed URL that downloads the zip, good for a few minutes; null unless it is "
            "ready and its window is open."
        )
    )
    def download_url(self, info: Info) -> str | None:
        if not access.export_downloadable(self.row, info.context.now()):
            return None
        return download_link(info, signing.EXPORT, self.row.id)
