"""What every upload shares: the single-use claim, the heartbeat, the display name,
the per-user quota, and the refusal an upload ``PUT`` answers with.

A training dataset and a weights file are both uploaded in two steps: a mutation
records a ``PENDING_UPLOAD`` row with a single-use nonce (signed into the upload URL),
then one ``PUT`` claims that nonce (``PENDING_UPLOAD -> UPLOADING``, one conditional
update), streams the bytes, and marks the row ``AVAILABLE``. A refused or failed
``PUT`` leaves nothing: the bytes go, and the row with them (:func:`give_up`), and the
owner starts a new upload; a ``PUT`` that failed only because the database or the
object store was away (``TRY_AGAIN``) gives its claim back instead, so the same URL
works again. A row whose URL was never used is discarded by the sweep when it expires.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from tortoise.functions import Count, Sum
from tortoise.models import Model
from tortoise.transactions import in_transaction

from storage import changes
from storage.blobs.base import BlobWriter
from storage.config.settings import Settings
from storage.db.commit_outcome import CommitOutcomeUnknown
from storage.db.enums import DatasetStatus
from storage.db.models import ModelFile, ModelFileMetadata, TrainingDataset
from storage.errors import ServiceError, retryable
from storage.system.claim_holder import holder
from storage.system.clock import Clock
from storage.system.disk import StorageFull, is_full

log = logging.getLogger("lorashelf.uploads")

FILENAME_MAX = 200
HEARTBEAT = 10  # seconds between refreshes of an upload's claim while bytes arrive
STALE = 3 * HEARTBEAT  # an upload's claim not refreshed for this long is abandoned

U = TypeVar("U", TrainingDataset, ModelFile)


def staleness(settings: Settings) -> int:
    """Seconds after which an upload whose claim was not refreshed is abandoned: its
    body may take the grace period to start, then refreshes every few seconds."""
    return settings.limits.upload_grace + STALE


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


def check_size(size: int, *, limit: int, what: str) -> None:
    if size <= 0:
        raise ServiceError("sizeBytes must be positive.", field="sizeBytes", code="INVALID_SIZE")
    if size > limit:
        raise ServiceError(
            f"{what} may be at most {limit} bytes.", field="sizeBytes", code="TOO_LARGE"
        )


def describe_bytes(count: int) -> str:
    """``1,000 bytes``; past a KiB also in binary units: ``53,687,091,200 bytes (50 GiB)``."""
    text = f"{count:,} byte{'' if count == 1 else 's'}"
    if count < 1024:
        return text
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{text} ({value:.3g} {units[0]})"


async def _usage(model: type[Model], owner_id: int, *, version_id: int | None) -> tuple[int, int]:
    """(count, bytes) of the owner's rows that are not deleted, leaving out one
    version's rows when ``version_id`` is given."""
    query = model.filter(owner_id=owner_id).exclude(status=DatasetStatus.DELETED)
    if version_id is not None:
        query = query.exclude(version_id=version_id)
    rows = await query.annotate(count=Count("id"), used=Sum("size_bytes")).values("count", "used")
    return (int(rows[0]["count"] or 0), int(rows[0]["used"] or 0)) if rows else (0, 0)


async def dataset_usage(owner_id: int, *, replacing_version: int | None) -> tuple[int, int]:
    """How many datasets the owner keeps and their bytes; a version's own dataset is
    left out when a new upload replaces it (or is refused as DATASET_EXISTS)."""
    return await _usage(TrainingDataset, owner_id, version_id=replacing_version)


async def check_byte_quota(
    owner_id: int, *, adding: int, limit: int, replacing_dataset_of: int | None = None
) -> None:
    """Refuse ``adding`` bytes that would take the owner past their byte quota, counted
    over every dataset and weights file that is not deleted (pending ones included)."""
    _, datasets = await dataset_usage(owner_id, replacing_version=replacing_dataset_of)
    _, files = await _usage(ModelFile, owner_id, version_id=None)
    used = datasets + files
    if used + adding > limit:
        left = max(limit - used, 0)
        raise ServiceError(
            f"Your datasets and files use {describe_bytes(used)} of your "
            f"{describe_bytes(limit)}; {describe_bytes(adding)} more would not fit "
            f"({describe_bytes(left)} left).",
            field="sizeBytes",
            code="QUOTA_BYTES",
        )


async def claim(model: type[U], pk: int, nonce: str, now: datetime) -> U:
    """Take the single-use upload claim, or refuse as the ``PUT`` must answer."""
    claimed = await model.filter(
        id=pk, upload_nonce=nonce, status=DatasetStatus.PENDING_UPLOAD, upload_expires_at__gt=now
    ).update(status=DatasetStatus.UPLOADING, upload_nonce=None, claimed_at=now, claimed_by=holder())
    row = await model.get_or_none(id=pk)
    if claimed and row is not None:
        return row
    if row is None or row.status in (DatasetStatus.DELETING, DatasetStatus.DELETED):
        raise UploadRejected(
            "No such upload: it was deleted, or refused (a refused upload is not kept: "
            "start a new one).",
            code="NOT_FOUND",
            status=404,
        )
    if row.upload_nonce == nonce:
        raise UploadRejected("This upload URL has expired.", code="UPLOAD_URL_EXPIRED", status=410)
    raise UploadRejected(
        "This upload URL has already been used.", code="UPLOAD_URL_USED", status=410
    )


async def give_up(
    model: type[U],
    pk: int,
    *,
    nonce: str,
    error: BaseException,
    then: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """After a failed upload ``PUT``: release what it held, at once, so the owner never
    waits for the sweep. A failure a retry can cure (the database busy or away, the
    object store not answering: the ``PUT`` answers ``TRY_AGAIN``, "nothing was
    changed") gives the claim back, so the same URL works again; a refusal forgets the
    record (nothing is kept; the owner starts a new upload). Either way a new
    ``start...Upload`` works at once. ``then`` runs once the row was released.

    Never raises, so the refusal stays the answer. If the database does not take the
    release now (it is what failed), a task of this process retries it with a short
    back-off until it does (``storage.changes.keep_trying``): the row is released
    within moments of the database's return; past that task's patience, and if the
    process dies meanwhile, the sweep's staleness rule takes over."""
    retry = retryable(error) or isinstance(error, CommitOutcomeUnknown)  # if not committed

    async def release() -> None:
        if retry:
            released = await _give_back(model, pk, nonce)
        else:
            released = await forget(model, pk)
        if released and then is not None:
            await then()

    try:
        await release()
    except Exception:  # noqa: BLE001 - retried; the refusal is the answer
        log.warning("upload %s %s: not released now; retrying", model.__name__, pk)
        changes.keep_trying(f"releasing upload {model.__name__} {pk}", release)


async def _give_back(model: type[U], pk: int, nonce: str) -> bool:
    """The claim given back: the row waits for its bytes again, under the same nonce
    (the same URL works until it expires). What the upload recorded on the way (a weights
    file's metadata) goes with it, in one transaction."""
    async with in_transaction():
        claimed = model.filter(id=pk, status=DatasetStatus.UPLOADING, upload_nonce=None)
        given = await claimed.update(
            status=DatasetStatus.PENDING_UPLOAD,
            upload_nonce=nonce,
            claimed_at=None,
            claimed_by=None,
        )
        if given and model is ModelFile:
            await ModelFileMetadata.filter(file_id=pk).delete()
    return given > 0


async def forget(model: type[U], pk: int) -> bool:
    """After a refused upload: nothing is kept, the record included (its history and a
    weights file's metadata go with it); the refusal was the ``PUT``'s answer, and the
    owner starts again with a new upload. Only the claimed row goes (a row deleted or
    changed meanwhile is left alone)."""
    async with in_transaction():
        if model is ModelFile:
            claimed = await model.filter(id=pk, status=DatasetStatus.UPLOADING).exists()
            if claimed:
                await ModelFileMetadata.filter(file_id=pk).delete()
        deleted = await model.filter(id=pk, status=DatasetStatus.UPLOADING).delete()
    return deleted > 0


ROOM_EVERY = 8 * 1024 * 1024  # bytes between checks of the disk's free space


class Heartbeat:
    """Refreshes an upload's claim while bytes keep arriving, so that only a stalled
    upload counts as abandoned; and stops it (STORAGE_FULL) before the disk is full."""

    def __init__(self, model: type[U], pk: int, clock: Clock, room: Callable[[int], None]):
        self._model: type[Model] = model
        self._pk = pk
        self._clock = clock
        self._last = clock.now()
        self._room = room
        self._unchecked = 0

    async def beat(self, received: int = 0) -> None:
        self._unchecked += received
        if self._unchecked >= ROOM_EVERY:
            self._unchecked = 0
            try:
                self._room(ROOM_EVERY)
            except StorageFull:
                raise full() from None
        now = self._clock.now()
        if (now - self._last).total_seconds() >= HEARTBEAT:
            self._last = now
            await self._model.filter(id=self._pk, status=DatasetStatus.UPLOADING).update(
                claimed_at=now
            )


async def write(writer: BlobWriter, chunk: bytes) -> None:
    """Write a chunk of an upload; a full disk refuses the upload (507), nothing kept."""
    try:
        await writer.write(chunk)
    except OSError as exc:
        if is_full(exc):
            raise full() from None
        raise


def full() -> UploadRejected:
    return UploadRejected(StorageFull().message, code="STORAGE_FULL", status=507)


def too_long(declared: int) -> UploadRejected:
    return UploadRejected(
        f"The body is longer than the declared {declared} bytes.",
        code="SIZE_MISMATCH",
        status=413,
    )


def too_short(received: int, declared: int) -> UploadRejected:
    return UploadRejected(
        f"The body has {received} bytes, not the declared {declared}.",
        code="SIZE_MISMATCH",
        status=400,
    )
