"""Work done once at a time per key: callers that ask for a key while it is being
computed wait for that computation instead of starting their own (per process). The
response cache (graph/http/cache.py) computes each missing answer this way, so an
entry expiring under load costs one computation, not one per waiting request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flights(Generic[K, T]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: K, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of ``key``'s computation running now, or of one started for this
        caller; and whether the caller waited for another's. The computation is a task
        of its own: the caller that started it going away (a client disconnecting)
        does not take it from the others."""
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running), True
        task = asyncio.ensure_future(compute())
        self._running[key] = task

        def done(_: object) -> None:
            if self._running.get(key) is task:
                del self._running[key]

        task.add_done_callback(done)
        return await asyncio.shield(task), False
