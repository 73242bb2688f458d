"""The header firewall: a weights file's training-data keys follow its version's dataset.

kohya's sd-scripts records the training data in the safetensors header
(``ss_tag_frequency``, ``ss_dataset_dirs``...). lorashelf keeps those keys (the
withheld keys, :attr:`RetentionPolicy.withheld_keys`) in the original header blob
only, never in the database. Who sees them is decided by
:func:`storage.access.sees_withheld_keys`; when they are erased, by
:meth:`RetentionPolicy.header_window` (stored as ``ModelFile.header_expires_at``,
kept current by :func:`refresh` whenever the version or its dataset changes). At that
instant :func:`erase` deletes the original header: the stored file becomes the public
one, and no byte of the withheld values is left.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from storage import access, events
from storage.blobs import read_all
from storage.models import (
    DatasetStatus,
    EventKind,
    ModelFile,
    ModelVersion,
    TrainingDataset,
)
from storage.runtime import Runtime
from storage.safetensors import metadata_of


async def refresh(rt: Runtime, version_id: int) -> None:
    """Recompute when each of a version's files loses its withheld keys, from the
    version and its dataset as they are now (the version row locked)."""
    changed: list[int] = []
    async with in_transaction():
        version = await ModelVersion.select_for_update().get_or_none(id=version_id)
        if version is None:
            return
        dataset = await TrainingDataset.get_or_none(version_id=version_id)
        files = await ModelFile.filter(
            version_id=version_id, status=DatasetStatus.AVAILABLE, header_erased_at=None
        )
        for file in files:
            when = rt.policy.header_window(file, version, dataset)
            if when != file.header_expires_at:
                await ModelFile.filter(id=file.id, header_erased_at=None).update(
                    header_expires_at=when
                )
                changed.append(file.id)
    for file_id in changed:
        await rt.scheduler.file_changed(file_id)


async def erase(rt: Runtime, file_id: int, *, now: datetime) -> bool:
    """Erase a file's withheld keys once their window has ended. Safe to rerun.

    Deletes the original header blob (access to it ended with the window, whatever
    runs when), then claims (``header_erased_at``), then makes the public header the
    file's only one. A crash between the steps is finished by the next run (the sweep
    finds the file by ``header_expires_at`` until the last step clears it).
    Returns whether this call finished the erasure.
    """
    due = await ModelFile.get_or_none(
        id=file_id, status=DatasetStatus.AVAILABLE, header_expires_at__lte=now
    )
    if due is None:
        return False
    if due.header_key is not None and due.header_key != due.public_header_key:
        # The bytes go first: nobody may read them any more (the window is over, and
        # nothing reopens it), and deleting needs no space on a full disk.
        await rt.blobs.delete(due.header_key)
    await ModelFile.filter(
        id=file_id,
        status=DatasetStatus.AVAILABLE,
        header_erased_at=None,
        header_expires_at__lte=now,
    ).update(header_erased_at=now)
    file = await ModelFile.get_or_none(
        id=file_id, status=DatasetStatus.AVAILABLE, header_erased_at__isnull=False
    )
    if file is None or file.header_expires_at is None:
        return False
    # The original header is gone: the public file is the only one left (``header_size``
    # keeps the original's length, which locates the data in ``size_bytes``).
    done = await ModelFile.filter(id=file_id, header_expires_at__isnull=False).update(
        header_key=None,
        sha256=file.public_sha256,
        auto_v2=file.public_auto_v2,
        header_expires_at=None,
    )
    if done:
        dataset = await TrainingDataset.get_or_none(version_id=file.version_id)
        if dataset is not None:
            names = ", ".join(file.withheld_keys)
            detail = f"{names} erased from {file.filename}"
            await events.record(dataset.id, EventKind.HEADER_ERASED, now, detail)
        await rt.scheduler.file_changed(file_id)
    return bool(done)


async def due(now: datetime, *, limit: int) -> list[int]:
    """Files whose withheld keys are due for erasure (claimed ones included)."""
    rows = (
        ModelFile.filter(status=DatasetStatus.AVAILABLE, header_expires_at__lte=now)
        .order_by("header_expires_at")
        .limit(limit)
        .only("id")
    )
    return [row.id for row in await rows]


async def metadata(
    rt: Runtime,
    file: ModelFile,
    *,
    viewer: int | None,
    dataset: TrainingDataset | None,
    now: datetime,
) -> list[tuple[str, str]]:
    """The header's ``__metadata__`` as this viewer may see it, in header order."""
    if access.sees_withheld_keys(viewer, file, dataset, now) and file.header_key is not None:
        header = await read_all(rt.blobs, file.header_key)
        return list(metadata_of(header).items())
    return list(file.public_metadata.items())
