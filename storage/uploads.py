"""What every upload shares: the single-use claim, the heartbeat, the display name,
the per-user quota, and the refusal an upload ``PUT`` answers with.

A training dataset and a weights file are both uploaded in two steps: a mutation
records a ``PENDING_UPLOAD`` row with a single-use nonce (signed into the upload URL),
then one ``PUT`` claims that nonce (``PENDING_UPLOAD -> UPLOADING``, one conditional
update), streams the bytes, and marks the row ``AVAILABLE``; a failure puts it back
to ``PENDING_UPLOAD`` so the owner can ask for a new URL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from tortoise.functions import Count, Sum
from tortoise.models import Model

from storage.blobs.base import BlobWriter
from storage.config.settings import Settings
from storage.db.enums import DatasetStatus
from storage.db.models import ModelFile, TrainingDataset
from storage.errors import ServiceError
from storage.system.claim_holder import holder
from storage.system.clock import Clock
from storage.system.disk import StorageFull, is_full

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
        raise UploadRejected("No such upload.", code="NOT_FOUND", status=404)
    if row.upload_nonce == nonce:
        raise UploadRejected("This upload URL has expired.", code="UPLOAD_URL_EXPIRED", status=410)
    raise UploadRejected(
        "This upload URL has already been used.", code="UPLOAD_URL_USED", status=410
    )


async def release(model: type[U], pk: int) -> None:
    """After a failed upload: pending again, so the owner can ask for a new URL."""
    await model.filter(id=pk, status=DatasetStatus.UPLOADING).update(
        status=DatasetStatus.PENDING_UPLOAD, claimed_at=None, claimed_by=None
    )


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
