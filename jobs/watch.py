"""``serve``'s fallback when it only enqueues (ARQ): if no worker has been healthy for
``LORASHELF_WORKER_GRACE``, serve runs the retention work itself, from the database,
until one is healthy again.

Workers report their health in Redis (ARQ's health-check key, every few seconds). No
key (no worker, or Redis itself down) for the grace period starts an embedded runner
in serve; a healthy worker again stops it. Both may run at the same moment: every
step is a conditional update, so the work is done once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from arq import ArqRedis, create_pool
from arq.constants import default_queue_name, health_check_key_suffix

from jobs.adapters.scheduler import redis_settings
from jobs.runner import STAND_IN_LOOK, EmbeddedRunner
from storage.config.settings import Settings
from storage.runtime import Runtime

log = logging.getLogger("lorashelf.watch")

CHECK_EVERY = 2.0  # seconds between looks at the workers' health
LOOK_TIMEOUT = 1.0  # seconds a look may wait on Redis


class WorkerWatch:
    """A scheduler too: while its runner runs, a change wakes it (exact times)."""

    def __init__(self, settings: Settings):
        assert settings.redis_url is not None
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._runner: EmbeddedRunner | None = None
        self._pool: ArqRedis | None = None

    async def dataset_changed(self, dataset_id: int) -> None:
        if self._runner is not None:
            await self._runner.dataset_changed(dataset_id)

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        if self._runner is not None:
            await self._runner.datasets_changed(dataset_ids)

    async def file_changed(self, file_id: int) -> None:
        if self._runner is not None:
            await self._runner.file_changed(file_id)

    async def mail_queued(self) -> None:
        if self._runner is not None:
            await self._runner.mail_queued()

    async def export_changed(self, export_id: int) -> None:
        if self._runner is not None:
            await self._runner.export_changed(export_id)

    def start(self, runtime: Runtime) -> None:
        self._task = asyncio.create_task(self._run(runtime), name="lorashelf-worker-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.aclose()
            self._pool = None

    async def _run(self, runtime: Runtime) -> None:
        clock = runtime.clock
        grace = timedelta(seconds=self._settings.worker_grace)
        last_healthy = clock.now()
        while True:
            if await self._worker_alive():
                last_healthy = clock.now()
                if self._runner is not None:
                    log.info("a worker is healthy again: serve stops deleting by itself")
                    await self._runner.stop()
                    self._runner = None
            elif self._runner is None and clock.now() - last_healthy >= grace:
                log.warning(
                    "no worker has been healthy for %ss: serve does the retention work "
                    "itself until one is",
                    self._settings.worker_grace,
                )
                self._runner = EmbeddedRunner(look_every=STAND_IN_LOOK)
                self._runner.start(runtime)
            await clock.sleep(CHECK_EVERY)

    async def _worker_alive(self) -> bool:
        assert self._settings.redis_url is not None
        try:
            if self._pool is None:
                self._pool = await asyncio.wait_for(
                    create_pool(redis_settings(self._settings.redis_url), retry=0),
                    LOOK_TIMEOUT,
                )
            key = default_queue_name + health_check_key_suffix
            return bool(await asyncio.wait_for(self._pool.get(key), LOOK_TIMEOUT))
        except Exception:  # noqa: BLE001 - Redis down or slow: no healthy worker seen
            if self._pool is not None:
                pool, self._pool = self._pool, None
                with contextlib.suppress(Exception):
                    await pool.aclose()
            return False
