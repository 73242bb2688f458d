"""A dataset's history, as the owner sees it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from storage import access
from storage.models import DatasetEvent, EventKind


async def record(dataset_id: int, kind: EventKind, at: datetime, detail: str = "") -> None:
    await DatasetEvent.create(dataset_id=dataset_id, kind=kind, at=at, detail=detail)


HISTORY_LIMIT = 100  # events shown per dataset: the most recent ones


async def events_by_dataset_ids(
    ids: Iterable[int], *, viewer: access.ViewerId
) -> dict[int, list[DatasetEvent]]:
    """Each dataset's most recent ``HISTORY_LIMIT`` events, oldest first, for its owner
    (anybody else gets none).

    One bounded query per dataset (a popular public dataset may have many download
    events); the owner asks for few datasets' histories at a time, and the cost
    limit counts each history as ``HISTORY_LIMIT`` items.
    """
    grouped: dict[int, list[DatasetEvent]] = defaultdict(list)
    for dataset_id in ids:
        recent = (
            await DatasetEvent.filter(access.visible_events_q(viewer), dataset_id=dataset_id)
            .order_by("-id")
            .limit(HISTORY_LIMIT)
        )
        grouped[dataset_id] = sorted(recent, key=lambda e: (e.at, e.id))
    return grouped
