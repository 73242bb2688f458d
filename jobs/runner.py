"""The embedded runner: retention work inside ``lorashelf serve`` when there is no Redis.

It runs a sweep at start (so anything that fell due while the server was down is
done at once), then sleeps until the next due time read from the database, or the
sweep interval, whichever is sooner; a dataset change wakes it to look again. All its
times, its sleeps included, are the runtime's clock's: a test moves time and the runner
wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from jobs.mail import deliver_mail
from jobs.tasks import build_export, collect_orphan_blobs, sweep
from storage.mail import outbox
from storage.retention import due
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.runner")

ORPHAN_EVERY = timedelta(hours=1)  # between orphan-blob collections
STAND_IN_LOOK = 1.0  # seconds between looks at the next due time when standing in for ARQ
FAILURE_BACKOFF = 5.0  # seconds to wait when items keep failing


class EmbeddedRunner:
    """The scheduler of a ``serve`` without Redis: it runs the jobs itself, with the
    runtime it is started with (whose scheduler is this runner).

    ``look_every`` bounds how long it sleeps before reading the next due time again:
    when it stands in for ARQ (a worker during a Redis outage, serve with no healthy
    worker), changes made by other processes cannot wake it, so it looks again every
    second; alone in ``serve``, every change wakes it and it can sleep until the due
    time."""

    def __init__(self, *, look_every: float | None = None) -> None:
        self._wake = asyncio.Event()
        self._mail_wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._mail_task: asyncio.Task[None] | None = None
        self._look_every = look_every
        self._runtime: Runtime | None = None
        self._builds: set[asyncio.Task[bool]] = set()  # data exports being built

    async def dataset_changed(self, dataset_id: int) -> None:
        self._wake.set()

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        self._wake.set()

    async def file_changed(self, file_id: int) -> None:
        self._wake.set()

    async def mail_queued(self) -> None:
        self._mail_wake.set()

    async def export_changed(self, export_id: int) -> None:
        """A pending export is built at once, beside the retention work (its own task:
        a big account's archive never delays an exact-time deletion); a ready one's end
        is a due time like any other."""
        self._wake.set()
        if self._runtime is not None:
            task = asyncio.create_task(
                build_export({"runtime": self._runtime}, export_id), name="lorashelf-export"
            )
            self._builds.add(task)
            task.add_done_callback(self._built)

    def _built(self, task: asyncio.Task[bool]) -> None:
        self._builds.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("data export failed (the sweep tries again)", exc_info=task.exception())

    def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._task = asyncio.create_task(self._run(runtime), name="lorashelf-retention")
        if runtime.settings.smtp_url:
            self._mail_task = asyncio.create_task(self._mail(runtime), name="lorashelf-mail")

    async def stop(self) -> None:
        for task in (self._task, self._mail_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._mail_task = None
        for build in list(self._builds):
            build.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await build

    async def _mail(self, runtime: Runtime) -> None:
        """E-mail, in a loop of its own: a slow or absent SMTP server never holds up the
        retention work. Sends what is due, then sleeps until the next message's attempt
        (or a new message wakes it)."""
        ctx = {"runtime": runtime}
        clock = runtime.clock
        interval = float(runtime.settings.sweep_interval)
        while True:
            self._mail_wake.clear()
            try:
                due_at = await outbox.next_due()
                if due_at is not None and due_at <= clock.now():
                    await deliver_mail(ctx)
                    due_at = await outbox.next_due()
                delay = interval
                if due_at is not None:
                    delay = min(delay, max((due_at - clock.now()).total_seconds(), 0.0))
                if self._look_every is not None:
                    delay = min(delay, self._look_every)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mail: pass failed; retrying shortly")
                delay = FAILURE_BACKOFF
            await clock.sleep(delay, wake=self._mail_wake)

    async def _run(self, runtime: Runtime) -> None:
        ctx = {"runtime": runtime}
        clock = runtime.clock
        interval = timedelta(seconds=runtime.settings.sweep_interval)
        next_sweep = clock.now()  # sweep at start: catch up on what fell due while down
        last_orphans: datetime | None = None
        startup = True  # the first sweep also finishes what a dead process left
        while True:
            self._wake.clear()  # a change from here on wakes the wait below
            try:
                backoff = False
                now = clock.now()
                due_at = await due.next_due(now)
                if now >= next_sweep or (due_at is not None and due_at <= now):
                    done = await sweep(ctx, startup=startup)
                    startup = False
                    backoff = any(kind.endswith("_failed") for kind in done)
                    next_sweep = clock.now() + interval
                    if last_orphans is None or clock.now() - last_orphans >= ORPHAN_EVERY:
                        last_orphans = clock.now()
                        await collect_orphan_blobs(ctx)
                    due_at = await due.next_due(clock.now())
                wake_at = next_sweep if due_at is None else min(next_sweep, due_at)
                delay = max((wake_at - clock.now()).total_seconds(), 0.0)
                if self._look_every is not None:
                    delay = min(delay, self._look_every)
                if backoff:
                    delay = max(delay, FAILURE_BACKOFF)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention runner: pass failed; retrying shortly")
                delay = FAILURE_BACKOFF
            await clock.sleep(delay, wake=self._wake)
