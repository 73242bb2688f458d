"""What a sweep's batch of deletions tells others, through a real Redis: every deleted
dataset's queued jobs leave the queue, every live subscriber (in another process, over
pub/sub) hears its dataset and its owner's notification, and the batch's e-mail is one
pass for all, not one per notice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from arq import create_pool
from arq.constants import default_queue_name

from jobs.adapters.bus import DATASET, USER, Hub, RedisBus
from jobs.adapters.scheduler import ArqScheduler, jobs_index, redis_settings
from jobs.assembly import assemble
from jobs.tasks import sweep
from storage.blobs.local import LocalBlobStore
from storage.config.settings import load_settings
from storage.db.enums import DatasetStatus
from storage.db.models import TrainingDataset
from tests.conftest import Api, MutableClock
from tests.processes import RedisServer

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")
RETENTION = 60
COUNT = 12
SMTP = {
    "LORASHELF_SMTP_URL": "smtp://mailer:secret@127.0.0.1:1",  # nothing is sent here
    "LORASHELF_MAIL_FROM": "lorashelf <noreply@lorashelf.test>",
    "LORASHELF_PUBLIC_URL": "http://lorashelf.test",
}


async def test_a_batch_of_deletions_clears_its_jobs_signals_everyone_and_mails_once(
    api: Api,
    env: dict[str, str],
    clock: MutableClock,
    redis: RedisServer,
    store: LocalBlobStore,
) -> None:
    clock.set(datetime.now(UTC))  # arq reckons its jobs' expiry in real time
    settings = load_settings({**env, **SMTP, "LORASHELF_REDIS_URL": redis.url})
    assembly = assemble(settings, clock=clock, blobs=store, scheduler=ArqScheduler(settings, clock))
    pool = await create_pool(redis_settings(redis.url))
    hub = Hub()
    listener = RedisBus(redis.url, hub)  # another process's subscribers (serve's)
    try:
        listener.start()
        await asyncio.wait_for(listener.connected.wait(), 10)
        # given private datasets of two owners whose windows end together, each with its
        # deletion and reminder queued (as serve queues them when they are published)
        ids = await api.private_datasets(COUNT // 2) + await api.private_datasets(COUNT // 2)
        owners = set(await TrainingDataset.filter(id__in=ids).values_list("owner_id", flat=True))
        assert len(owners) == 2
        await assembly.runtime.scheduler.datasets_changed(ids)
        queued = {m.decode() for i in ids for m in await pool.smembers(jobs_index("dataset", i))}
        assert len(queued) == 2 * COUNT
        assert all([await pool.zscore(default_queue_name, j) is not None for j in queued])
        # and live subscribers listening for each dataset and each owner's notifications
        with contextlib.ExitStack() as stack:
            heard = {
                topic: stack.enter_context(hub.listen(topic))
                for topic in [*((DATASET, i) for i in ids), *((USER, o) for o in owners)]
            }
            # when one sweep deletes them all
            clock.advance(RETENTION)
            done = await sweep({"runtime": assembly.runtime})
            assert done.get("expired") == COUNT, done
            # then every subscriber hears its signal
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in heard.values())), 10)
        statuses = await TrainingDataset.filter(id__in=ids).values_list("status", flat=True)
        assert set(statuses) == {DatasetStatus.DELETED}
        # and none of their jobs is left queued, nor their job indexes
        assert [j for j in queued if await pool.zscore(default_queue_name, j) is not None] == []
        assert [i for i in ids if await pool.exists(jobs_index("dataset", i))] == []
        # and the e-mail of their notices is one pass for all of them
        left: list[Any] = await pool.zrange(default_queue_name, 0, -1)
        assert [j.decode().split(":")[0] for j in left] == ["mail"]
    finally:
        await listener.close()
        await pool.aclose()
        await assembly.runtime.scheduler.close()  # type: ignore[attr-defined]


async def test_a_batch_replanned_while_redis_is_down_is_planned_dataset_by_dataset_after(
    api: Api,
    env: dict[str, str],
    clock: MutableClock,
    redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.set(datetime.now(UTC))  # arq reckons its jobs' expiry in real time
    settings = load_settings({**env, "LORASHELF_REDIS_URL": redis.url})
    scheduler = ArqScheduler(settings, clock)
    ids = await api.private_datasets(4)
    try:
        # given Redis down
        redis.stop()
        # when a batch of datasets is replanned
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lorashelf.scheduler"):
            await scheduler.datasets_changed(ids)
        # then nothing is raised, and one warning says it is planned when Redis is back
        warned = [r.getMessage() for r in caplog.records if r.name == "lorashelf.scheduler"]
        assert len(warned) == 1 and "planned again when Redis is back" in warned[0], warned
        # and when Redis is back (empty), each dataset's jobs are queued after all
        redis.start()
        pool = await create_pool(redis_settings(redis.url))
        try:
            clock.advance(5)  # past the scheduler's pause after a failure

            async def planned() -> bool:
                return all([await pool.scard(jobs_index("dataset", i)) == 2 for i in ids])

            async with asyncio.timeout(10):
                while not await planned():
                    await asyncio.sleep(0.05)
        finally:
            await pool.aclose()
    finally:
        await scheduler.close()
