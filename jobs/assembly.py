"""The one place a process's :class:`~storage.runtime.Runtime` is assembled.

``serve`` (graph/http/app.py), ``lorashelf worker`` (jobs/worker.py) and the tests
(tests/conftest.py) all call :func:`assemble`; what differs is only what they pass:

- ``serve``: nothing but a hub for its live subscribers. With ``LORASHELF_REDIS_URL``
  the scheduler enqueues ARQ jobs and watches the workers' health (taking the work
  over when none is healthy); without it an embedded runner does the work in-process.
- ``lorashelf worker``: ``scheduler=NoScheduler()`` (it runs the jobs; it plans none),
  or with e-mail ``ArqMail`` (it plans only the e-mail its jobs queue), no hub (its bus
  only publishes, to the ``serve`` processes' subscribers).
- tests: their own clock, blob store and scheduler.

The :class:`Assembly` it returns holds the runtime and the parts that run beside it,
and starts and stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from jobs.adapters.bus import Hub, LocalBus, RedisBus, open_bus
from jobs.adapters.notifier import InAppNotifier
from jobs.adapters.scheduler import ArqScheduler
from jobs.runner import EmbeddedRunner
from jobs.watch import WorkerWatch
from storage.blobs.base import RawStore, StoreUnavailable
from storage.blobs.sealed import SealedBlobStore
from storage.blobs.store import open_blob_store
from storage.config.settings import Settings
from storage.crypto import receipts
from storage.crypto.master import MasterKeys
from storage.retention import header_firewall
from storage.runtime import Fanout, NoBus, Runtime, Scheduler
from storage.system.clock import Clock, SteadyClock, load_mark
from storage.system.patience import patiently

log = logging.getLogger("lorashelf.start")


@dataclass
class Assembly:
    """A process's runtime and the parts that run beside it."""

    runtime: Runtime
    runner: EmbeddedRunner | None = None  # serve without Redis: the retention work
    arq: ArqScheduler | None = None  # with Redis: ARQ's queue (also for /readyz, /metrics)
    watch: WorkerWatch | None = None  # with Redis: serve's stand-in when no worker is healthy
    bus: LocalBus | RedisBus | None = None
    store_task: asyncio.Task[None] | None = None  # a worker's wait for the object store

    async def start(self, *, store_in_background: bool = False) -> None:
        """With the database connected: resume time from the latest instant seen, load
        the master keys (the key file made on a first start) and the receipt key (made
        then too), make the blob store usable (an object store's client, its bucket
        checked), withhold header keys newly listed as training data from the files
        already stored (header_firewall.settle_stored_files), then set the bus, the
        runner and the watch going.

        ``store_in_background`` (a worker): an object store that does not answer at once
        is waited for in :attr:`store_task`, while the work that needs only the database
        (claims, keys destroyed, tombstones, reminders, notices) goes on; that task ends
        with the same error as a wait at start would (``StillUnavailable`` once
        ``LORASHELF_START_PATIENCE`` is over, ``ConfigError`` for an unusable bucket)."""
        runtime = self.runtime
        await load_mark(runtime.clock)
        # The receipt key exists from the first start (master keys loaded, or the key
        # file made): made on first use, its public createdAt dated the site's first
        # deletion, maybe of a private dataset's.
        await receipts.current_key(runtime.master, runtime.clock.now())
        if not store_in_background:
            await self._store()
        else:
            try:
                await runtime.blobs.connect()
            except StoreUnavailable as exc:
                log.warning("%s; starting without it, and waiting for it meanwhile", exc)
                self.store_task = asyncio.create_task(self._store_later(), name="lorashelf-store")
            else:
                await header_firewall.settle_stored_files(runtime)
        if self.bus is not None:
            self.bus.start()
        if self.runner is not None:
            self.runner.start(runtime)
        if self.watch is not None:
            self.watch.start(runtime)

    async def _store_later(self) -> None:
        await self._store()
        log.info("the object store answers: bytes are deleted again")

    async def _store(self) -> None:
        runtime = self.runtime
        await patiently(
            "the object store",
            runtime.blobs.connect,
            transient=lambda exc: isinstance(exc, StoreUnavailable),
            patience=runtime.settings.start_patience,
            clock=runtime.clock,
        )
        await header_firewall.settle_stored_files(runtime)

    async def stop(self) -> None:
        """Stop what :meth:`start` set going, and release the connections (the database
        is its caller's)."""
        if self.store_task is not None and not self.store_task.done():
            self.store_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.store_task
        if self.runner is not None:
            await self.runner.stop()
        if self.watch is not None:
            await self.watch.stop()
        if self.arq is not None:
            await self.arq.close()
        if self.bus is not None:
            await self.bus.close()
        await self.runtime.blobs.close()


def assemble(
    settings: Settings,
    *,
    clock: Clock | None = None,
    blobs: RawStore | None = None,
    scheduler: Scheduler | None = None,
    hub: Hub | None = None,
) -> Assembly:
    """The runtime for this configuration. ``clock`` (default: the steady system clock),
    ``blobs`` (default: the raw store ``LORASHELF_BLOB_URL`` names; the sealed store is
    always put over it) and ``scheduler``
    (default: chosen by ``LORASHELF_REDIS_URL``) replace the defaults; ``hub`` holds
    this process's live subscribers, if it has any."""
    clock = clock or SteadyClock()
    master = MasterKeys(settings)
    sealed = SealedBlobStore(blobs or open_blob_store(settings), master, clock)
    runner: EmbeddedRunner | None = None
    arq: ArqScheduler | None = None
    watch: WorkerWatch | None = None
    if scheduler is None:
        if settings.redis_url:
            arq, watch = ArqScheduler(settings, clock), WorkerWatch(settings)
            scheduler = Fanout(arq, watch)
        else:
            scheduler = runner = EmbeddedRunner()
    elif isinstance(scheduler, ArqScheduler):
        arq = scheduler  # closed with the assembly
    bus = open_bus(settings, hub)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        blobs=sealed,
        scheduler=scheduler,
        notifier=InAppNotifier(),
        master=master,
        bus=bus if bus is not None else NoBus(),
    )
    return Assembly(runtime=runtime, runner=runner, arq=arq, watch=watch, bus=bus)
