"""The header firewall: a weights file's training-data keys follow its version's dataset.

kohya's sd-scripts records the training data in the safetensors header
(``ss_tag_frequency``, ``ss_dataset_dirs``...). Those keys, and any listed in
``LORASHELF_PRIVATE_HEADER_KEYS``, are the *withheld keys*, declared here once
(:data:`TRAINING_DATA_KEYS`, :func:`withheld_keys`). lorashelf keeps them in the
original header blob only, never in the database. Who sees them is decided by
:func:`storage.privacy.access.sees_withheld_keys`; when they are erased, by
:meth:`RetentionPolicy.header_window` (stored as ``ModelFile.header_expires_at``,
kept current by :func:`refresh` whenever the version or its dataset changes). At that
instant :func:`erase` deletes the original header: the stored file becomes the public
one, and no byte of the withheld values is left.

The list applies to files already stored, not only to new uploads: at start, before
anything is served, :func:`withhold_listed_keys` withholds from every stored file the
keys listed since it was uploaded (a new public header, its hashes and size, the
key's window from the policy). A key taken off the list stays withheld from the files
stored while it was on it: what an owner was told is training data is never made
public after the fact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

from tortoise import connections
from tortoise.transactions import in_transaction

from storage.blobs.base import put, read_all
from storage.config.settings import Settings
from storage.db.enums import DatasetStatus, EventKind
from storage.db.models import ModelFile, ModelVersion, TrainingDataset
from storage.formats.safetensors.header import metadata_of, public_header_of
from storage.privacy import access
from storage.retention import history
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.header_firewall")

TRAINING_DATA_KEYS: tuple[str, ...] = (
    "ss_tag_frequency",
    "ss_dataset_dirs",
    "ss_reg_dataset_dirs",
    "ss_datasets",
    "ss_bucket_info",
)
"""Metadata keys that are training data whatever the configuration: what kohya's
sd-scripts records about the training images (tags and their counts, folder names,
buckets)."""


def withheld_keys(settings: Settings) -> tuple[str, ...]:
    """The keys withheld from a weights file's public header: the training-data keys,
    then those ``LORASHELF_PRIVATE_HEADER_KEYS`` adds."""
    extra = tuple(k for k in settings.private_header_keys if k not in TRAINING_DATA_KEYS)
    return TRAINING_DATA_KEYS + extra


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
            await history.record(dataset.id, EventKind.HEADER_ERASED, now, detail)
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


# A list that changed since files were stored ---------------------------------------


async def withhold_listed_keys(rt: Runtime) -> int:
    """Withhold the keys listed now from every stored file whose public header still
    shows one (listed since its upload). Run at start, before anything is served; safe
    to run in several processes at once. Returns how many files changed."""
    keys = withheld_keys(rt.settings)
    changed = 0
    for file_id in await _showing_any(keys):
        if await _withhold(rt, file_id, keys):
            changed += 1
    if changed:
        log.info("withheld newly listed header keys from %s stored files", changed)
    return changed


async def _showing_any(keys: Sequence[str]) -> list[int]:
    """Available files whose public metadata has one of ``keys``: one query (a scan of
    the weights files, in the database), the keys passed as parameters."""
    client = connections.get("default")
    status = DatasetStatus.AVAILABLE.value
    if client.capabilities.dialect == "sqlite":
        marks = ", ".join("?" for _ in keys)
        sql = (
            "SELECT id FROM model_files WHERE status = ? AND EXISTS (SELECT 1 FROM "
            f"json_each(model_files.public_metadata) AS entry WHERE entry.key IN ({marks}))"
        )
        _, rows = await client.execute_query(sql, [status, *keys])
    else:
        sql = (
            "SELECT id FROM model_files WHERE status = $1 AND EXISTS (SELECT 1 FROM "
            "json_object_keys(public_metadata) AS entry(key) WHERE entry.key = ANY($2))"
        )
        _, rows = await client.execute_query(sql, [status, list(keys)])
    return [int(row["id"]) for row in rows]


async def _withhold(rt: Runtime, file_id: int, keys: Sequence[str]) -> bool:
    """Give one file a public header without ``keys``: its bytes, hashes and size, its
    public metadata, its withheld keys (and their window). The original header, while
    it exists, keeps them for whoever may see them; once erased, they are gone."""
    file = await ModelFile.get_or_none(id=file_id, status=DatasetStatus.AVAILABLE)
    if file is None or file.public_header_key is None or file.data_key is None:
        return False
    newly = [key for key in file.public_metadata if key in keys]
    if not newly:
        return False
    old_key = file.public_header_key
    header = public_header_of(await read_all(rt.blobs, old_key), keys)
    digest = hashlib.sha256(header)
    async for chunk in rt.blobs.read(file.data_key):
        digest.update(chunk)
    public_sha256 = digest.hexdigest()
    new_key = await put(rt.blobs, header)
    columns: dict[str, object] = {
        "public_header_key": new_key,
        "public_header_size": len(header),
        "public_sha256": public_sha256,
        "public_auto_v2": public_sha256[:10],
        "public_metadata": {k: v for k, v in file.public_metadata.items() if k not in newly},
        "withheld_keys": sorted({*file.withheld_keys, *newly}),
    }
    if file.header_key is None:  # erased: the stored file is the public one, and only it
        columns.update(sha256=public_sha256, auto_v2=public_sha256[:10])
    updated = await ModelFile.filter(
        id=file_id, status=DatasetStatus.AVAILABLE, public_header_key=old_key
    ).update(**columns)
    if not updated:  # another process did it first, or the file went meanwhile
        await rt.blobs.delete(new_key)
        return False
    if old_key != file.header_key:  # the old public header: nothing refers to it any more
        await rt.blobs.delete(old_key)
    await refresh(rt, file.version_id)
    return True
