"""The header firewall: a weights file's training-data keys follow its version's dataset.

kohya's sd-scripts records the training data in the safetensors header
(``ss_tag_frequency``, ``ss_dataset_dirs``...). Those keys, and any listed in
``LORASHELF_PRIVATE_HEADER_KEYS``, are the *withheld keys*, declared here once
(:data:`TRAINING_DATA_KEYS`, :func:`withheld_keys`), and matched as people read them
(:func:`matcher`: Unicode-normalized, case-folded, trimmed; a key holding an invisible
character is withheld whatever it spells, see :mod:`storage.formats.safetensors.keys`).
lorashelf keeps their values, and everything derived from them, out of the database:
only in the original header blob and the owner's metadata blob. Who sees them is
decided by :func:`storage.privacy.access.sees_withheld_keys`; when they are erased, by
:meth:`RetentionPolicy.header_window` (stored as ``ModelFile.header_expires_at``, kept
current by :func:`refresh` whenever the version or its dataset changes). At that
instant :func:`erase` destroys both blobs' keys, then deletes their bytes: the stored
file becomes the public one, no readable byte of the withheld values is left, and the
owner gets a signed receipt (``ModelFile.headerErasureReceipt``).

The list applies to files already stored, not only to new uploads: at start, before
anything is served, :func:`settle_stored_files` re-splits every stored file whose public
header was made with another list (or other matching rules: :func:`fingerprint`), from
its original header while it exists: a new public header, its hashes and size, its
public metadata, the owner's copy of the metadata, the key's window from the policy. A
key taken off the list stays withheld from the files stored while it was on it: what an
owner was told is training data is never made public after the fact.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import cast

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from storage import exports, headers
from storage.blobs.base import put, read_all
from storage.config.settings import Settings
from storage.crypto import keystore, receipts
from storage.db.enums import DatasetStatus, EventKind
from storage.db.global_ids import encode
from storage.db.models import ModelFile, ModelFileMetadata, ModelVersion, TrainingDataset, User
from storage.formats.safetensors.header import PREFIX_SIZE, SafetensorsError
from storage.formats.safetensors.keys import KeyMatcher, normalize_key
from storage.retention import history
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.header_firewall")

TRAINING_DATA_KEYS: tuple[str, ...] = (
    "ss_tag_frequency",
    "ss_dataset_dirs",
    "ss_reg_dataset_dirs",
    "ss_datasets",
    "ss_bucket_info",
    "ss_num_train_images",
    "ss_num_reg_images",
    "ss_num_validation_images",
    "ss_num_batches_per_epoch",
    "ss_training_comment",
)
"""Metadata keys that are training data whatever the configuration: what kohya's
sd-scripts records about the training images (tags and their counts, folder names,
buckets, how many images, and the trainer's free-text comment on them)."""


def withheld_keys(settings: Settings) -> tuple[str, ...]:
    """The keys withheld from a weights file's public header: the training-data keys,
    then those ``LORASHELF_PRIVATE_HEADER_KEYS`` adds."""
    extra = tuple(k for k in settings.private_header_keys if k not in TRAINING_DATA_KEYS)
    return TRAINING_DATA_KEYS + extra


def matcher(settings: Settings) -> KeyMatcher:
    """Which metadata keys are withheld, as a file's keys are matched against them."""
    return KeyMatcher(withheld_keys(settings))


MATCHING_RULES = "nfkc-casefold-trim-invisible/1"  # change it when KeyMatcher's rules change


def fingerprint(settings: Settings) -> str:
    """The withheld list in force and the rules that match it, in 16 hex digits: stored
    with every file's public header, so a change to either is seen at the next start."""
    keys = sorted({normalize_key(key) for key in withheld_keys(settings)})
    return hashlib.sha256("\n".join([MATCHING_RULES, *keys]).encode()).hexdigest()[:16]


async def refresh(rt: Runtime, version_id: int) -> None:
    """Recompute when each of a version's files loses its withheld keys, from the
    version and its dataset as they are now (the version row locked); then tell the
    scheduler. For a change of its own transaction, a service calls :func:`recompute`
    in it and :func:`reschedule` after the commit instead."""
    async with in_transaction():
        changed = await recompute(rt, version_id)
    await reschedule(rt, changed)


async def recompute(rt: Runtime, version_id: int) -> list[int]:
    """Inside a transaction: :func:`refresh`'s writes; the files whose window moved."""
    changed: list[int] = []
    version = await ModelVersion.select_for_update().get_or_none(id=version_id)
    if version is None:
        return changed
    dataset = await TrainingDataset.get_or_none(version_id=version_id)
    files = await ModelFile.filter(
        version_id=version_id, status=DatasetStatus.AVAILABLE, header_erased_at=None
    )
    earlier: list[datetime] = []
    for file in files:
        when = rt.policy.header_window(file, version, dataset)
        if when != file.header_expires_at:
            await ModelFile.filter(id=file.id, header_erased_at=None).update(header_expires_at=when)
            changed.append(file.id)
            if when is not None and (
                file.header_expires_at is None or when < file.header_expires_at
            ):
                earlier.append(when)
    if earlier:  # an export holding a header whose window moved earlier must not outlive it
        now = rt.clock.now()
        await exports.withdraw([version.owner_id], now, until=max(now, min(earlier)))
    return changed


async def reschedule(rt: Runtime, file_ids: list[int]) -> None:
    """After the commit: plan the erasure of these files' withheld keys anew."""
    for file_id in file_ids:
        await rt.scheduler.file_changed(file_id)


async def erase(rt: Runtime, file_id: int, *, now: datetime) -> bool:
    """Erase a file's withheld keys once their window has ended. Safe to rerun.

    Destroys the data keys of the copies that hold the withheld values (the original
    header and the owner's metadata, in one transaction, recording the instant), deletes
    their bytes (every stored version; access to them ended with the window, whatever
    runs when), then claims (``header_erased_at``), then makes the public header the
    file's only one and signs the erasure's receipt. A crash between the steps is
    finished by the next run (the sweep finds the file by ``header_expires_at`` until
    the last step clears it). Returns whether this call finished the erasure.
    """
    due = await ModelFile.get_or_none(
        id=file_id, status=DatasetStatus.AVAILABLE, header_expires_at__lte=now
    )
    if due is None:
        return False
    copies = list(_withholding_copies(due).values())
    if copies:
        # The keys first, then the bytes: nobody may read them any more (the window is
        # over, and nothing reopens it), and neither needs space on a full disk.
        async with in_transaction():
            if await keystore.destroy(copies) == len(copies):
                # every copy was sealed (one stored before sealing has no key to destroy)
                await ModelFile.filter(id=file_id, header_key_destroyed_at=None).update(
                    header_key_destroyed_at=rt.clock.now()
                )
        await keystore.settle()
        for key in copies:
            await rt.blobs.remove_bytes(key)
    removed_at = rt.clock.now()
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
    receipt = await _receipt(rt, file, removed_at=removed_at)
    # The original header is gone: the public file is the only one left (``header_size``
    # keeps the original's length, which locates the data in ``size_bytes``).
    done = await ModelFile.filter(id=file_id, header_expires_at__isnull=False).update(
        header_key=None,
        owner_metadata_key=None,
        owner_metadata_size=None,
        sha256=file.public_sha256,
        auto_v2=file.public_auto_v2,
        header_expires_at=None,
        header_receipt_payload=receipt.payload,
        header_receipt_signature=receipt.signature,
        header_receipt_key_id=receipt.key_id,
    )
    if done:
        dataset = await TrainingDataset.get_or_none(version_id=file.version_id)
        if dataset is not None:
            names = ", ".join(file.withheld_keys)
            detail = f"{names} erased from {file.filename}"
            await history.record(dataset.id, EventKind.HEADER_ERASED, now, detail)
        await rt.scheduler.file_changed(file_id)
    return bool(done)


def _withholding_copies(file: ModelFile) -> dict[str, str]:
    """The file's stored copies that hold withheld values, while they exist: the name a
    receipt gives each, and its blob key (the original header is no such copy when it is
    also the public one: nothing is withheld)."""
    copies = {}
    if file.header_key is not None and file.header_key != file.public_header_key:
        copies["ORIGINAL_HEADER"] = file.header_key
    if file.owner_metadata_key is not None:
        copies["OWNER_METADATA"] = file.owner_metadata_key
    return copies


async def _receipt(rt: Runtime, file: ModelFile, *, removed_at: datetime) -> receipts.Receipt:
    """The signed receipt of a header erasure: which keys, from which file (as it was
    uploaded), which stored copies held them, when their window ended, when the copies'
    keys were destroyed, when the last copy went."""
    owner = await User.get(id=file.owner_id)
    payload = {
        "kind": "WEIGHTS_HEADER_KEYS_ERASED",
        "issuer": rt.settings.public_url or None,
        "owner": encode("User", owner.public_id),
        "file": {
            "id": encode("ModelFile", file.public_id),
            "filename": file.filename,
            "sha256": file.sha256,  # of the file as uploaded, withheld keys included
            "sizeBytes": file.size_bytes,
            "publicSha256": file.public_sha256,
            "erasedKeys": list(file.withheld_keys),
        },
        "erasedCopies": sorted(_withholding_copies(file)),
        "reason": "WINDOW_ENDED",
        "windowEndedAt": receipts.instant(file.header_expires_at),
        "keyDestroyedAt": receipts.instant(file.header_key_destroyed_at),
        "lastCopyRemovedAt": receipts.instant(removed_at),
        "sealed": file.header_key_destroyed_at is not None,
    }
    return await receipts.sign(rt.master, payload, now=rt.clock.now())


async def due(now: datetime, *, limit: int) -> list[int]:
    """Files whose withheld keys are due for erasure (claimed ones included)."""
    rows = (
        ModelFile.filter(status=DatasetStatus.AVAILABLE, header_expires_at__lte=now)
        .order_by("header_expires_at")
        .limit(limit)
        .only("id")
    )
    return [row.id for row in await rows]


# Files stored under another list ------------------------------------------------------

SETTLE_BATCH = 100


async def settle_stored_files(rt: Runtime) -> int:
    """Re-split every available file whose public header was made with another withheld
    list (or matching rules) than the one in force. Run at start, before anything is
    served; safe to run in several processes at once, and again after a crash. Returns
    how many files changed."""
    current = fingerprint(rt.settings)
    keys = withheld_keys(rt.settings)
    changed, last = 0, 0
    while True:
        rows = await (
            ModelFile.filter(status=DatasetStatus.AVAILABLE, id__gt=last)
            .filter(Q(withheld_list__isnull=True) | ~Q(withheld_list=current))
            .order_by("id")
            .limit(SETTLE_BATCH)
            .only("id")
        )
        if not rows:
            break
        for row in rows:
            changed += await _settle(rt, row.id, keys, current)
        last = rows[-1].id
    if changed:
        log.info("withheld newly listed header keys from %s stored files", changed)
    return changed


async def _settle(rt: Runtime, file_id: int, keys: tuple[str, ...], current: str) -> bool:
    """Bring one file's public header, public metadata and owner's copy in line with
    ``keys`` (plus the keys it already withholds). Whether its public header changed."""
    file = await ModelFile.get_or_none(id=file_id, status=DatasetStatus.AVAILABLE)
    if file is None or file.public_header_key is None or file.data_key is None:
        return False
    match = KeyMatcher([*keys, *file.withheld_keys])
    erased = file.header_key is None
    copy_missing = not erased and bool(file.withheld_keys) and file.owner_metadata_key is None
    if not copy_missing and not await _shows_withheld(file.id, match):
        await ModelFile.filter(id=file.id, withheld_list=file.withheld_list).update(
            withheld_list=current
        )
        return False
    # From the original header while it exists (the owner keeps every key until the
    # window ends), else from the public one (what was erased stays erased).
    source_key = file.public_header_key if file.header_key is None else file.header_key
    source = await read_all(rt.blobs, source_key)
    length = int.from_bytes(source[:PREFIX_SIZE], "little")
    text = memoryview(source)[PREFIX_SIZE : PREFIX_SIZE + length]
    try:  # the header as an earlier lorashelf may have stored it: JSON and metadata
        parts = await headers.split(rt, text, data_size=None, matcher=match, check_tensors=False)
    except SafetensorsError as error:  # unreadable now: tried again at the next start
        log.error("weights file %s: its stored header cannot be read (%s)", file.id, error)
        return False
    public_header = source if parts.public_header is None else parts.public_header
    old_public = source
    if file.public_header_key != source_key:
        old_public = await read_all(rt.blobs, file.public_header_key)
    changed = public_header != old_public
    made: list[str] = []
    try:
        update: dict[str, object] = {
            "withheld_keys": sorted({*file.withheld_keys, *parts.withheld}),
            "withheld_list": current,
        }
        if changed:
            update.update(await _public_columns(rt, file, public_header, erased=erased))
            made.append(str(update["public_header_key"]))
        if not erased and file.owner_metadata_key is None and parts.owner_metadata is not None:
            update["owner_metadata_key"] = await put(rt.blobs, cast(bytes, parts.owner_metadata))
            update["owner_metadata_size"] = len(parts.owner_metadata)
            made.append(str(update["owner_metadata_key"]))
        async with in_transaction():
            done = await ModelFile.filter(
                id=file.id,
                status=DatasetStatus.AVAILABLE,
                public_header_key=file.public_header_key,
                withheld_list=file.withheld_list,
            ).update(**update)
            if done:
                await headers.save_metadata(file.id, parts)
    except BaseException:
        for key in made:
            await rt.blobs.delete(key)
        raise
    if not done:  # another process did it first, or the file went meanwhile
        for key in made:
            await rt.blobs.delete(key)
        return False
    if changed and file.public_header_key != file.header_key:
        await rt.blobs.delete(file.public_header_key)  # nothing refers to it any more
    await refresh(rt, file.version_id)
    return changed


async def _shows_withheld(file_id: int, match: KeyMatcher) -> bool:
    """Whether the file's public metadata holds a key ``match`` withholds."""
    row = await ModelFileMetadata.get_or_none(file_id=file_id)
    public: dict[str, str] = json.loads(row.entries) if row is not None else {}
    return any(match.withholds(key) for key in public)


async def _public_columns(
    rt: Runtime, file: ModelFile, public_header: bytes | memoryview, *, erased: bool
) -> dict[str, object]:
    """A new public header stored, and the columns that describe the public file: its
    hashes (the data read through once) and size; the file's own hashes too once the
    original is erased (the public file is then the only one)."""
    assert file.data_key is not None
    digest = hashlib.sha256(public_header)
    async for chunk in rt.blobs.read(file.data_key):
        digest.update(chunk)
    public_sha256 = digest.hexdigest()
    columns: dict[str, object] = {
        "public_header_key": await put(rt.blobs, cast(bytes, public_header)),
        "public_header_size": len(public_header),
        "public_sha256": public_sha256,
        "public_auto_v2": public_sha256[:10],
    }
    if erased:
        columns.update(sha256=public_sha256, auto_v2=public_sha256[:10])
    return columns
