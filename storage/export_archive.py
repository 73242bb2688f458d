"""The archive of a data export (:mod:`storage.exports`): everything a user owns, as one
zip written through a sealed blob writer as it is made.

The archive (``lorashelf-export/``):

- ``account.json``; ``models.json`` (models, versions, weights files with their
  metadata, datasets with their history and receipts); ``notifications.json``;
- ``receipts/``: every deletion and header-erasure receipt, one file each, as
  ``lorashelf verify-receipt`` reads them;
- ``files/<file id>/<filename>``: each weights file as its owner downloads it;
- ``datasets/<dataset id>/<filename>``: each dataset still in its window.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from storage.blobs.base import BlobWriter, read_parts
from storage.crypto import receipts
from storage.db.enums import DatasetStatus
from storage.db.global_ids import encode
from storage.db.models import (
    DatasetEvent,
    LoraModel,
    ModelFile,
    ModelFileMetadata,
    ModelTag,
    ModelVersion,
    Notification,
    TrainingDataset,
    User,
)
from storage.privacy import access
from storage.runtime import Runtime

ROOT = "lorashelf-export"


class Archive:
    """A zip written through a sealed blob writer as it is made (never seekable: entries
    carry data descriptors; sizes known ahead choose ZIP64 where needed)."""

    def __init__(self, writer: BlobWriter):
        self._writer = writer
        self._pending: list[bytes] = []
        self._written = 0
        self.zip = zipfile.ZipFile(
            self,  # type: ignore[call-overload]
            "w",
            zipfile.ZIP_DEFLATED,
            allowZip64=True,
        )

    # the file object zipfile writes to
    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def seek(self, *args: Any) -> int:
        raise OSError("not seekable")

    def flush(self) -> None:
        return None

    async def drain(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            await self._writer.write(data)

    async def json(self, name: str, value: Any) -> None:
        self.zip.writestr(f"{ROOT}/{name}", json.dumps(value, indent=2, ensure_ascii=False))
        await self.drain()

    async def stream(self, name: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        info = zipfile.ZipInfo(f"{ROOT}/{name}")
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = size
        with self.zip.open(info, "w", force_zip64=size >= 2**31) as entry:
            async for chunk in chunks:
                entry.write(chunk)
                await self.drain()
        await self.drain()

    async def close(self) -> None:
        self.zip.close()
        await self.drain()


def _receipt(payload: str | None, signature: str | None, key_id: str | None) -> Any:
    if payload is None or signature is None or key_id is None:
        return None
    return receipts.Receipt(payload, signature, key_id).as_json()


async def write(rt: Runtime, archive: Archive, owner_id: int) -> datetime | None:
    """Write the owner's archive; when the first window of what it holds ends (None:
    nothing it holds has one)."""
    now = rt.clock.now()
    ends: list[datetime] = []
    user = await User.get(id=owner_id)
    t = receipts.instant
    await archive.json(
        "account.json",
        {
            "id": encode("User", user.public_id),
            "username": user.username,
            "createdAt": t(user.created_at),
            "exportedAt": t(now),
        },
    )
    models = await LoraModel.filter(owner_id=owner_id).order_by("id")
    versions = await ModelVersion.filter(owner_id=owner_id).order_by("id")
    files = await ModelFile.filter(owner_id=owner_id).order_by("id")
    metadata = dict(
        await ModelFileMetadata.filter(file__owner_id=owner_id).values_list("file_id", "entries")
    )
    datasets = await TrainingDataset.filter(owner_id=owner_id).order_by("id")
    tags = await ModelTag.filter(model__owner_id=owner_id).order_by("model_id", "position")
    events = await DatasetEvent.filter(dataset__owner_id=owner_id).order_by("id")
    written: list[Any] = []
    for model in models:
        written.append(
            {
                "id": encode("Model", model.public_id),
                "name": model.name,
                "description": model.description,
                "type": model.type.value,
                "nsfw": model.nsfw,
                "tags": [tag.tag for tag in tags if tag.model_id == model.id],
                "createdAt": t(model.created_at),
                "publishedAt": t(model.published_at),
                "deletedAt": t(model.deleted_at),
                "downloadCount": model.download_count,
                "versions": [
                    _version(v, files, metadata, datasets, events)
                    for v in versions
                    if v.model_id == model.id
                ],
            }
        )
    await archive.json("models.json", written)
    notes = await Notification.filter(user_id=owner_id).order_by("id")
    await archive.json(
        "notifications.json",
        [
            {
                "id": encode("Notification", n.public_id),
                "kind": n.kind.value,
                "message": n.message,
                "createdAt": t(n.created_at),
                "readAt": t(n.read_at),
            }
            for n in notes
        ],
    )
    for d in datasets:
        found = _receipt(d.receipt_payload, d.receipt_signature, d.receipt_key_id)
        if found:
            await archive.json(
                f"receipts/dataset-{encode('TrainingDataset', d.public_id)}.json", found
            )
    for f in files:
        found = _receipt(
            f.header_receipt_payload, f.header_receipt_signature, f.header_receipt_key_id
        )
        if found:
            await archive.json(f"receipts/header-{encode('ModelFile', f.public_id)}.json", found)
    for f in files:
        if f.status != DatasetStatus.AVAILABLE or f.data_key is None:
            continue
        original = f.header_key is not None and access.sees_withheld_keys(owner_id, f, None, now)
        if original and f.header_expires_at is not None:
            ends.append(f.header_expires_at)
        parts = f.parts(original=original)
        size = sum(s for _, s in parts)
        name = f"files/{encode('ModelFile', f.public_id)}/{f.filename}"
        await archive.stream(name, size, read_parts(rt.blobs, parts, 0, size - 1))
    for d in datasets:
        if not access.downloadable(d, now) or d.blob_key is None:
            continue
        if d.expires_at is not None:
            ends.append(d.expires_at)
        name = f"datasets/{encode('TrainingDataset', d.public_id)}/{d.filename}"
        await archive.stream(name, d.size_bytes, rt.blobs.read(d.blob_key))
    return min(ends, default=None)


def _version(
    v: ModelVersion,
    files: list[ModelFile],
    metadata: dict[int, str],
    datasets: list[TrainingDataset],
    events: list[DatasetEvent],
) -> dict[str, Any]:
    t = receipts.instant
    dataset = next((d for d in datasets if d.version_id == v.id), None)
    return {
        "id": encode("ModelVersion", v.public_id),
        "name": v.name,
        "status": v.status.value,
        "baseModel": v.base_model.value,
        "trainedWords": list(v.trained_words),
        "createdAt": t(v.created_at),
        "publishedAt": t(v.published_at),
        "deletedAt": t(v.deleted_at),
        "downloadCount": v.download_count,
        "files": [
            {
                "id": encode("ModelFile", f.public_id),
                "filename": f.filename,
                "status": f.status.value,
                "sizeBytes": f.size_bytes,
                "sha256": f.sha256,
                "publicSha256": f.public_sha256,
                "autoV3": f.auto_v3,
                "primary": f.primary,
                "publicMetadata": json.loads(metadata.get(f.id, "{}")),
                "withheldKeys": list(f.withheld_keys),
                "headerExpiresAt": t(f.header_expires_at),
                "headerErasedAt": t(f.header_erased_at),
                "headerErasureReceipt": _receipt(
                    f.header_receipt_payload, f.header_receipt_signature, f.header_receipt_key_id
                ),
            }
            for f in files
            if f.version_id == v.id
        ],
        "trainingDataset": None
        if dataset is None
        else {
            "id": encode("TrainingDataset", dataset.public_id),
            "filename": dataset.filename,
            "sizeBytes": dataset.size_bytes,
            "sha256": dataset.sha256,
            "visibility": dataset.visibility.value,
            "status": dataset.status.value,
            "expiresAt": t(dataset.expires_at),
            "deletedAt": t(dataset.deleted_at),
            "deletionReason": dataset.deletion_reason.value if dataset.deletion_reason else None,
            "keyDestroyedAt": t(dataset.key_destroyed_at),
            "deletionReceipt": _receipt(
                dataset.receipt_payload, dataset.receipt_signature, dataset.receipt_key_id
            ),
            "events": [
                {"kind": e.kind.value, "at": t(e.at), "detail": e.detail}
                for e in events
                if e.dataset_id == dataset.id
            ],
        },
    }
