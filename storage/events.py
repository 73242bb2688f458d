"""A dataset's history, as the owner sees it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from storage.models import DatasetEvent, EventKind


async def record(dataset_id: int, kind: EventKind, at: datetime, detail: str = "") -> None:
    await DatasetEvent.create(dataset_id=dataset_id, kind=kind, at=at, detail=detail)


async def events_by_dataset_ids(ids: Iterable[int]) -> dict[int, list[DatasetEvent]]:
    """Each dataset's events, oldest first."""
    grouped: dict[int, list[DatasetEvent]] = defaultdict(list)
    for event in await DatasetEvent.filter(dataset_id__in=list(ids)).order_by("at", "id"):
        grouped[event.dataset_id].append(event)
    return grouped
