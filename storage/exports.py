"""Data exports: one zip of everything a user owns, sealed like any blob.

``requestDataExport`` records a ``PENDING`` export (one at a time per account) and
tells the scheduler; a job (:func:`build`) claims it, writes the archive through the
sealed store (never a plaintext byte on disk), marks it ``READY`` for
``LORASHELF_EXPORT_RETENTION`` and notifies the owner (the live subscription fires).
Its signed download link works for the owner alone until ``expires_at``; then
:func:`shred` destroys its key and deletes its bytes, like a private dataset's.

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
import logging
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from storage import changes
from storage.blobs.base import BlobWriter, read_parts
from storage.crypto import keystore, receipts
from storage.db.enums import DatasetStatus, ExportStatus, NotificationKind
from storage.db.global_ids import encode
from storage.db.models import (
    DataExport,
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
from storage.db.pages import Page, newest_first
from storage.files import parts as file_parts
from storage.privacy import access, lookups
from storage.runtime import Runtime
from storage.system.claim_holder import holder

log = logging.getLogger("lorashelf.exports")

ROOT = "lorashelf-export"
LEASE = 120  # seconds a build's claim lasts without a heartbeat before another takes it


async def request_export(rt: Runtime, viewer: int | None) -> DataExport:
    """Ask for an export of everything the viewer owns; one already on its way is
    returned instead of a second."""
    owner = lookups.require_viewer(viewer)
    waiting = await DataExport.filter(
        owner_id=owner, status__in=(ExportStatus.PENDING, ExportStatus.BUILDING)
    ).first()
    if waiting is not None:
        return waiting
    now = rt.clock.now()
    async with changes.transaction(now, public=False):  # the owner's alone
        export = await DataExport.create(
            owner_id=owner, status=ExportStatus.PENDING, created_at=now
        )
    # the sweep builds a pending export the scheduler was not told of
    await changes.after_commit("scheduling an export", rt.scheduler.export_changed(export.id))
    return export


async def exports_page(
    viewer: int | None, *, owner_id: int, first: int | None, after: str | None
) -> Page[DataExport]:
    """A user's exports as this viewer may see them (the owner only), newest first."""
    rows = DataExport.filter(access.visible_exports_q(viewer), owner_id=owner_id)
    return await newest_first(rows, tag="exports", first=first, after=after)


async def visible(viewer: int | None, export_id: int) -> DataExport | None:
    """An export if this viewer may see it (its owner), else None."""
    return await DataExport.filter(access.visible_exports_q(viewer), id=export_id).first()


# Building ---------------------------------------------------------------------------


async def _claim(export_id: int, now: datetime) -> DataExport | None:
    stale = now - timedelta(seconds=LEASE)
    mine = {"status": ExportStatus.BUILDING, "claimed_at": now, "claimed_by": holder()}
    claimed = await DataExport.filter(id=export_id, status=ExportStatus.PENDING).update(**mine)
    if not claimed:
        claimed = await DataExport.filter(
            id=export_id, status=ExportStatus.BUILDING, claimed_at__lte=stale
        ).update(**mine)
    return await DataExport.get_or_none(id=export_id) if claimed else None


async def build(rt: Runtime, export_id: int) -> bool:
    """Build a pending export (or one whose builder died); whether this call did."""
    export = await _claim(export_id, rt.clock.now())
    if export is None:
        return False
    writer = rt.blobs.writer()
    try:
        archive = _Archive(writer)
        await _write(rt, archive, export.owner_id)
        await archive.close()
        key = await writer.commit()
    except BaseException:
        await writer.abort()
        await DataExport.filter(id=export_id, status=ExportStatus.BUILDING).update(
            status=ExportStatus.PENDING, claimed_at=None, claimed_by=None
        )
        raise
    now = rt.clock.now()
    expires = now + timedelta(seconds=rt.settings.export_retention)
    done = await DataExport.filter(id=export_id, status=ExportStatus.BUILDING).update(
        status=ExportStatus.READY,
        blob_key=key,
        size_bytes=writer.size,
        ready_at=now,
        expires_at=expires,
        claimed_at=None,
        claimed_by=None,
    )
    if not done:  # the account went meanwhile
        await rt.blobs.delete(key)
        return False
    notice = await Notification.create(
        user_id=export.owner_id,
        kind=NotificationKind.EXPORT_READY,
        offset_seconds=0,
        window_end=expires,
        message=(
            f"Your data export is ready ({writer.size:,} bytes). Download it from your "
            f"account page before {expires:%Y-%m-%d %H:%M} UTC; it is deleted then."
        ),
        created_at=now,
    )
    await rt.deliver(notice)
    await rt.scheduler.export_changed(export_id)
    log.info("data export %s ready", export_id)
    return True


class _Archive:
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


async def _write(rt: Runtime, archive: _Archive, owner_id: int) -> None:
    now = rt.clock.now()
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
        parts = file_parts(f, original=original)
        size = sum(s for _, s in parts)
        name = f"files/{encode('ModelFile', f.public_id)}/{f.filename}"
        await archive.stream(name, size, read_parts(rt.blobs, parts, 0, size - 1))
    for d in datasets:
        if not access.downloadable(d, now) or d.blob_key is None:
            continue
        name = f"datasets/{encode('TrainingDataset', d.public_id)}/{d.filename}"
        await archive.stream(name, d.size_bytes, rt.blobs.read(d.blob_key))


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


# Shredding --------------------------------------------------------------------------


async def due(now: datetime, *, limit: int) -> list[int]:
    """Exports whose window has ended (their bytes still kept)."""
    rows = (
        DataExport.filter(status=ExportStatus.READY, expires_at__lte=now)
        .order_by("expires_at")
        .limit(limit)
    )
    return [row.id for row in await rows.only("id")]


async def waiting(now: datetime, *, older_than: int, limit: int) -> list[int]:
    """Exports asked for ``older_than`` seconds ago and not built (their job was lost,
    or their builder died)."""
    cutoff = now - timedelta(seconds=older_than)
    pending = DataExport.filter(status=ExportStatus.PENDING, created_at__lte=cutoff)
    stale = DataExport.filter(
        status=ExportStatus.BUILDING, claimed_at__lte=now - timedelta(seconds=LEASE)
    )
    found = [row.id for row in await pending.order_by("id").limit(limit).only("id")]
    found += [row.id for row in await stale.order_by("id").limit(limit).only("id")]
    return found[:limit]


async def shred(rt: Runtime, export_id: int) -> bool:
    """An export whose window ended: its key destroyed, then its bytes; whether this call
    did it. Safe to rerun."""
    now = rt.clock.now()
    export = await DataExport.get_or_none(
        id=export_id, status=ExportStatus.READY, expires_at__lte=now
    )
    if export is None or export.blob_key is None:
        return False
    if await keystore.destroy([export.blob_key]):
        await keystore.settle()
    await rt.blobs.remove_bytes(export.blob_key)
    done = await DataExport.filter(id=export_id, status=ExportStatus.READY).update(
        status=ExportStatus.EXPIRED, blob_key=None, shredded_at=now
    )
    if done:
        await rt.scheduler.export_changed(export_id)
    return bool(done)
