"""Training datasets: uploads, visibility, deletion, downloads, listings.

Service functions take the :class:`~storage.runtime.Runtime` first and keyword
arguments after it; they find objects only through :mod:`storage.privacy.lookups` and tell
the scheduler themselves about every change to a dataset.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q, Subquery

from storage import changes, uploads
from storage.blobs import removals
from storage.blobs.base import BlobWriter
from storage.db import reads
from storage.db.enums import DatasetStatus, DeletionReason, EventKind, VersionStatus, Visibility
from storage.db.models import ModelVersion, TrainingDataset, User
from storage.db.pages import Page, soonest_expiry_first
from storage.errors import InvalidState, ServiceError
from storage.formats.archives.check import check_archive
from storage.formats.archives.refusal import ArchiveRejected
from storage.privacy import access, lookups
from storage.retention import deletion, due, header_firewall, history
from storage.retention.policy import LIVE, NO_WINDOW
from storage.runtime import Runtime
from storage.uploads import UploadRejected

log = logging.getLogger("lorashelf.datasets")


@dataclass(frozen=True)
class UploadRequest:
    """What the owner declares before sending a dataset's bytes."""

    filename: str
    size_bytes: int
    visibility: Visibility
    owns_rights: bool | None


def _require_rights(visibility: Visibility, owns_rights: bool | None) -> None:
    if visibility == Visibility.PUBLIC and owns_rights is not True:
        raise ServiceError(
            "To share a dataset publicly, confirm that you hold the rights to share it "
            "(ownsRights: true).",
            field="ownsRights",
            code="RIGHTS_NOT_CONFIRMED",
        )


async def _check_quota(rt: Runtime, owner_id: int, *, replacing_version: int, size: int) -> None:
    """Refuse a new dataset that would take the owner past a quota: the number of
    datasets kept, and the bytes of datasets and weights files together."""
    limits = rt.settings.limits
    count, _ = await uploads.dataset_usage(owner_id, replacing_version=replacing_version)
    if count + 1 > limits.max_datasets_per_user:
        raise ServiceError(
            f"You have {count:,} dataset{'' if count == 1 else 's'}; an account may keep at "
            f"most {limits.max_datasets_per_user:,}. Delete one to make room.",
            code="QUOTA_DATASETS",
        )
    await uploads.check_byte_quota(
        owner_id,
        adding=size,
        limit=limits.max_bytes_per_user,
        replacing_dataset_of=replacing_version,
    )


async def start_upload(
    rt: Runtime, viewer: int | None, *, version_id: str | None, request: UploadRequest
) -> tuple[TrainingDataset, str]:
    """Record a dataset awaiting its bytes; return it and the single-use upload nonce."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    if version.status != VersionStatus.DRAFT:
        await lookups.locked_draft(version.id)  # raises VERSION_PUBLISHED
    size = request.size_bytes
    uploads.check_size(size, limit=rt.settings.max_dataset_bytes, what="Datasets")
    rt.check_room_for_an_upload()
    _require_rights(request.visibility, request.owns_rights)
    name = uploads.clean_filename(request.filename)
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
    async with changes.transaction(rt.clock.now(), public=False):  # a draft's: nobody else sees it
        await lookups.locked_draft(version.id)  # checked again: a publish or delete may have won
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
            # Only a dataset still waiting for its bytes may be restarted, or one whose
            # upload died mid-way (its claim stale, or its holder gone): at once.
            stale = uploads.staleness(rt.settings)
            restarted = 0
            if existing.status == DatasetStatus.PENDING_UPLOAD or due.abandoned(
                existing, now, older_than=stale
            ):
                restarted = await TrainingDataset.filter(
                    id=existing.id, status=existing.status, claimed_at=existing.claimed_at
                ).update(**fields, claimed_at=None, claimed_by=None)
            if not restarted:
                raise InvalidState(
                    "This version already has a training dataset: delete it first.",
                    field="versionId",
                    code="DATASET_EXISTS",
                )
            dataset = await TrainingDataset.get(id=existing.id)
        await history.record(dataset.id, EventKind.UPLOAD_STARTED, now, name)
    return dataset, nonce


async def receive_upload(
    rt: Runtime, *, dataset_id: int, nonce: str, chunks: AsyncIterator[bytes]
) -> TrainingDataset:
    """Take the bytes for a pending dataset through its single-use nonce.

    Streams to a temporary blob, hashing on the way; stops reading at the first
    chunk that passes the declared size; only a complete zip archive of exactly the
    declared size that passes :func:`storage.formats.archives.check_archive` is moved into
    place and marks the dataset ``AVAILABLE``. While bytes keep arriving the claim
    is refreshed, so only a stalled upload counts as abandoned.
    """
    clock, blobs = rt.clock, rt.blobs
    dataset = await uploads.claim(TrainingDataset, dataset_id, nonce, clock.now())
    writer = blobs.writer()
    heartbeat = uploads.Heartbeat(TrainingDataset, dataset_id, clock, rt.check_room)

    async def windows() -> None:
        await changes.after_commit(
            "header windows", header_firewall.refresh(rt, dataset.version_id)
        )

    try:
        async for chunk in chunks:
            if writer.size + len(chunk) > dataset.size_bytes:
                raise uploads.too_long(dataset.size_bytes)
            await uploads.write(writer, chunk)
            await heartbeat.beat(len(chunk))
        if writer.size != dataset.size_bytes:
            raise uploads.too_short(writer.size, dataset.size_bytes)
        await writer.seal()
        try:
            async with rt.archive_checks:  # one at a time: a worst case costs minutes of CPU
                await asyncio.to_thread(_check, writer, rt.settings.limits.zip_max_ratio)
        except ArchiveRejected as exc:
            raise UploadRejected(exc.message, code=exc.code, status=exc.status) from None
        key = await writer.commit()
    except BaseException as exc:
        await writer.abort()
        # a pending public dataset may have held the version's header windows open
        await uploads.give_up(TrainingDataset, dataset_id, nonce=nonce, error=exc, then=windows)
        raise
    now = clock.now()
    try:
        # Uploads go to drafts, which anonymous viewers never see: the generation moves
        # only if the dataset is seen once it is here (its version published meanwhile).
        async with changes.transaction(clock.now(), public=False) as change:
            finished = await TrainingDataset.filter(
                id=dataset_id, status=DatasetStatus.UPLOADING
            ).update(
                status=DatasetStatus.AVAILABLE,
                blob_key=key,
                sha256=writer.hexdigest(),
                uploaded_at=now,
                claimed_at=None,
            )
            if not finished:  # deleted while the bytes were arriving
                raise UploadRejected("No such upload.", code="NOT_FOUND", status=404)
            await history.record(
                dataset_id, EventKind.UPLOADED, now, f"sha256 {writer.hexdigest()}"
            )
            await _open_draft_window(rt, dataset_id, now=now)
            moved = await header_firewall.recompute(rt, dataset.version_id)
            change.public = await lookups.seen_by_anybody(lookups.DATASET, dataset_id)
    except BaseException as exc:
        # Not recorded (deleted meanwhile, or the database refused): the bytes go (or
        # their removal is owed), and the claim is released at once.
        await removals.remove(blobs, key, clock=clock)
        await uploads.give_up(TrainingDataset, dataset_id, nonce=nonce, error=exc, then=windows)
        raise
    await changes.after_commit("scheduling a dataset", rt.dataset_changed(dataset_id))
    await changes.after_commit("scheduling header erasures", header_firewall.reschedule(rt, moved))
    return await changes.reread(dataset)


def _check(writer: BlobWriter, max_ratio: int) -> None:
    """The archive check, on the spool's plaintext as it is decrypted (a worker thread)."""
    with writer.plaintext() as handle:
        check_archive(handle, max_ratio=max_ratio)


async def _open_draft_window(rt: Runtime, dataset_id: int, *, now: datetime) -> None:
    """A private dataset's bytes arrived while its version is a draft: it lives at most
    the draft lifetime from now (publishing opens the normal window instead)."""
    window = rt.policy.window_for(private=True, published=False, start=now)
    drafts = ModelVersion.filter(status=VersionStatus.DRAFT, deleted_at=None).values("id")
    await TrainingDataset.filter(
        id=dataset_id,
        status=DatasetStatus.AVAILABLE,
        visibility=Visibility.PRIVATE,
        expires_at=None,
        version_id__in=Subquery(drafts),
    ).update(**window.fields())


async def set_visibility(
    rt: Runtime,
    viewer: int | None,
    *,
    dataset_id: str | None,
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
    seen_before = await lookups.seen_by_anybody(lookups.DATASET, dataset.id)
    # Read the version and change the dataset in one transaction (the version row
    # locked), so a publish at the same moment cannot leave a private dataset of a
    # published version without a window.
    async with changes.transaction(rt.clock.now(), public=seen_before) as change:
        version = await ModelVersion.select_for_update().get(id=dataset.version_id)
        window = NO_WINDOW
        if dataset.status == DatasetStatus.AVAILABLE:  # pending: the window opens on upload
            window = rt.policy.window_for(
                private=visibility == Visibility.PRIVATE,
                published=version.status == VersionStatus.PUBLISHED,
                start=now,
            )
        still_live = Q(expires_at=None) | Q(expires_at__gt=now)
        changed = await TrainingDataset.filter(
            still_live, id=dataset.id, status=dataset.status, visibility=dataset.visibility
        ).update(visibility=visibility, **window.fields())
        if not changed:
            raise InvalidState(
                "This dataset changed meanwhile; reload it and try again.",
                field="datasetId",
                code="CONFLICT",
            )
        kind = EventKind.MADE_PUBLIC if visibility == Visibility.PUBLIC else EventKind.MADE_PRIVATE
        await history.record(dataset.id, kind, now)
        moved = await header_firewall.recompute(rt, dataset.version_id)
        # public if anonymous viewers saw it before or see it now
        change.public = change.public or await lookups.seen_by_anybody(lookups.DATASET, dataset.id)
    await changes.after_commit("scheduling a dataset", rt.dataset_changed(dataset.id))
    await changes.after_commit("scheduling header erasures", header_firewall.reschedule(rt, moved))
    return await changes.reread(dataset)


async def delete_dataset(
    rt: Runtime, viewer: int | None, *, dataset_id: str | None
) -> TrainingDataset:
    """The owner deletes a dataset now: bytes gone, tombstone left. Idempotent."""
    dataset = await lookups.owned(lookups.DATASET, viewer, dataset_id)
    now = rt.clock.now()
    public = await lookups.seen_by_anybody(lookups.DATASET, dataset.id)
    async with changes.transaction(rt.clock.now(), public=public):
        claimed = await deletion.claim(dataset.id, reason=DeletionReason.OWNER_REQUEST, now=now)
    if claimed:  # access ended with the claim; the sweep finishes what fails from here
        await changes.after_commit(
            "deleting a dataset", deletion.complete_deletion(rt, dataset.id, now=now)
        )
    return await changes.reread(dataset)


# Downloads -------------------------------------------------------------------


async def downloadable(
    rt: Runtime, viewer: int | None, dataset_id: int, now: datetime
) -> TrainingDataset | None:
    """The dataset if this viewer may download it now, else None (never distinguished).

    The first to see a window over claims its deletion there and then: from then on no
    process, whatever its clock says, can reopen access. The bytes and the tombstone
    follow in a task of their own (no answer waits on the object store); the sweep
    finishes what that task does not.
    """
    dataset = await lookups.visible(lookups.DATASET, viewer, dataset_id)
    if dataset is None:
        return None
    over = dataset.expires_at is not None and dataset.expires_at <= now
    if over and dataset.status == DatasetStatus.AVAILABLE:
        condition = deletion.expiry_condition(dataset.id, now)
        if await deletion.claim_deletion(condition, reason=DeletionReason.EXPIRED, now=now):
            changes.in_background(
                f"deleting expired dataset {dataset.id}",
                deletion.complete_deletion(rt, dataset.id, now=now),
            )
    if not access.downloadable(dataset, now):
        return None
    return dataset


async def record_download(dataset_id: int, *, by_owner: bool, address: str, now: datetime) -> None:
    """One history entry per download link. A link issued to the owner may have been
    passed on, so it is recorded as such, with the address it was used from (the owner's
    own data: it shows a leaked link); others' downloads (of a public dataset) are
    recorded without their address."""
    detail = f"through a link issued to you, from {address}" if by_owner else "by someone else"
    await history.record(dataset_id, EventKind.DOWNLOADED, now, detail)


# Batched loads and listings ----------------------------------------------------


async def datasets_by_version_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, TrainingDataset]:
    """Each version's dataset, where the viewer may see it: one query."""
    return {d.version_id: d for d in await _DATASETS_OF(viewer, list(ids))}


_DATASETS_OF = reads.Read(
    TrainingDataset,
    lambda viewer, ids: TrainingDataset.filter(
        access.visible_datasets_q(viewer), version_id__in=ids
    ),
)


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
