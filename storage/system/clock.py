"""The one clock used by storage, jobs and the API, so tests can move time; and time
that never goes back.

Every read of time that decides what happens (windows, expiries, due times, ages, the
embedded runner's wake-ups, the response cache's ages, the workers' health grace) goes
through a :class:`Clock`, and so does every wait for such a time (:meth:`Clock.sleep`):
a test's clock moves time, and what was waiting wakes. Timeouts on network calls and
durations measured for ``/metrics`` are the event loop's business, not time as
lorashelf sees it.

A wall clock can step backwards (an NTP correction, a VM restored): a private dataset
past its ``expiresAt`` would then look open again until it is deleted. The
:class:`SteadyClock` never returns an earlier instant than one it returned before, and
the latest instant any process saw is kept in the database (:func:`save_mark`, run by
every sweep; :func:`load_mark` at start), so a restarted process does not go back
either. A *forward* step cannot be undone: deadlines simply arrive early (a window
ends, and its bytes are deleted, as if that much time had passed; reminders due in the
skipped time are sent late, once, while the window is still open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Protocol

from storage.db.models import ClockMark

log = logging.getLogger("lorashelf.clock")

MARK = "now"  # the row of clock_marks holding the latest instant seen


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        """Wait ``seconds`` of this clock's time, or until ``wake`` is set (if given),
        whichever comes first."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        if wake is None:
            await asyncio.sleep(max(seconds, 0.0))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(seconds, 0.0))


class SteadyClock:
    """Wall-clock time that never goes back (see the module docstring)."""

    def __init__(self, base: Clock | None = None):
        self._base = base or SystemClock()
        self._high = datetime.min.replace(tzinfo=UTC)
        self._warned = False

    def now(self) -> datetime:
        wall = self._base.now()
        if wall >= self._high:
            self._high = wall
            self._warned = False
            return wall
        if not self._warned:
            self._warned = True
            behind = (self._high - wall).total_seconds()
            log.warning("the wall clock went back %.3fs; holding time at %s", behind, self._high)
        return self._high

    async def sleep(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        await self._base.sleep(seconds, wake=wake)

    def raise_to(self, mark: datetime) -> None:
        """Never return an instant before ``mark`` (one another process has seen)."""
        self._high = max(self._high, mark)


async def load_mark(clock: Clock) -> None:
    """At start: time resumes from the latest instant any process has seen."""
    row = await ClockMark.get_or_none(name=MARK)
    if row is not None and isinstance(clock, SteadyClock):
        clock.raise_to(row.at)


async def save_mark(now: datetime) -> None:
    """Keep ``now`` as the latest instant seen, unless a later one is kept already."""
    updated = await ClockMark.filter(name=MARK, at__lt=now).update(at=now)
    if not updated and not await ClockMark.exists(name=MARK):
        await ClockMark.get_or_create(name=MARK, defaults={"at": now})
