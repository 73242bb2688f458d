"""Training datasets: uploads, visibility, deletion, downloads."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import struct
import unicodedata
import zipfile
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from tortoise.expressions import Q
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from storage import access, events, retention
from storage.blobs import BlobStore
from storage.catalog import lock_draft, owned_version, require_viewer
from storage.clock import Clock
from storage.errors import InvalidState, NotFound, ServiceError
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
from storage.pages import Page, cursor_number, decode_position, page_size

FILENAME_MAX = 200
UPLOAD_HEARTBEAT = 30  # seconds between refreshes of an upload's claim while bytes arrive
LIVE = retention.LIVE
MAX_ZIP_ENTRIES = 100_000


class UploadRejected(ServiceError):
    """An upload ``PUT`` refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message, code=code)
        self.status = status


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


async def owned_dataset(viewer: int | None, dataset_id: int | None) -> TrainingDataset:
    """The viewer's own dataset, or NotFound exactly as for a missing id."""
    owner = require_viewer(viewer)
    dataset = None
    if dataset_id is not None:
        dataset = await TrainingDataset.get_or_none(id=dataset_id)
    if dataset is None or not access.can_manage(owner, dataset.owner_id):
        raise NotFound("No such training dataset.", field="datasetId")
    return dataset


def _bytes(count: int) -> str:
    """``1,000 bytes``; past a KiB also in binary units: ``53,687,091,200 bytes (50 GiB)``."""
    text = f"{count:,} byte{'' if count == 1 else 's'}"
    if count < 1024:
        return text
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{text} ({value:.3g} {units[0]})"


async def _check_quota(
    owner_id: int, *, replacing_version: int, size_bytes: int, max_datasets: int, max_bytes: int
) -> None:
    """Refuse a new dataset that would take the owner past a quota."""
    usage = (
        await TrainingDataset.filter(owner_id=owner_id)
        .exclude(status=DatasetStatus.DELETED)
        .exclude(version_id=replacing_version)
        .annotate(count=Count("id"), used=Sum("size_bytes"))
        .values("count", "used")
    )
    count = int(usage[0]["count"] or 0) if usage else 0
    used = int(usage[0]["used"] or 0) if usage else 0
    if count + 1 > max_datasets:
        raise ServiceError(
            f"You have {count:,} dataset{'' if count == 1 else 's'}; an account may keep at "
            f"most {max_datasets:,}. Delete one to make room.",
            code="QUOTA_DATASETS",
        )
    if used + size_bytes > max_bytes:
        raise ServiceError(
            f"Your datasets use {_bytes(used)} of your {_bytes(max_bytes)}; "
            f"{_bytes(size_bytes)} more would not fit ({_bytes(max(max_bytes - used, 0))} left).",
            field="sizeBytes",
            code="QUOTA_BYTES",
        )


async def start_upload(
    *,
    viewer: int | None,
    version_id: int | None,
    filename: str,
    size_bytes: int,
    visibility: Visibility,
    owns_rights: bool | None,
    now: datetime,
    max_bytes: int,
    url_lifetime: int,
    max_datasets_per_user: int,
    max_bytes_per_user: int,
) -> tuple[TrainingDataset, str]:
    """Record a dataset awaiting its bytes; return it and the single-use upload nonce.

    The owner's quotas (number of datasets, total bytes) count every dataset that is
    not ``DELETED``; the version's own dataset is left out, since a new upload either
    replaces it (still pending) or is refused (``DATASET_EXISTS``).
    """
    version = await owned_version(viewer, version_id)
    if version.status != VersionStatus.DRAFT:
        await lock_draft(version.id)  # raises VERSION_PUBLISHED
    if size_bytes <= 0:
        raise ServiceError("sizeBytes must be positive.", field="sizeBytes", code="INVALID_SIZE")
    if size_bytes > max_bytes:
        raise ServiceError(
            f"Datasets may be at most {max_bytes} bytes.", field="sizeBytes", code="TOO_LARGE"
        )
    _require_rights(visibility, owns_rights)
    name = clean_filename(filename)
    nonce = secrets.token_urlsafe(24)
    fields: dict[str, Any] = {
        "filename": name,
        "size_bytes": size_bytes,
        "visibility": visibility,
        "status": DatasetStatus.PENDING_UPLOAD,
        "upload_nonce": nonce,
        "upload_expires_at": now + timedelta(seconds=url_lifetime),
        "sha256": None,
        "blob_key": None,
        "expires_at": None,
    }
    async with in_transaction():
        await lock_draft(version.id)  # checked again: a publish or delete may have won
        # One start at a time per owner (SQLite transactions are serialised anyway).
        await User.select_for_update().filter(id=version.owner_id).first()
        await _check_quota(
            version.owner_id,
            replacing_version=version.id,
            size_bytes=size_bytes,
            max_datasets=max_datasets_per_user,
            max_bytes=max_bytes_per_user,
        )
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


# Zip records (APPNOTE 4.3): end of central directory, its zip64 locator and record,
# and a central directory file header.
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END_SIG = b"PK\x05\x06"
_LOCATOR_SIG = b"PK\x06\x07"
_END64_SIG = b"PK\x06\x06"
_CENTRAL_SIG = b"PK\x01\x02"


def _count_entries(handle: IO[bytes], limit: int) -> int:
    """How many entries the central directory holds, counted header by header and
    only up to ``limit + 1``, so that a hostile directory costs no memory.

    It finds the directory exactly as :mod:`zipfile` does; when it cannot (not a zip,
    damaged), it answers 0 and leaves the verdict to :mod:`zipfile`.
    """
    size = handle.seek(0, os.SEEK_END)
    tail_start = max(size - (1 << 16) - _END.size, 0)
    handle.seek(tail_start)
    tail = handle.read()
    if tail[-_END.size :].startswith(_END_SIG) and tail.endswith(b"\0\0"):
        at = len(tail) - _END.size  # no archive comment
    else:
        at = tail.rfind(_END_SIG)
    if at < 0 or len(tail) - at < _END.size:
        return 0
    end_at = tail_start + at
    (_, _, _, _, entries, directory_size, _, _) = _END.unpack_from(tail, at)
    directory_end = end_at
    if end_at >= _END64_LOCATOR.size + _END64.size:
        handle.seek(end_at - _END64_LOCATOR.size)
        if handle.read(4) == _LOCATOR_SIG:
            handle.seek(end_at - _END64_LOCATOR.size - _END64.size)
            record = handle.read(_END64.size)
            if record.startswith(_END64_SIG):
                fields = _END64.unpack(record)
                entries, directory_size = fields[7], fields[8]
                directory_end = end_at - _END64_LOCATOR.size - _END64.size
    if entries > limit:
        return int(entries)
    # The count in the end record may lie; zipfile walks the directory by its size.
    handle.seek(directory_end - directory_size if directory_end >= directory_size else 0)
    counted = walked = 0
    while walked < directory_size and counted <= limit:
        header = handle.read(_CENTRAL.size)
        if len(header) != _CENTRAL.size or not header.startswith(_CENTRAL_SIG):
            break
        name, extra, comment = struct.unpack_from("<3H", header, 28)
        handle.seek(name + extra + comment, os.SEEK_CUR)
        walked += _CENTRAL.size + name + extra + comment
        counted += 1
    return counted


def _unsafe_name(name: str) -> bool:
    """An absolute path, a drive letter or ``..`` anywhere: never allowed in an entry."""
    return name.startswith(("/", "\\")) or ":" in name or ".." in re.split(r"[\\/]", name)


def _check_zip(path: Path, *, max_ratio: int, max_entries: int = MAX_ZIP_ENTRIES) -> None:
    """Refuse what is not a sound zip archive, reading only its central directory.

    Nothing is decompressed: the entry count is bounded before :mod:`zipfile` builds
    its table; the names must be relative and stay inside the archive; the declared
    uncompressed total may be at most ``max_ratio`` times the archive's size (zip bombs,
    including overlapping entries, declare far more than they occupy).
    """
    not_a_zip = UploadRejected("The body is not a zip archive.", code="NOT_A_ZIP", status=415)
    try:
        with path.open("rb") as handle:
            archive_size = handle.seek(0, os.SEEK_END)
            entries = _count_entries(handle, max_entries)
            if entries > max_entries:
                raise UploadRejected(
                    f"The archive has more than {max_entries:,} entries.",
                    code="TOO_MANY_ENTRIES",
                    status=422,
                )
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, struct.error):
        raise not_a_zip from None
    if len(infos) > max_entries:  # the walk above and zipfile disagree: trust neither
        raise not_a_zip
    for info in infos:
        if _unsafe_name(info.filename) or _unsafe_name(info.orig_filename):
            raise UploadRejected(
                "The archive contains an unsafe path (absolute, a drive letter or '..').",
                code="UNSAFE_ARCHIVE",
                status=422,
            )
    expanded = sum(info.file_size for info in infos)
    if expanded > max_ratio * archive_size:
        raise UploadRejected(
            f"The archive would expand to {expanded:,} bytes, more than {max_ratio} times "
            f"its own {archive_size:,} bytes; it looks like a zip bomb.",
            code="ZIP_BOMB",
            status=422,
        )


async def receive_upload(
    *,
    dataset_id: int,
    nonce: str,
    chunks: AsyncIterator[bytes],
    clock: Clock,
    blobs: BlobStore,
    zip_max_ratio: int,
) -> TrainingDataset:
    """Take the bytes for a pending dataset through its single-use nonce.

    Streams to a temporary blob, hashing on the way; stops reading at the first
    chunk that passes the declared size; only a complete zip archive of exactly the
    declared size whose central directory passes :func:`_check_zip` (entry count,
    safe names, at most ``zip_max_ratio`` times its size uncompressed) is moved into
    place and marks the dataset ``AVAILABLE``. While bytes keep arriving the claim
    is refreshed, so only a stalled upload counts as abandoned.
    """
    now = clock.now()
    claimed = await TrainingDataset.filter(
        id=dataset_id,
        upload_nonce=nonce,
        status=DatasetStatus.PENDING_UPLOAD,
        upload_expires_at__gt=now,
    ).update(status=DatasetStatus.UPLOADING, upload_nonce=None, claimed_at=now)
    if not claimed:
        row = await TrainingDataset.get_or_none(id=dataset_id)
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
        await asyncio.to_thread(_check_zip, writer.temp_path, max_ratio=zip_max_ratio)
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
    return await TrainingDataset.get(id=dataset_id)


async def set_visibility(
    *,
    viewer: int | None,
    dataset_id: int | None,
    visibility: Visibility,
    owns_rights: bool | None,
    now: datetime,
    retention_seconds: int,
    reminders: Sequence[int],
) -> TrainingDataset:
    dataset = await owned_dataset(viewer, dataset_id)
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
        expires_at = next_reminder_at = None
        if visibility == Visibility.PRIVATE and version.status == VersionStatus.PUBLISHED:
            expires_at, next_reminder_at = retention.window(
                now, retention=retention_seconds, offsets=reminders
            )
        still_live = Q(expires_at=None) | Q(expires_at__gt=now)
        changed = await TrainingDataset.filter(
            still_live, id=dataset.id, status__in=LIVE, visibility=dataset.visibility
        ).update(visibility=visibility, expires_at=expires_at, next_reminder_at=next_reminder_at)
        if not changed:
            raise InvalidState(
                "This dataset changed meanwhile; reload it and try again.",
                field="datasetId",
                code="CONFLICT",
            )
        kind = EventKind.MADE_PUBLIC if visibility == Visibility.PUBLIC else EventKind.MADE_PRIVATE
        await events.record(dataset.id, kind, now)
    return await TrainingDataset.get(id=dataset.id)


async def delete_dataset(
    *, viewer: int | None, dataset_id: int | None, now: datetime, blobs: BlobStore
) -> TrainingDataset:
    """The owner deletes a dataset now: bytes gone, tombstone left. Idempotent."""
    dataset = await owned_dataset(viewer, dataset_id)
    if await retention.claim(dataset.id, reason=DeletionReason.OWNER_REQUEST, now=now):
        await retention.complete_deletion(dataset.id, now=now, blobs=blobs)
    return await TrainingDataset.get(id=dataset.id)


async def record_download(dataset_id: int, *, by_owner: bool, now: datetime) -> None:
    await events.record(
        dataset_id, EventKind.DOWNLOADED, now, "by the owner" if by_owner else "by someone else"
    )


# Batched loads and listings.


async def datasets_by_ids(ids: Iterable[int]) -> dict[int, TrainingDataset]:
    return {d.id: d for d in await TrainingDataset.filter(id__in=list(ids))}


async def datasets_by_version_ids(ids: Iterable[int]) -> dict[int, TrainingDataset]:
    return {d.version_id: d for d in await TrainingDataset.filter(version_id__in=list(ids))}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _expiry_position(dataset: TrainingDataset) -> str:
    expires = dataset.expires_at if dataset.status in LIVE else None
    return f"{(expires - EPOCH) // MICROSECOND if expires else '-'}.{dataset.id}"


async def datasets_page(
    *,
    viewer: int | None,
    owner_id: int,
    status: DatasetStatus | None,
    first: int | None,
    after: str | None,
) -> Page[TrainingDataset]:
    """A user's datasets the viewer may see: live ones that will expire, soonest
    first; then the rest (no expiry, or deleted), newest first. Keyset-paged on
    (expires_at, id) in at most two queries."""
    size = page_size(first)
    query = TrainingDataset.filter(access.visible_datasets_q(viewer), owner_id=owner_id)
    if status is not None:
        statuses = {
            DatasetStatus.PENDING_UPLOAD: (DatasetStatus.PENDING_UPLOAD, DatasetStatus.UPLOADING),
            DatasetStatus.DELETED: (DatasetStatus.DELETING, DatasetStatus.DELETED),
        }.get(status, (status,))
        query = query.filter(status__in=statuses)
    # Live datasets that will expire come first; tombstones and the rest follow.
    expiring = query.filter(expires_at__isnull=False, status__in=LIVE)
    past_expiring = False
    open_ended = query.filter(
        Q(expires_at__isnull=True) | Q(status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED))
    )
    if after is not None:
        micros, _, pk_text = decode_position(after).partition(".")
        pk = cursor_number(pk_text)
        if micros == "-":
            past_expiring = True
            open_ended = open_ended.filter(id__lt=pk)
        else:
            try:
                moment = EPOCH + cursor_number(micros) * MICROSECOND
            except OverflowError:
                raise ServiceError(
                    "Malformed cursor.", field="after", code="INVALID_CURSOR"
                ) from None
            expiring = expiring.filter(Q(expires_at__gt=moment) | Q(expires_at=moment, id__gt=pk))
    if size == 0:
        return Page([], False, _expiry_position)
    rows = (
        [] if past_expiring else list(await expiring.order_by("expires_at", "id").limit(size + 1))
    )
    if len(rows) <= size:
        rows += await open_ended.order_by("-id").limit(size + 1 - len(rows))
    return Page(rows[:size], len(rows) > size, _expiry_position)
