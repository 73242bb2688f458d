"""A dataset's history, as the owner sees it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from tortoise.expressions import Subquery

from storage.db import reads
from storage.db.enums import EventKind
from storage.db.models import DatasetEvent
from storage.privacy import access

# How many of each kind of event a dataset keeps (the most recent ones): downloads and
# visibility changes, which anybody or the owner can repeat at will, can never push the
# lifecycle (upload, publish, reminders, deletion) out of the history, and a dataset's
# rows stay bounded.
KEEP = {
    EventKind.UPLOAD_STARTED: 10,
    EventKind.UPLOADED: 5,
    EventKind.PUBLISHED: 5,
    EventKind.MADE_PRIVATE: 15,
    EventKind.MADE_PUBLIC: 15,
    EventKind.DOWNLOADED: 25,
    EventKind.REMINDED: 15,
    EventKind.DELETED: 5,
    EventKind.HEADER_ERASED: 5,
}
HISTORY_LIMIT = sum(KEEP.values())  # the most a history holds: 100


async def record(dataset_id: int, kind: EventKind, at: datetime, detail: str = "") -> None:
    """Add an event, and forget the oldest of its kind beyond what the dataset keeps."""
    event = await DatasetEvent.create(dataset_id=dataset_id, kind=kind, at=at, detail=detail)
    keep = KEEP[kind]
    if event.id > keep:  # cheap guard: fewer rows than that exist in the whole table
        kept = DatasetEvent.filter(dataset_id=dataset_id, kind=kind).order_by("-id").limit(keep)
        await (
            DatasetEvent.filter(dataset_id=dataset_id, kind=kind)
            .exclude(id__in=Subquery(kept.values("id")))
            .delete()
        )


async def events_by_dataset_ids(
    ids: Iterable[int], *, viewer: access.ViewerId
) -> dict[int, list[DatasetEvent]]:
    """Each dataset's history (at most ``HISTORY_LIMIT`` events), oldest first, for its
    owner (anybody else gets none): one query for a whole page of datasets."""
    grouped: dict[int, list[DatasetEvent]] = defaultdict(list)
    for event in await _EVENTS_OF(viewer, list(ids)):
        grouped[event.dataset_id].append(event)
    return grouped


_EVENTS_OF = reads.Read(
    DatasetEvent,
    lambda viewer, ids: DatasetEvent.filter(
        access.visible_events_q(viewer), dataset_id__in=ids
    ).order_by("at", "id"),
)
