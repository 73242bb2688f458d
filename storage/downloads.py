"""Download links as they are used: what a link may serve right now, its first use, the
bytes it served, counting, forgetting.

A signed download URL (``storage.signing.DownloadGrant``) carries a random link id.

- :func:`allowed` is the one question every download asks, when it starts and again
  while it streams (graph/http/downloads.py): may this grant still have these bytes
  now? It is the privacy rule itself (``storage.privacy``: the lookups and
  ``downloadable``) plus the sign-in the link was minted for, so every end of access
  the rule knows (a window's end, deletion, a dataset made private, a version or model
  deleted, a sign-out, and whatever is added to the rule later) ends the streams too.
- The first request through a link is recorded once (for a dataset: one history entry
  per link, however many ranged requests it serves).
- A weights file's download counts once per link, when the distinct ranges the link
  has served cover the whole file (:func:`served`): two one-byte requests are not a
  download, a download resumed in pieces is one. The bytes recorded are those a
  stream actually sent, in one transaction after the last of them (a client that
  closes the connection cannot cut it in half).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from storage import accounts, changes, datasets, exports, files, signing
from storage.db.enums import DatasetStatus
from storage.db.models import (
    DataExport,
    DownloadLink,
    LoraModel,
    ModelFile,
    ModelVersion,
    TrainingDataset,
)
from storage.privacy import access, lookups
from storage.retention import header_firewall
from storage.runtime import Runtime
from storage.signing import DownloadGrant

MAX_SPANS = 64  # distinct spans a link remembers; past it, a new one that merges nothing is dropped


@dataclass(frozen=True)
class Allowed:
    """What a grant may download now: a dataset, a weights file in one variant (with
    ``dataset``, its version's dataset as the grant's viewer may see it), or a data
    export (its owner's)."""

    dataset: TrainingDataset | None = None
    file: ModelFile | None = None
    original: bool = False  # a file with its withheld header keys (the owner's bytes)
    export: DataExport | None = None

    @property
    def same_bytes_as(self) -> tuple[str, int, str | None, bool]:
        """What identifies the bytes served: an access that still allows the same ones
        lets a stream go on; anything else ends it."""
        if self.file is not None:
            return "file", self.file.id, self.file.data_key, self.original
        if self.export is not None:
            return "export", self.export.id, self.export.blob_key, False
        assert self.dataset is not None
        return "dataset", self.dataset.id, self.dataset.blob_key, False


async def allowed(rt: Runtime, grant: DownloadGrant, now: datetime) -> Allowed | None:
    """What this grant may download at ``now`` (None: nothing, never distinguished from
    a link that never was): its sign-in alive, and the privacy rule's answer for its
    viewer. The first to see a window over deletes there and then (as every path does)."""
    if grant.session is not None and not await accounts.session_alive(grant.session, now=now):
        return None  # minted for a sign-in that has ended (log-out, password change)
    if grant.kind == signing.DATASET:
        dataset = await datasets.downloadable(rt, grant.viewer, grant.object_id, now)
        if dataset is None or dataset.blob_key is None or dataset.sha256 is None:
            return None
        return Allowed(dataset=dataset)
    if grant.kind == signing.EXPORT:
        export = await exports.visible(grant.viewer, grant.object_id)
        if export is None or export.blob_key is None or not access.export_downloadable(export, now):
            return None
        return Allowed(export=export)
    file = await lookups.visible(lookups.FILE, grant.viewer, grant.object_id)
    if file is None or file.status != DatasetStatus.AVAILABLE:
        return None
    if file.header_expires_at is not None and file.header_expires_at <= now:
        # the first to see the window over erases, in a task of its own (no answer waits
        # on the object store): the withheld keys are nobody's from the window's end on
        changes.in_background(
            f"erasing file {file.id}'s withheld keys", header_firewall.erase(rt, file.id, now=now)
        )
    dataset = await files.dataset_of(file, viewer=grant.viewer)
    original = access.sees_withheld_keys(grant.viewer, file, dataset, now)
    return Allowed(dataset=dataset, file=file, original=original)


async def still_allowed(rt: Runtime, grant: DownloadGrant, first: Allowed, now: datetime) -> bool:
    """Whether a stream that started with ``first`` may go on at ``now``: the grant is
    still allowed the very same bytes."""
    found = await allowed(rt, grant, now)
    return found is not None and found.same_bytes_as == first.same_bytes_as


async def first_use(link: str, *, kind: str, object_id: int, now: datetime) -> bool:
    """Note a request through a link; True when it is the link's first."""
    try:
        await DownloadLink.create(link=link, kind=kind, object_id=object_id, first_used_at=now)
    except IntegrityError:
        return False
    return True


def _merged(spans: list[list[int]], start: int, end: int) -> list[list[int]]:
    """``spans`` (sorted, disjoint, half-open) with ``[start, end)`` added."""
    result: list[list[int]] = []
    for a, b in sorted([*spans, [start, end]]):
        if result and a <= result[-1][1]:
            result[-1][1] = max(result[-1][1], b)
        else:
            result.append([a, b])
    return result


async def served(
    link: str, file: ModelFile, *, size: int, start: int, end: int, by_owner: bool
) -> bool:
    """A stream through ``link`` sent bytes ``[start, end)`` of a weights file ``size``
    bytes long. In one transaction: the span joins those the link served before, and
    when together they cover the whole file, one download is counted for its version
    and model, once per link, never for its owner. Returns whether this call counted it.
    """
    if end <= start:
        return False
    async with in_transaction():
        row = await DownloadLink.filter(link=link).select_for_update().first()
        if row is None or row.counted:
            return False
        spans: list[list[int]] = json.loads(row.spans) if row.spans and row.size == size else []
        merged = _merged(spans, start, end)
        if len(merged) > MAX_SPANS:
            return False  # a link served in scattered pieces: remembered as it was
        whole = merged == [[0, size]]
        counted = whole and not by_owner
        await DownloadLink.filter(link=link).update(
            spans=json.dumps(merged), size=size, counted=whole
        )
        if counted:
            version = await ModelVersion.get(id=file.version_id)
            await ModelVersion.filter(id=version.id).update(download_count=F("download_count") + 1)
            await LoraModel.filter(id=version.model_id).update(
                download_count=F("download_count") + 1
            )
        return counted


async def forget(now: datetime, *, older_than: int) -> int:
    """Forget links first used long ago: their URLs expired (minutes after they were
    minted), so they can never be used, or counted, again."""
    cutoff = now - timedelta(seconds=older_than)
    return int(await DownloadLink.filter(first_used_at__lt=cutoff).delete())
