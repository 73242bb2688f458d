"""How the API tells the retention machinery that a dataset changed.

The database is the source of truth; a scheduler only makes work happen on
time. Implementations: the ARQ enqueuer and the in-process runner.
"""

from __future__ import annotations

from typing import Protocol


class Scheduler(Protocol):
    async def dataset_changed(self, dataset_id: int) -> None:
        """(Re)schedule the exact-time jobs for this dataset from its current row."""
        ...


class NoScheduler:
    """Does nothing: the periodic sweep alone does the work (used by tests and tools)."""

    async def dataset_changed(self, dataset_id: int) -> None:
        return None
