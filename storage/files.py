"""Weights files: safetensors uploads validated while they stream, primary file,
deletion, downloads.

Only safetensors is accepted: a pickled checkpoint (``.ckpt``, ``.pt``, ``.bin``) is
code, refused by its name before any byte is sent and by its first bytes if renamed.
The upload is validated as it arrives (:mod:`storage.formats.safetensors`), never held
in memory beyond its header, and stored as three blobs (original header, public header,
tensor data): see :class:`storage.db.models.ModelFile` and
:mod:`storage.retention.header_firewall`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from storage import changes, headers, uploads
from storage.blobs import removals
from storage.blobs.base import BlobWriter
from storage.crypto import keystore
from storage.db import reads
from storage.db.enums import DatasetStatus, DeletionReason, VersionStatus
from storage.db.models import ModelFile, ModelFileMetadata, TrainingDataset
from storage.errors import InvalidState, ServiceError
from storage.formats.safetensors.header import SafetensorsError
from storage.formats.safetensors.stream import SafetensorsInfo, SafetensorsStream
from storage.privacy import access, lookups
from storage.retention import header_firewall
from storage.runtime import Runtime
from storage.system.claim_holder import holder
from storage.uploads import UploadRejected

MAX_FILES_PER_VERSION = 10  # live files; bounds ModelVersion.files
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
NOT_SAFETENSORS = (
    "Only safetensors files are accepted: pickled checkpoints (.ckpt, .pt, .bin) can run "
    "code when loaded. Convert the file to .safetensors first."
)


@dataclass(frozen=True)
class FileUploadRequest:
    filename: str
    size_bytes: int


async def start_file_upload(
    rt: Runtime, viewer: int | None, *, version_id: str | None, request: FileUploadRequest
) -> tuple[ModelFile, str]:
    """Record a weights file awaiting its bytes; return it and the single-use nonce."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    if version.status != VersionStatus.DRAFT:
        await lookups.locked_draft(version.id)  # raises VERSION_PUBLISHED
    uploads.check_size(
        request.size_bytes, limit=rt.settings.max_model_file_bytes, what="Weights files"
    )
    rt.check_room_for_an_upload()
    name = uploads.clean_filename(request.filename)
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise ServiceError(NOT_SAFETENSORS, field="filename", code="NOT_SAFETENSORS")
    now = rt.clock.now()
    nonce = secrets.token_urlsafe(24)
    async with changes.transaction(rt.clock.now(), public=False):  # a draft's: nobody else sees it
        await lookups.locked_draft(version.id)  # checked again: a publish or delete may have won
        live = await ModelFile.filter(version_id=version.id).exclude(
            status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED)
        )
        if len(live) >= MAX_FILES_PER_VERSION:
            raise ServiceError(
                f"A version may have at most {MAX_FILES_PER_VERSION} files; delete one first.",
                field="versionId",
                code="TOO_MANY_FILES",
            )
        await uploads.check_byte_quota(
            version.owner_id, adding=request.size_bytes, limit=rt.settings.limits.max_bytes_per_user
        )
        file = await ModelFile.create(
            version_id=version.id,
            owner_id=version.owner_id,
            filename=name,
            size_bytes=request.size_bytes,
            status=DatasetStatus.PENDING_UPLOAD,
            upload_nonce=nonce,
            upload_expires_at=now + timedelta(seconds=rt.settings.upload_url_lifetime),
            created_at=now,
        )
    return file, nonce


def _refusal(exc: SafetensorsError) -> UploadRejected:
    status = 415 if exc.code == "NOT_SAFETENSORS" else 422
    message = NOT_SAFETENSORS if exc.code == "NOT_SAFETENSORS" else exc.message
    return UploadRejected(message, code=exc.code, status=status)


@dataclass(frozen=True)
class StoredFile:
    """Where a weights file's bytes went: its header's blobs (as uploaded, public, the
    owner's metadata) and its tensor data."""

    header: headers.StoredHeader
    data_key: str

    def blob_keys(self) -> set[str]:
        header = self.header
        keys = {header.header_key, header.public_header_key, header.owner_metadata_key}
        return {key for key in (*keys, self.data_key) if key is not None}


async def receive_file_upload(
    rt: Runtime, *, file_id: int, nonce: str, chunks: AsyncIterator[bytes]
) -> ModelFile:
    """Take a weights file's bytes through its single-use nonce, validating the
    safetensors header as it arrives and hashing on the way. Nothing is kept unless
    the whole file is a valid safetensors file of exactly the declared size.

    Steps: claim the nonce; store the bytes (:func:`_store`); mark the file available
    with what its header says (:func:`_mark_available`); settle the version's primary
    file and its header windows. A refusal or failure before the last steps leaves
    nothing: neither bytes nor the record."""
    row = await uploads.claim(ModelFile, file_id, nonce, rt.clock.now())
    try:
        info, stored = await _store(rt, row, chunks)
    except BaseException as exc:
        # the metadata goes with the row (a refusal) or with the claim (a retryable failure)
        await uploads.give_up(ModelFile, file_id, nonce=nonce, error=exc)
        raise
    try:
        async with changes.transaction(rt.clock.now(), public=False):  # a draft's file
            await _mark_available(rt, row, info, stored)
            await _settle_primary(row.version_id)
            moved = await header_firewall.recompute(rt, row.version_id)
    except BaseException as exc:
        # Not recorded (deleted meanwhile, or the database refused): the bytes go (or
        # their removal is owed), and the claim is released at once.
        for key in stored.blob_keys():
            await removals.remove(rt.blobs, key, clock=rt.clock)
        await uploads.give_up(ModelFile, file_id, nonce=nonce, error=exc)
        raise
    await changes.after_commit("scheduling header erasures", header_firewall.reschedule(rt, moved))
    return await changes.reread(row)


async def _store(
    rt: Runtime, row: ModelFile, chunks: AsyncIterator[bytes]
) -> tuple[SafetensorsInfo, StoredFile]:
    """The header's blobs stored as soon as it is valid, the tensor data streamed into
    one blob after it; nothing kept if anything fails."""
    data = rt.blobs.writer()
    heartbeat = uploads.Heartbeat(ModelFile, row.id, rt.clock, rt.check_room)
    matcher = header_firewall.matcher(rt.settings)
    header = headers.HeaderUpload(rt, row.id, matcher=matcher, keepalive=heartbeat.beat)
    try:
        info = await _validated(row, chunks, data, header, heartbeat)
        data_key = await data.commit()
    except BaseException:
        await data.abort()
        await header.abort()
        raise
    assert header.stored is not None
    return info, StoredFile(header.stored, data_key)


async def _validated(
    row: ModelFile,
    chunks: AsyncIterator[bytes],
    data: BlobWriter,
    header: headers.HeaderUpload,
    heartbeat: uploads.Heartbeat,
) -> SafetensorsInfo:
    """The whole body, checked as it arrives: never past the declared size, the header
    valid (and stored, by ``header``) before a data byte is written to ``data``, the
    claim kept alive meanwhile.

    A body of another size than declared is refused as ``SIZE_MISMATCH`` before anything
    is said about its format, as for every upload: after a format error the rest of the
    body is still read (not kept, never past the declared size) to know its size."""
    stream = SafetensorsStream(
        declared_size=row.size_bytes, withheld_keys=header.matcher, buffer_header=False
    )
    received = 0
    refused: SafetensorsError | None = None
    async for chunk in chunks:
        if received + len(chunk) > row.size_bytes:
            raise uploads.too_long(row.size_bytes)
        if refused is None:
            before = stream.received
            try:
                await header.feed(stream, chunk)
            except SafetensorsError as exc:
                refused = exc
            else:
                parsed = stream.header
                if parsed is not None:
                    skip = max(0, parsed.data_offset - before)
                    if skip < len(chunk):
                        await uploads.write(data, chunk[skip:])
        received += len(chunk)
        await heartbeat.beat(len(chunk))
    if received != row.size_bytes:
        raise uploads.too_short(received, row.size_bytes)
    try:
        if refused is not None:
            raise refused
        return stream.finish()
    except SafetensorsError as exc:
        raise _refusal(exc) from None


async def _mark_available(
    rt: Runtime, row: ModelFile, info: SafetensorsInfo, stored: StoredFile
) -> None:
    """Record the bytes and what the header says, unless the file was deleted while they
    arrived (then they go, and the upload is refused as not found)."""
    finished = await ModelFile.filter(id=row.id, status=DatasetStatus.UPLOADING).update(
        status=DatasetStatus.AVAILABLE,
        header_key=stored.header.header_key,
        data_key=stored.data_key,
        header_size=info.data_offset,
        public_header_size=info.public_header_size,
        sha256=info.sha256,
        auto_v2=info.auto_v2,
        public_sha256=info.public_sha256,
        public_auto_v2=info.public_auto_v2,
        auto_v3=info.auto_v3,
        **headers.columns(
            info.parts, stored.header, fingerprint=header_firewall.fingerprint(rt.settings)
        ),
        uploaded_at=rt.clock.now(),
        claimed_at=None,
    )
    if not finished:  # deleted while the bytes were arriving (the caller drops them)
        await ModelFileMetadata.filter(file_id=row.id).delete()
        raise UploadRejected("No such upload.", code="NOT_FOUND", status=404)


async def _settle_primary(version_id: int, *, prefer: int | None = None) -> None:
    """Exactly one available file of a version is primary: ``prefer`` if given, else
    the current one, else the oldest."""
    async with in_transaction():
        files = await ModelFile.filter(
            version_id=version_id, status=DatasetStatus.AVAILABLE
        ).order_by("id")
        if not files:
            return
        current = [f.id for f in files if f.primary]
        chosen = prefer if prefer is not None else (current[0] if current else files[0].id)
        await (
            ModelFile.filter(version_id=version_id, primary=True)
            .exclude(id=chosen)
            .update(primary=False)
        )
        await ModelFile.filter(id=chosen).update(primary=True)


async def set_primary(rt: Runtime, viewer: int | None, *, file_id: str | None) -> ModelFile:
    """Make one of the owner's available files its version's primary file."""
    file = await lookups.owned(lookups.FILE, viewer, file_id)
    if file.status != DatasetStatus.AVAILABLE:
        raise InvalidState(
            "Only a file whose bytes have arrived can be the primary file.",
            field="fileId",
            code="FILE_NOT_AVAILABLE",
        )
    public = await lookups.seen_by_anybody(lookups.FILE, file.id)
    async with changes.transaction(rt.clock.now(), public=public):
        await _settle_primary(file.version_id, prefer=file.id)
    return await changes.reread(file)


# Deletion ----------------------------------------------------------------------


async def claim_files(version_ids: Iterable[int], *, now: datetime) -> list[int]:
    """Inside a transaction deleting versions: claim their live files for deletion."""
    ids = list(version_ids)
    rows = await ModelFile.filter(version_id__in=ids).exclude(
        status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED)
    )
    claimed = [f.id for f in rows]
    if claimed:
        await (
            ModelFile.filter(id__in=claimed)
            .exclude(status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED))
            .update(
                status=DatasetStatus.DELETING,
                deletion_reason=DeletionReason.MODEL_DELETED,
                claimed_at=now,
                claimed_by=holder(),
            )
        )
    return claimed


async def complete_file_deletion(rt: Runtime, file_id: int, *, now: datetime) -> bool:
    """Destroy a claimed file's keys, delete its bytes (every blob, every stored
    version), then leave a tombstone; a draft's file deleted by its owner leaves nothing
    (it was never public). Safe to rerun; returns whether this call finished it."""
    file = await ModelFile.get_or_none(id=file_id, status=DatasetStatus.DELETING)
    if file is None:
        return False
    keys = file.blob_keys()
    # the keys first (all at once), then every stored version of the bytes
    if await keystore.destroy(keys):
        await keystore.settle()
    for key in keys:
        await rt.blobs.remove_bytes(key)
    if file.deletion_reason == DeletionReason.OWNER_REQUEST:
        gone = await ModelFile.filter(id=file_id, status=DatasetStatus.DELETING).delete()
        return bool(gone)
    done = await ModelFile.filter(id=file_id, status=DatasetStatus.DELETING).update(
        status=DatasetStatus.DELETED,
        deleted_at=file.claimed_at or now,
        primary=False,
        header_key=None,
        public_header_key=None,
        owner_metadata_key=None,
        owner_metadata_size=None,
        data_key=None,
        upload_nonce=None,
        header_expires_at=None,
    )
    await ModelFileMetadata.filter(file_id=file_id).delete()
    if done:
        await rt.scheduler.file_changed(file_id)
    return bool(done)


async def delete_file(rt: Runtime, viewer: int | None, *, file_id: str | None) -> ModelFile:
    """The owner deletes a draft's file: bytes and record gone now (a draft's file was
    never public, so no tombstone is kept). Returns the file as it was deleted."""
    file = await lookups.owned(lookups.FILE, viewer, file_id)
    now = rt.clock.now()
    async with changes.transaction(rt.clock.now(), public=False):  # a draft's: nobody else sees it
        # a published version's files stay
        await lookups.locked_draft(file.version_id, field=lookups.FILE.field)
        await (
            ModelFile.filter(id=file.id)
            .exclude(status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED))
            .update(
                status=DatasetStatus.DELETING,
                deletion_reason=DeletionReason.OWNER_REQUEST,
                claimed_at=now,
                claimed_by=holder(),
            )
        )
        await _settle_primary(file.version_id)  # another available file, if any
    await changes.after_commit(
        "deleting a file's bytes", complete_file_deletion(rt, file.id, now=now)
    )
    file.status, file.deleted_at, file.primary = DatasetStatus.DELETED, now, False
    file.deletion_reason = DeletionReason.OWNER_REQUEST
    return file


# Reading -----------------------------------------------------------------------


async def files_by_version_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, list[ModelFile]]:
    """Each version's files the viewer may see, primary first then oldest first."""
    grouped: dict[int, list[ModelFile]] = {}
    for file in await _FILES_OF(viewer, list(ids)):
        grouped.setdefault(file.version_id, []).append(file)
    return grouped


_FILES_OF = reads.Read(
    ModelFile,
    lambda viewer, ids: ModelFile.filter(
        access.visible_files_q(viewer), version_id__in=ids
    ).order_by("-primary", "id"),
)


async def dataset_of(file: ModelFile, *, viewer: int | None) -> TrainingDataset | None:
    """The file's version's dataset, as this viewer may see it."""
    return await TrainingDataset.filter(
        access.visible_datasets_q(viewer), version_id=file.version_id
    ).first()
