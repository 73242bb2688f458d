"""Training datasets: uploads, visibility, deletion, downloads, listings.

Service functions take the :class:`~storage.runtime.Runtime` first and keyword
arguments after it; they find objects only through :mod:`storage.lookups` and tell
the scheduler themselves about every change to a dataset.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from storage import access, events, lookups, retention
from storage.archives import ArchiveRejected, check_archive
from storage.catalog import lock_draft
from storage.errors import InvalidState, ServiceError
from storage.models import (
    DatasetStatus,
    DeletionReason,
    EventKind,
    ModelVersion,
    TrainingDataset,
    User,
    VersionStatus,
    Visibility,
)
from storage.pages import Page, soonest_expiry_first
from storage.runtime import Runtime

FILENAME_MAX = 200
UPLOAD_HEARTBEAT = 30  # seconds between refreshes of an upload's claim while bytes arrive
LIVE = retention.LIVE


class UploadRejected(ServiceError):
    """An upload ``PUT`` refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class UploadRequest:
    """What the owner declares before sending a dataset's bytes."""

    filename: str
    size_bytes: int
    visibility: Visibility
    owns_rights: bool | None


def clean_filename(raw: str) -> str:
    """A display name: last path component, no control characters, bounded length.

    It is only ever shown; blob keys are generated and never derived from it.
    """
    name = re.split(r"[\\/]", raw)[-1]
    name = "".join(
        c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C"
    )
    name = name.strip().strip(".").strip()
    if not name:
        raise ServiceError("Filename must not be empty.", field="filename", code="INVALID_FILENAME")
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: FILENAME_MAX - len(ext) - 1] + dot + ext)
            if dot and len(ext) < 16
            else name[:FILENAME_MAX]
        )
    return name


def _require_rights(visibility: Visibility, owns_rights: bool | None) -> None:
    if visibility == Visibility.PUBLIC and owns_rights is not True:
        raise ServiceError(
            "To share a dataset publicly, confirm that you hold the rights to share it "
            "(ownsRights: true).",
            field="ownsRights",
            code="RIGHTS_NOT_CONFIRMED",
        )


def _bytes(count: int) -> str:
    """``1,000 bytes``; past a KiB also in binary units: ``53,687,091,200 bytes (50 GiB)``."""
    text = f"{count:,} byte{'' if count == 1 else 's'}"
    if count < 1024:
        return text
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{text} ({value:.3g} {units[0]})"


async def _check_quota(rt: Runtime, owner_id: int, *, replacing_version: int, size: int) -> None:
    """Refuse a new dataset that would take the owner past a quota.

    The quotas (number of datasets, total bytes) count every dataset that is not
    ``DELETED``; the version's own dataset is left out, since a new upload either
    replaces it (still pending) or is refused (``DATASET_EXISTS``).
    """
    limits = rt.settings.limits
    usage = (
        await TrainingDataset.filter(owner_id=owner_id)
        .exclude(status=DatasetStatus.DELETED)
        .exclude(version_id=replacing_version)
        .annotate(count=Count("id"), used=Sum("size_bytes"))
        .values("count", "used")
    )
    count = int(usage[0]["count"] or 0) if usage else 0
    used = int(usage[0]["used"] or 0) if usage else 0
    if count + 1 > limits.max_datasets_per_user:
        raise ServiceError(
            f"You have {count:,} dataset{'' if count == 1 else 's'}; an account may keep at "
            f"most {limits.max_datasets_per_user:,}. Delete one to make room.",
            code="QUOTA_DATASETS",
        )
    if used + size > limits.max_bytes_per_user:
        left = max(limits.max_bytes_per_user - used, 0)
        raise ServiceError(
            f"Your datasets use {_bytes(used)} of your {_bytes(limits.max_bytes_per_user)}; "
            f"{_bytes(size)} more would not fit ({_bytes(left)} left).",
            field="sizeBytes",
            code="QUOTA_BYTES",
        )


async def start_upload(
    rt: Runtime, viewer: int | None, *, version_id: int | None, request: UploadRequest
) -> tuple[TrainingDataset, str]:
    """Record a dataset awaiting its bytes; return it and the single-use upload nonce."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    if version.status != VersionStatus.DRAFT:
        await lock_draft(version.id)  # raises VERSION_PUBLISHED
    size = request.size_bytes
    if size <= 0:
        raise ServiceError("sizeBytes must be positive.", field="sizeBytes", code="INVALID_SIZE")
    max_bytes = rt.settings.max_dataset_bytes
    if size > max_bytes:
        raise ServiceError(
            f"Datasets may be at most {max_bytes} bytes.", field="sizeBytes", code="TOO_LARGE"
        )
    _require_rights(request.visibility, request.owns_rights)
    name = clean_filename(request.filename)
    nonce = secrets.token_urlsafe(24)
    now = rt.clock.now()
    fields: dict[str, Any] = {
        "filename": name,
        "size_bytes": size,
        "visibility": request.visibility,
        "status": DatasetStatus.PENDING_UPLOAD,
        "upload_nonce": nonce,
        "upload_expires_at": now + timedelta(seconds=rt.settings.upload_url_lifetime),
        "sha256": None,
        "blob_key": None,
        "expires_at": None,
    }
    async with in_transaction():
        await lock_draft(version.id)  # checked again: a publish or delete may have won
        # One start at a time per owner (SQLite transactions are serialised anyway).
        await User.select_for_update().filter(id=version.owner_id).first()
        await _check_quota(rt, version.owner_id, replacing_version=version.id, size=size)
        existing = await TrainingDataset.get_or_none(version_id=version.id)
        if existing is not None and existing.status == DatasetStatus.DELETED:
            await existing.delete()  # a draft's tombstone makes room for a new upload
            existing = None
        if existing is None:
            dataset = await TrainingDataset.create(
                version_id=version.id, owner_id=version.owner_id, created_at=now, **fields
            )
        else:
            # Only a dataset still waiting for its bytes may be restarted.
            restarted = await TrainingDataset.filter(
                id=existing.id, status=DatasetStatus.PENDING_UPLOAD
            ).update(**fields)
            if not restarted:
                raise InvalidState(
                    "This version already has a training dataset: delete it first.",
                    field="versionId",
                    code="DATASET_EXISTS",
                )
            dataset = await TrainingDataset.get(id=existing.id)
        await events.record(dataset.id, EventKind.UPLOAD_STARTED, now, name)
    return dataset, nonce


async def receive_upload(
    rt: Runtime, *, dataset_id: int, nonce: str, chunks: AsyncIterator[bytes]
) -> TrainingDataset:
    """Take the bytes for a pending dataset through its single-use nonce.

    Streams to a temporary blob, hashing on the way; stops reading at the first
    chunk that passes the declared size; only a complete zip archive of exactly the
    declared size that passes :func:`storage.archives.check_archive` is moved into
    place and marks the dataset ``AVAILABLE``. While bytes keep arriving the claim
    is refreshed, so only a stalled upload counts as abandoned.
    """
    clock, blobs = rt.clock, rt.blobs
    now = clock.now()
    claimed = await TrainingDataset.filter(
        id=dataset_id,
        upload_nonce=nonce,
        status=DatasetStatus.PENDING_UPLOAD,
        upload_expires_at__gt=now,
    ).update(status=DatasetStatus.UPLOADING, upload_nonce=None, claimed_at=now)
    if not claimed:
        row = await retention.dataset_by_id(dataset_id)
        if row is None or row.status in (DatasetStatus.DELETING, DatasetStatus.DELETED):
            raise UploadRejected("No such upload.", code="NOT_FOUND", status=404)
        if row.upload_nonce == nonce:
            raise UploadRejected(
                "This upload URL has expired.", code="UPLOAD_URL_EXPIRED", status=410
            )
        raise UploadRejected(
            "This upload URL has already been used.", code="UPLOAD_URL_USED", status=410
        )
    dataset = await TrainingDataset.get(id=dataset_id)
    writer = blobs.writer()
    last_beat = now
    try:
        async for chunk in chunks:
            if writer.size + len(chunk) > dataset.size_bytes:
                raise UploadRejected(
                    f"The body is longer than the declared {dataset.size_bytes} bytes.",
                    code="SIZE_MISMATCH",
                    status=413,
                )
            await writer.write(chunk)
            if (clock.now() - last_beat).total_seconds() >= UPLOAD_HEARTBEAT:
                last_beat = clock.now()
                await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.UPLOADING).update(
                    claimed_at=last_beat
                )
        if writer.size != dataset.size_bytes:
            raise UploadRejected(
                f"The body has {writer.size} bytes, not the declared {dataset.size_bytes}.",
                code="SIZE_MISMATCH",
                status=400,
            )
        await writer.seal()
        try:
            await asyncio.to_thread(
                check_archive, writer.temp_path, max_ratio=rt.settings.limits.zip_max_ratio
            )
        except ArchiveRejected as exc:
            raise UploadRejected(exc.message, code=exc.code, status=exc.status) from None
        key = await writer.commit()
    except BaseException:
        await writer.abort()
        await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.UPLOADING).update(
            status=DatasetStatus.PENDING_UPLOAD, claimed_at=None
        )
        raise
    now = clock.now()
    finished = await TrainingDataset.filter(id=dataset_id, status=DatasetStatus.UPLOADING).update(
        status=DatasetStatus.AVAILABLE,
        blob_key=key,
        sha256=writer.hexdigest(),
        uploaded_at=now,
        claimed_at=None,
    )
    if not finished:  # deleted while the bytes were arriving
        await blobs.delete(key)
        raise UploadRejected("No such upload.", code="NOT_FOUND", status=404)
    await events.record(dataset_id, EventKind.UPLOADED, now, f"sha256 {writer.hexdigest()}")
    await rt.scheduler.dataset_changed(dataset_id)
    return await TrainingDataset.get(id=dataset_id)


async def set_visibility(
    rt: Runtime,
    viewer: int | None,
    *,
    dataset_id: int | None,
    visibility: Visibility,
    owns_rights: bool | None,
) -> TrainingDataset:
    """Make a dataset public (clearing its window) or private (a published version's
    dataset then gets a full window from now: a window never shortens into the past)."""
    dataset = await lookups.owned(lookups.DATASET, viewer, dataset_id)
    now = rt.clock.now()
    if dataset.status not in LIVE or (dataset.expires_at is not None and dataset.expires_at <= now):
        raise InvalidState(
            "This dataset has been deleted.", field="datasetId", code="DATASET_DELETED"
        )
    _require_rights(visibility, owns_rights)
    if dataset.visibility == visibility:
        return dataset  # nothing changes; in particular a window is never extended
    # Read the version and change the dataset in one transaction (the version row
    # locked), so a publish at the same moment cannot leave a private dataset of a
    # published version without a window.
    async with in_transaction():
        version = await ModelVersion.select_for_update().get(id=dataset.version_id)
        window = rt.policy.window_for(
            private=visibility == Visibility.PRIVATE,
            published=version.status == VersionStatus.PUBLISHED,
            start=now,
        )
        still_live = Q(expires_at=None) | Q(expires_at__gt=now)
        changed = await TrainingDataset.filter(
            still_live, id=dataset.id, status__in=LIVE, visibility=dataset.visibility
        ).update(visibility=visibility, **window.fields())
        if not changed:
            raise InvalidState(
                "This dataset changed meanwhile; reload it and try again.",
                field="datasetId",
                code="CONFLICT",
            )
        kind = EventKind.MADE_PUBLIC if visibility == Visibility.PUBLIC else EventKind.MADE_PRIVATE
        await events.record(dataset.id, kind, now)
    await rt.scheduler.dataset_changed(dataset.id)
    return await TrainingDataset.get(id=dataset.id)


async def delete_dataset(
    rt: Runtime, viewer: int | None, *, dataset_id: int | None
) -> TrainingDataset:
    """The owner deletes a dataset now: bytes gone, tombstone left. Idempotent."""
    dataset = await lookups.owned(lookups.DATASET, viewer, dataset_id)
    now = rt.clock.now()
    if await retention.claim(dataset.id, reason=DeletionReason.OWNER_REQUEST, now=now):
        await retention.complete_deletion(rt, dataset.id, now=now)
    return await TrainingDataset.get(id=dataset.id)


# Downloads -------------------------------------------------------------------


async def downloadable(
    viewer: int | None, dataset_id: int, now: datetime
) -> TrainingDataset | None:
    """The dataset if this viewer may download it now, else None (never distinguished)."""
    dataset = await lookups.visible(lookups.DATASET, viewer, dataset_id)
    if dataset is None or not access.downloadable(dataset, now):
        return None
    return dataset


async def record_download(dataset_id: int, *, by_owner: bool, now: datetime) -> None:
    await events.record(
        dataset_id, EventKind.DOWNLOADED, now, "by the owner" if by_owner else "by someone else"
    )


# Batched loads and listings ----------------------------------------------------


async def datasets_by_version_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, TrainingDataset]:
    """Each version's dataset, where the viewer may see it: one query."""
    rows = TrainingDataset.filter(access.visible_datasets_q(viewer), version_id__in=list(ids))
    return {d.version_id: d for d in await rows}


_STATUS_FILTER = {
    DatasetStatus.PENDING_UPLOAD: (DatasetStatus.PENDING_UPLOAD, DatasetStatus.UPLOADING),
    DatasetStatus.DELETED: (DatasetStatus.DELETING, DatasetStatus.DELETED),
}


async def datasets_page(
    *,
    viewer: int | None,
    owner_id: int,
    status: DatasetStatus | None,
    first: int | None,
    after: str | None,
) -> Page[TrainingDataset]:
    """A user's datasets the viewer may see: live ones that will expire, soonest
    first; then the rest (no expiry, or deleted), newest first."""
    query = TrainingDataset.filter(access.visible_datasets_q(viewer), owner_id=owner_id)
    if status is not None:
        query = query.filter(status__in=_STATUS_FILTER.get(status, (status,)))
    return await soonest_expiry_first(query, live=LIVE, first=first, after=after)
