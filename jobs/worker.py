"""``lorashelf worker``: the ARQ worker running the retention jobs from Redis, and what
it does when Redis is gone.

Deferred per-dataset jobs (``expire_dataset``, ``send_reminder``, ``erase_header``)
arrive from ``serve``; a cron ``sweep`` runs every ``LORASHELF_SWEEP_INTERVAL`` and
``collect_orphan_blobs`` hourly. Several workers may run at once: cron runs are unique
per slot, and every job claims its work with conditional updates.

Redis going away is a state, not a crash, and so is Redis hanging (a stopped or
overloaded server that accepts connections and answers nothing): every command of the
ARQ worker's connections gives up after ``REDIS_TIMEOUT`` seconds (``socket_timeout``),
so a hang ends ARQ's loop as a lost connection does. ARQ's own loop raises
``ConnectionError`` (or ``TimeoutError``) and cannot close cleanly, so
:class:`Supervisor` owns the loop: it connects the
database once, runs an ARQ worker, and when Redis is lost it drops that worker and
runs the embedded runner instead (the exact-time retention work straight from the
database, as ``serve`` does without Redis) while it tries Redis again with back-off;
when Redis answers, it goes back to ARQ. Deletion never stops for a Redis outage.
With ``--exit-on-redis-loss`` it exits non-zero at once instead, for a supervisor
(systemd, Kubernetes) to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

from arq import Retry, cron, func
from arq.connections import ArqRedis, create_pool
from arq.typing import WorkerCoroutine
from arq.worker import Worker, check_health
from prometheus_client import start_http_server

from jobs import mail, tasks
from jobs.adapters.scheduler import ArqMail, redis_settings
from jobs.assembly import assemble
from jobs.runner import STAND_IN_LOOK, EmbeddedRunner
from storage.config.parse import ConfigError, cron_fields
from storage.config.settings import Settings
from storage.db import connection
from storage.runtime import NoScheduler, Runtime
from storage.system.clock import SteadyClock

log = logging.getLogger("lorashelf.worker")

MAX_TRIES = 6
BACKOFF_FIRST = 0.5  # seconds before trying Redis again, doubling ...
BACKOFF_MAX = 10.0  # ... up to this
# Seconds any command of the ARQ worker may wait on Redis: its commands are small
# (ARQ polls every 0.1 s), so a Redis that answers none for this long is hung.
REDIS_TIMEOUT = 5.0


def retrying(job: Callable[..., Awaitable[Any]]) -> WorkerCoroutine:
    """Retry a failed job with exponential backoff (2, 4, 8 … 60 s), then give up;
    the sweep remains the safety net."""

    @functools.wraps(job)
    async def wrapper(ctx: dict[str, Any], *args: Any) -> Any:
        try:
            return await job(ctx, *args)
        except Exception as exc:
            tries = int(ctx.get("job_try", 1))
            if tries >= MAX_TRIES:
                log.exception("%s%s failed for good after %s tries", job.__name__, args, tries)
                raise
            log.warning("%s%s failed (%s); retrying", job.__name__, args, exc)
            raise Retry(defer=min(60, 2**tries)) from exc

    return cast(WorkerCoroutine, wrapper)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """ARQ's worker settings for one configuration (the database is the supervisor's)."""
    assert settings.redis_url is not None

    def job(fn: Callable[..., Awaitable[Any]], **options: Any) -> Any:
        return func(retrying(fn), name=fn.__name__, max_tries=MAX_TRIES, **options)

    return {
        "functions": [
            job(tasks.expire_dataset, timeout=300),
            job(tasks.send_reminder, timeout=60),
            job(tasks.erase_header, timeout=300),
            job(mail.deliver_mail, timeout=600),
            job(tasks.build_export, timeout=3600),
            job(tasks.expire_export, timeout=300),
            job(tasks.sweep, timeout=600),
            job(tasks.collect_orphan_blobs, timeout=1800),
        ],
        "cron_jobs": [
            cron(
                retrying(tasks.sweep),
                name="cron:sweep",
                unique=True,
                run_at_startup=True,
                timeout=600,
                **cron_fields(settings.sweep_interval),  # type: ignore[arg-type]
            ),
            cron(
                retrying(tasks.collect_orphan_blobs),
                name="cron:collect_orphan_blobs",
                unique=True,
                minute=17,
                second=0,
                timeout=1800,
            ),
        ],
        "redis_settings": redis_settings(settings.redis_url),
        "poll_delay": 0.1,
        "max_jobs": 10,
        "keep_result": 3600,
        "health_check_interval": 5,
        "allow_abort_jobs": False,
        "handle_signals": False,  # the supervisor handles them
    }


class RedisLost(Exception):
    """ARQ's loop ended because Redis could not be reached."""


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        exit_on_redis_loss: bool = False,
        metrics: tuple[str, int] | None = None,
    ):
        assert settings.redis_url is not None
        self.settings = settings
        self.exit_on_redis_loss = exit_on_redis_loss
        self.metrics = metrics  # (host, port) to serve this process's metrics on
        self._stop = asyncio.Event()
        self._failed: BaseException | None = None  # what ended the run (the store's wait)

    async def run(self) -> int:
        """Until SIGTERM/SIGINT (exit 0), or, with ``exit_on_redis_loss``, until Redis
        is lost (exit 1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        settings = self.settings
        try:  # like serve; a serve starting at the same moment may be doing it too
            await connection.migrate(settings.database_url)
        except Exception as exc:  # noqa: BLE001 - jobs retry until the schema is there
            log.warning("could not apply migrations (%s); serve may be doing it", exc)
        await connection.connect(
            settings.database_url, settings.database_pool_size, settings.database_busy_timeout
        )
        # The worker runs jobs and plans none (stale queued ones no-op), except the
        # e-mail its jobs queue (a deliver_mail job at once); with no hub of its own, its
        # bus publishes to the serve processes' subscribers.
        clock = SteadyClock()
        planner = ArqMail(settings, clock) if settings.smtp_url else NoScheduler()
        assembly = assemble(settings, clock=clock, scheduler=planner)
        runtime = assembly.runtime
        exporter = None
        if self.metrics is not None:
            host, port = self.metrics
            # Its own thread: a scrape never waits for the loop, nor the loop for it.
            try:
                exporter, _ = start_http_server(port, addr=host, registry=runtime.metrics.registry)
            except OSError as exc:
                await assembly.stop()
                await connection.disconnect()
                raise ConfigError(
                    f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})"
                ) from None
            log.info("metrics on http://%s:%s/metrics", host, port)
        try:
            # An object store away at start is waited for beside the work that needs only
            # the database; if it stays away (or its bucket is unusable), the worker stops
            # with that error, as a wait at start would.
            await assembly.start(store_in_background=True)
            if assembly.store_task is not None:
                assembly.store_task.add_done_callback(self._store_wait_ended)
            # What fell due, or was left half-done, while no worker ran: at once.
            await tasks.sweep({"runtime": runtime}, startup=True)
            log.info("worker ready: sweep every %ss", settings.sweep_interval)
            while not self._stop.is_set():
                try:
                    await self._arq(runtime)
                except RedisLost as exc:
                    if self.exit_on_redis_loss:
                        log.error("Redis lost (%s): exiting for a restart", exc)
                        return 1
                    log.warning("Redis lost (%s): deleting from the database until it is back", exc)
                    await self._without_redis(runtime)
            if self._failed is not None:
                raise self._failed
            return 0
        finally:
            if exporter is not None:
                exporter.shutdown()
            await assembly.stop()
            await connection.disconnect()

    def _store_wait_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._failed = task.exception()
        self._stop.set()

    async def _arq(self, runtime: Runtime) -> None:
        """One ARQ worker, until stopped or Redis is lost."""
        assert self.settings.redis_url is not None
        worker = Worker(
            **worker_settings(self.settings),
            redis_pool=arq_pool(self.settings.redis_url),
            ctx={"runtime": runtime},
        )
        main = asyncio.create_task(worker.main(), name="arq-worker")
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await main
            with contextlib.suppress(Exception):  # closing over a dead connection fails
                await asyncio.wait_for(worker.close(), timeout=5)
        if main.done() and not main.cancelled() and main.exception() is not None:
            raise RedisLost(repr(main.exception()))
        if not self._stop.is_set():
            raise RedisLost("the worker's loop ended")

    async def _without_redis(self, runtime: Runtime) -> None:
        """The embedded runner does the retention work (exact times, from the database)
        while Redis is tried again with back-off."""
        runner = EmbeddedRunner(look_every=STAND_IN_LOOK)
        runner.start(runtime)
        delay = BACKOFF_FIRST
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                if self._stop.is_set() or await redis_answers(self.settings):
                    break
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            await runner.stop()
        if not self._stop.is_set():
            log.info("Redis is back: resuming the ARQ worker")


def arq_pool(url: str) -> ArqRedis:
    """The ARQ worker's Redis connections: connecting and every command time out (a hung
    Redis is a lost one), and nothing is retried underneath (the supervisor decides)."""
    pool: ArqRedis = ArqRedis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=REDIS_TIMEOUT,
        retry_on_timeout=False,
    )
    return pool


async def redis_answers(settings: Settings) -> bool:
    assert settings.redis_url is not None
    try:
        pool = await asyncio.wait_for(create_pool(redis_settings(settings.redis_url)), 2)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    try:
        return bool(await asyncio.wait_for(pool.ping(), 2))
    except Exception:  # noqa: BLE001
        return False
    finally:
        with contextlib.suppress(Exception):
            await pool.aclose()


def run(
    settings: Settings,
    *,
    exit_on_redis_loss: bool = False,
    metrics: tuple[str, int] | None = None,
) -> int:
    supervisor = Supervisor(settings, exit_on_redis_loss=exit_on_redis_loss, metrics=metrics)
    return asyncio.run(supervisor.run())


def healthy(settings: Settings) -> bool:
    return check_health(worker_settings(settings)) == 0
