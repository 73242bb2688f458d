"""``lorashelf worker``: the ARQ worker running the retention jobs from Redis.

Deferred per-dataset jobs (``expire_dataset``, ``send_reminder``) arrive from
``serve``; a cron ``sweep`` runs every ``LORASHELF_SWEEP_INTERVAL`` (and at start,
since ARQ skips cron runs missed while no worker was up) and ``collect_orphan_blobs``
hourly. Several workers may run at once: cron runs are unique per slot, and every
job claims its work with conditional updates.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from arq import Retry, cron, func
from arq.typing import WorkerCoroutine
from arq.worker import check_health, run_worker

from jobs import tasks
from jobs.notifier import InAppNotifier
from jobs.scheduler import redis_settings
from storage import db
from storage.blobs import open_blob_store
from storage.clock import SystemClock
from storage.config import Settings, cron_fields
from storage.runtime import NoScheduler, Runtime

log = logging.getLogger("lorashelf.worker")

MAX_TRIES = 6


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


def worker_settings(settings: Settings) -> type:
    """ARQ reads settings from the class's own ``__dict__``: build one per configuration."""
    assert settings.redis_url is not None

    async def startup(ctx: dict[str, Any]) -> None:
        if settings.database_url.startswith("sqlite"):
            try:  # like serve; a serve starting at the same moment may be doing it too
                await db.migrate(settings.database_url)
            except Exception as exc:  # noqa: BLE001 - jobs retry until the schema is there
                log.warning("could not apply migrations (%s); serve may be doing it", exc)
        ctx["tortoise"] = await db.connect(settings.database_url)
        ctx["runtime"] = Runtime(
            settings=settings,
            clock=SystemClock(),
            blobs=open_blob_store(settings.blob_url),
            scheduler=NoScheduler(),  # the worker runs jobs; stale queued ones no-op
            notifier=InAppNotifier(),
        )
        log.info("worker ready: sweep every %ss", settings.sweep_interval)

    async def shutdown(ctx: dict[str, Any]) -> None:
        await db.disconnect()

    def job(fn: Callable[..., Awaitable[Any]], **options: Any) -> Any:
        return func(retrying(fn), name=fn.__name__, max_tries=MAX_TRIES, **options)

    return type(
        "WorkerSettings",
        (),
        {
            "functions": [
                job(tasks.expire_dataset, timeout=300),
                job(tasks.send_reminder, timeout=60),
                job(tasks.erase_header, timeout=300),
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
            "on_startup": startup,
            "on_shutdown": shutdown,
            "poll_delay": 0.1,
            "max_jobs": 10,
            "keep_result": 3600,
            "health_check_interval": 5,
            "allow_abort_jobs": False,
        },
    )


def run(settings: Settings) -> None:
    run_worker(worker_settings(settings))


def healthy(settings: Settings) -> bool:
    return check_health(worker_settings(settings)) == 0
