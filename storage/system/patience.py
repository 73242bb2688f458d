"""Waiting at start for a dependency that is briefly away: the database starting up or
out of connection slots, an object store restarting. A process retries with a bounded
back-off for ``LORASHELF_START_PATIENCE`` and says what it waits for; only a failure
that lasts longer, or one that no wait can cure (a wrong password, a versioned bucket),
ends the start."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from storage.system.clock import Clock, SystemClock

log = logging.getLogger("lorashelf.start")

T = TypeVar("T")

FIRST_WAIT = 0.5  # seconds before the first retry; doubled each time, up to LAST_WAIT
LAST_WAIT = 5.0


class StillUnavailable(Exception):
    """A dependency stayed unavailable for the whole patience: the start is over."""

    def __init__(self, what: str, patience: float, last: BaseException):
        cause = f"{last.__class__.__name__}: {last}".strip().rstrip(":")
        super().__init__(f"{what} did not become available within {patience:g}s ({cause})")
        self.last = last


async def patiently(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    patience: float,
    clock: Clock | None = None,
) -> T:
    """``attempt()``, retried after failures ``transient`` accepts, for at most
    ``patience`` seconds (a monotonic measure, so a clock step cannot stretch it);
    other failures are raised at once, a transient one that outlasts the patience as
    :class:`StillUnavailable`."""
    sleep = (clock or SystemClock()).sleep
    deadline = time.monotonic() + patience
    wait = FIRST_WAIT
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not transient(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StillUnavailable(what, patience, exc) from exc
            pause = min(wait, left)
            log.warning(
                "waiting for %s (%s: %s); retrying in %.1fs, for at most %.0fs more",
                what,
                exc.__class__.__name__,
                exc,
                pause,
                left,
            )
            await sleep(pause)
            wait = min(wait * 2, LAST_WAIT)
