"""How the API tells the retention machinery that a dataset changed.

The database is the source of truth; a scheduler (the ``storage.runtime.Scheduler``
interface, which the services call) only makes work happen on time. Implementations:
``ArqScheduler`` here (Redis; ``lorashelf worker`` runs the jobs) and
``jobs.runner.EmbeddedRunner`` (in-process, the default without Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, job_key_prefix

from storage.config.settings import Settings
from storage.db.enums import DatasetStatus, ExportStatus, Visibility
from storage.db.models import DataExport, ModelFile, TrainingDataset
from storage.retention import deletion, due
from storage.runtime import Runtime
from storage.system.clock import Clock

__all__ = [
    "ArqMail",
    "ArqScheduler",
    "PlannedJob",
    "jobs_index",
    "planned_export_jobs",
    "planned_file_jobs",
    "planned_jobs",
]

log = logging.getLogger("lorashelf.scheduler")

SCHEDULE_TIMEOUT = 3.0  # seconds a request may wait on Redis
RETRY_AFTER = 2.0  # seconds without waiting on Redis after it failed
MAX_MISSED = 100_000  # changes remembered for planning when Redis is back


def jobs_index(kind: str, key: int) -> str:
    """The Redis set holding the ids of one object's queued jobs (``kind``: dataset,
    file, export), so that a change removes the ones it made pointless."""
    return f"lorashelf:{kind}-jobs:{key}"


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    function: str
    args: tuple[int, ...]
    at: datetime
    index: str  # :func:`jobs_index` of the object it is for


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def planned_jobs(
    dataset: TrainingDataset | None, *, reminders: tuple[int, ...], now: datetime
) -> list[PlannedJob]:
    """The exact-time jobs a dataset needs now. Job ids hold the due time, so
    scheduling the same state twice is one job, and a moved window is a new one."""
    if (
        dataset is None
        or dataset.status != DatasetStatus.AVAILABLE
        or dataset.visibility != Visibility.PRIVATE
        or dataset.expires_at is None
    ):
        return []
    expires = dataset.expires_at
    index = jobs_index("dataset", dataset.id)
    jobs = [
        PlannedJob(
            f"expire:{dataset.id}:{_ms(expires)}", "expire_dataset", (dataset.id,), expires, index
        )
    ]
    for offset in reminders:
        due = expires - timedelta(seconds=offset)
        if due > now:
            jobs.append(
                PlannedJob(
                    f"remind:{dataset.id}:{offset}:{_ms(due)}",
                    "send_reminder",
                    (dataset.id, offset),
                    due,
                    index,
                )
            )
    return jobs


def planned_file_jobs(file: ModelFile | None) -> list[PlannedJob]:
    """The exact-time job a weights file needs: erasing its withheld header keys."""
    if file is None or file.status != DatasetStatus.AVAILABLE or file.header_expires_at is None:
        return []
    due = file.header_expires_at
    index = jobs_index("file", file.id)
    return [
        PlannedJob(f"erase-header:{file.id}:{_ms(due)}", "erase_header", (file.id,), due, index)
    ]


def planned_export_jobs(export: DataExport | None, *, now: datetime) -> list[PlannedJob]:
    """A data export's job: built now while pending, shredded at the end of its window."""
    if export is None:
        return []
    index = jobs_index("export", export.id)
    if export.status in (ExportStatus.PENDING, ExportStatus.BUILDING):
        return [PlannedJob(f"build-export:{export.id}", "build_export", (export.id,), now, index)]
    if export.status == ExportStatus.READY and export.expires_at is not None:
        at = export.expires_at
        job_id = f"expire-export:{export.id}:{_ms(at)}"
        return [PlannedJob(job_id, "expire_export", (export.id,), at, index)]
    return []


async def plan_ahead(
    redis: ArqRedis, rt: Runtime, *, now: datetime, sweeps: int, limit: int
) -> int:
    """Enqueue again, from the database, the exact-time jobs due before ``sweeps`` sweep
    intervals from ``now`` (the sweep does it under ARQ). Redis restarted without
    persistence loses every queued job, and without this the sweep would catch each one
    only once it is overdue (a reminder or a deletion late by up to a sweep interval).
    Job ids hold the due time, so a job still queued, or run within the hour, is not
    enqueued twice (and a job run twice does its work once). A worker back on ARQ after
    losing Redis sweeps at once, so the near work is back on time within seconds of
    Redis's return. How many jobs were enqueued."""
    until = now + timedelta(seconds=sweeps * rt.settings.sweep_interval)
    jobs = [
        job
        for row in await due.coming(now, until, limit=limit)
        for job in planned_jobs(row, reminders=rt.policy.reminders, now=now)
    ]
    jobs += [
        job for f in await due.coming_files(now, until, limit=limit) for job in planned_file_jobs(f)
    ]
    enqueued = 0
    for job in jobs:
        if job.at <= until and await redis.enqueue_job(
            job.function, *job.args, _job_id=job.job_id, _defer_until=job.at
        ):
            enqueued += 1
            # indexed like every other queued job, so that a later change removes it
            await redis.sadd(job.index, job.job_id)  # type: ignore[misc]
    return enqueued


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 0
    return settings


class DatabaseUnreadable(Exception):
    """Reading the row to plan for failed: the database's failure, not Redis's."""

    def __init__(self, cause: BaseException):
        super().__init__(f"{cause.__class__.__name__}: {cause}")
        self.cause = f"{cause.__class__.__name__}: {cause}"


@contextlib.asynccontextmanager
async def _reading_the_database() -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        raise DatabaseUnreadable(exc) from exc


class ArqScheduler:
    """Enqueues deferred ARQ jobs; cancels the ones a change made pointless.

    The ids of a dataset's queued jobs are kept in a Redis set, so that making it
    public, or deleting it, removes them from the queue (stale jobs also no-op).
    """

    def __init__(self, settings: Settings, clock: Clock):
        assert settings.redis_url is not None
        self._redis = redis_settings(settings.redis_url)
        self._settings = settings
        self._clock = clock
        self._pool: ArqRedis | None = None
        self._down_until: datetime | None = None  # after a failure, don't wait on Redis until
        # Changes that could not be scheduled (Redis down): planned again, from the rows
        # as they are then, as soon as Redis answers; the sweep covers them meanwhile.
        self._missed: dict[str, tuple[Callable[[int], Awaitable[None]], int]] = {}
        self._replay: asyncio.Task[None] | None = None
        # Whether some were missed because Redis failed (not the database): until they
        # are planned, new changes join them instead of waiting on Redis.
        self._redis_missed = False

    async def _connect(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(self._redis, retry=0)
        return self._pool

    async def queue_depth(self) -> int:
        """Jobs in ARQ's queue (due or deferred), for the operations view."""
        async with asyncio.timeout(2):  # connecting too: a hung Redis accepts, never answers
            pool = await self._connect()
            return int(await pool.zcard(default_queue_name))

    async def ping(self) -> bool:
        """Whether Redis answers (for ``/readyz``)."""
        try:
            pool = await self._connect()
            return bool(await asyncio.wait_for(pool.ping(), 2))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    async def close(self) -> None:
        if self._replay is not None:
            self._replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay
            self._replay = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def dataset_changed(self, dataset_id: int) -> None:
        await self._guarded(f"dataset {dataset_id}", self._dataset_jobs, dataset_id)

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        """Many datasets changed together (a sweep's batch): their rows read in one
        query and their jobs replanned in a few round trips to Redis, not a few each.
        What fails is planned again one by one, as single changes are."""
        ids = list(dict.fromkeys(dataset_ids))
        if len(ids) <= 1:
            for dataset_id in ids:
                await self.dataset_changed(dataset_id)
            return
        misses = [(f"dataset {i}", self._dataset_jobs, i) for i in ids]
        await self._attempt(f"{len(ids)} datasets", misses, lambda: self._many_dataset_jobs(ids))

    async def file_changed(self, file_id: int) -> None:
        await self._guarded(f"file {file_id}", self._file_jobs, file_id)

    async def mail_queued(self) -> None:
        """A ``deliver_mail`` pass now (each call its own job: a pass that already ran
        must not swallow a message queued after it)."""
        await self._guarded("e-mail", self._mail_job, 0)

    async def _mail_job(self, _: int) -> None:
        pool = await self._connect()
        await pool.enqueue_job("deliver_mail", _job_id=f"mail:{uuid.uuid4().hex}")

    async def export_changed(self, export_id: int) -> None:
        await self._guarded(f"export {export_id}", self._export_jobs, export_id)

    async def _dataset_jobs(self, dataset_id: int) -> None:
        await self._many_dataset_jobs([dataset_id])

    async def _many_dataset_jobs(self, dataset_ids: Sequence[int]) -> None:
        async with _reading_the_database():
            rows = await deletion.datasets_by_ids(dataset_ids)
        now = self._clock.now()
        reminders = self._settings.reminders
        await self._replan(
            {
                jobs_index("dataset", i): planned_jobs(rows.get(i), reminders=reminders, now=now)
                for i in dataset_ids
            }
        )

    async def _export_jobs(self, export_id: int) -> None:
        row = await DataExport.get_or_none(id=export_id)
        wanted = planned_export_jobs(row, now=self._clock.now())
        await self._replan({jobs_index("export", export_id): wanted})

    async def _file_jobs(self, file_id: int) -> None:
        async with _reading_the_database():
            row = await ModelFile.get_or_none(id=file_id)
        await self._replan({jobs_index("file", file_id): planned_file_jobs(row)})

    async def _guarded(
        self, what: str, schedule: Callable[[int], Awaitable[None]], key: int
    ) -> None:
        await self._attempt(what, [(what, schedule, key)], lambda: schedule(key))

    async def _attempt(
        self,
        what: str,
        misses: Sequence[tuple[str, Callable[[int], Awaitable[None]], int]],
        schedule: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``schedule`` unless Redis failed a moment ago; if it fails, or is not
        run, each of ``misses`` is planned again later (the sweep covers them meanwhile)."""
        if self._down() or self._redis_missed:
            # Redis was down a moment ago: no request waits on it; the replay tries.
            log.warning("Redis unavailable: %s planned when it is back", what)
            self._miss_all(misses)
            return
        try:
            await asyncio.wait_for(schedule(), timeout=SCHEDULE_TIMEOUT)
        except DatabaseUnreadable as exc:  # Redis is fine: no Redis-down mode
            log.warning(
                "could not read %s from the database to schedule its retention jobs (%s); "
                "planned again in %ss (the sweep covers it meanwhile)",
                what,
                exc.cause,
                RETRY_AFTER,
            )
            self._miss_all(misses)
        except Exception as exc:  # Redis down or slow: planned again when it is back
            self._redis_missed = True
            await self._failed()
            log.warning(
                "could not schedule retention jobs for %s (%s); planned again when Redis "
                "is back (the sweep covers it meanwhile)",
                what,
                f"{exc.__class__.__name__}: {exc}",
            )
            self._miss_all(misses)

    def _down(self) -> bool:
        """Whether Redis failed a moment ago (no request waits on it then)."""
        return self._down_until is not None and self._clock.now() < self._down_until

    async def _failed(self) -> None:
        self._down_until = self._clock.now() + timedelta(seconds=RETRY_AFTER)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):  # closing a broken connection
                await pool.aclose()

    def _miss_all(
        self, misses: Sequence[tuple[str, Callable[[int], Awaitable[None]], int]]
    ) -> None:
        for what, schedule, key in misses:
            if len(self._missed) < MAX_MISSED:
                self._missed[what] = (schedule, key)
        if self._replay is None or self._replay.done():
            self._replay = asyncio.create_task(self._replay_missed(), name="arq-replay")

    async def _replay_missed(self) -> None:
        """Plan what was missed, as soon as Redis answers again."""
        while self._missed:
            if self._down_until is not None:
                await self._clock.sleep((self._down_until - self._clock.now()).total_seconds())
            for what, (schedule, key) in list(self._missed.items()):
                try:
                    await asyncio.wait_for(schedule(key), timeout=SCHEDULE_TIMEOUT)
                except DatabaseUnreadable:  # the database, not Redis: wait, then try again
                    await self._clock.sleep(RETRY_AFTER)
                    break
                except Exception:  # still down: wait, then try again
                    await self._failed()
                    break
                self._missed.pop(what, None)
            else:
                if self._redis_missed:
                    log.info("Redis is back: missed retention jobs planned")
                self._redis_missed = False

    async def _replan(self, plans: dict[str, list[PlannedJob]]) -> None:
        """For each object's index, enqueue its wanted jobs (ids hold the due time: the
        same state twice is one job) and remove its jobs that are no longer wanted: the
        indexes read in one round trip, the stale jobs removed in one transaction."""
        pool = await self._connect()
        indexes = list(plans)
        async with pool.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.smembers(index)
            members = await pipe.execute()
        stale = {
            index: {m.decode() for m in found} - {job.job_id for job in plans[index]}
            for index, found in zip(indexes, members, strict=True)
        }
        if any(stale.values()):
            async with pool.pipeline(transaction=True) as pipe:
                for index, job_ids in stale.items():
                    for job_id in job_ids:
                        pipe.zrem(default_queue_name, job_id)
                        pipe.delete(job_key_prefix + job_id)
                        pipe.srem(index, job_id)
                await pipe.execute()
        wanted = [job for jobs in plans.values() for job in jobs]
        for job in wanted:
            await pool.enqueue_job(job.function, *job.args, _job_id=job.job_id, _defer_until=job.at)
        if wanted:
            async with pool.pipeline(transaction=False) as pipe:
                for job in wanted:
                    pipe.sadd(job.index, job.job_id)
                await pipe.execute()
            keep = max(job.at for job in wanted) - self._clock.now() + timedelta(days=2)
            await pool.expire(index, int(keep.total_seconds()))


class ArqMail(ArqScheduler):
    """A worker's scheduler: it plans no retention work (it runs it), but e-mail its jobs
    queue is sent by a ``deliver_mail`` job of its own, at once."""

    async def dataset_changed(self, dataset_id: int) -> None:
        return None

    async def file_changed(self, file_id: int) -> None:
        return None
