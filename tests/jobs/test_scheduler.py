"""``planned_jobs``: the exact-time jobs a dataset needs, with deterministic ids; and
what the scheduler queues in Redis for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import create_pool
from arq.constants import default_queue_name

from jobs.adapters.scheduler import (
    ArqScheduler,
    PlannedJob,
    jobs_index,
    plan_ahead,
    planned_jobs,
    redis_settings,
)
from storage.config.settings import load_settings
from storage.db.models import TrainingDataset
from storage.retention import deletion as retention
from tests.conftest import Api, MutableClock, Person, raw_id, set_visibility
from tests.processes import RedisServer

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s,10s")

REMINDERS = (30, 10)
DELETE = (
    "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
    "{ dataset { status } userErrors { code } } }"
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def row(dataset_id: str) -> TrainingDataset:
    found = await retention.dataset_by_id(await raw_id(dataset_id))
    assert found is not None
    return found


async def plan(dataset_id: str, clock: MutableClock) -> list[PlannedJob]:
    return planned_jobs(await row(dataset_id), reminders=REMINDERS, now=clock.now())


async def given_private_published(api: Api) -> tuple[Person, str]:
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    return owner, dataset_id


async def test_nothing_is_planned_for_no_dataset(database: None, clock: MutableClock) -> None:
    # given no dataset (it was deleted for good); when planned; then no jobs
    assert planned_jobs(None, reminders=REMINDERS, now=clock.now()) == []


@pytest.mark.parametrize("state", ["public", "public draft", "pending upload", "deleted"])
async def test_nothing_is_planned_without_a_private_window(
    api: Api, clock: MutableClock, state: str
) -> None:
    # given a dataset that is public (published or not), still uploading, or deleted
    owner = await api.sign_up()
    if state == "pending upload":
        version_id = await api.create_version(owner, await api.create_model(owner))
        dataset_id = (await api.start_upload(owner, version_id, 100))["dataset"]["id"]
    else:
        visibility = "PRIVATE" if state == "deleted" else "PUBLIC"
        _, _, dataset_id = await api.model_with_dataset(
            owner, visibility, publish=state != "public draft"
        )
    if state == "deleted":
        await api.mutate("deleteDataset", DELETE, {"i": {"datasetId": dataset_id}}, owner.token)
    # when
    jobs = await plan(dataset_id, clock)
    # then
    assert jobs == []


async def test_a_private_published_dataset_gets_its_expiry_and_reminders(
    api: Api, clock: MutableClock
) -> None:
    # given a private dataset published now
    _, dataset_id = await given_private_published(api)
    pk = await raw_id(dataset_id)
    expires = clock.now() + timedelta(seconds=60)
    # when
    jobs = await plan(dataset_id, clock)
    # then one expiry at expiresAt and one reminder per offset
    remind_30 = expires - timedelta(seconds=30)
    remind_10 = expires - timedelta(seconds=10)
    index = jobs_index("dataset", pk)
    assert jobs == [
        PlannedJob(f"expire:{pk}:{ms(expires)}", "expire_dataset", (pk,), expires, index),
        PlannedJob(f"remind:{pk}:30:{ms(remind_30)}", "send_reminder", (pk, 30), remind_30, index),
        PlannedJob(f"remind:{pk}:10:{ms(remind_10)}", "send_reminder", (pk, 10), remind_10, index),
    ]
    assert ms(expires) == 1772366460000  # 2026-03-01 12:01:00 UTC


async def test_only_reminders_still_ahead_are_planned(api: Api, clock: MutableClock) -> None:
    # given a private dataset whose 30 s reminder time has just passed
    _, dataset_id = await given_private_published(api)
    pk = await raw_id(dataset_id)
    expires = clock.now() + timedelta(seconds=60)
    clock.advance(30)
    # when
    jobs = await plan(dataset_id, clock)
    # then the expiry and the 10 s reminder remain
    assert [(job.function, job.args, job.at) for job in jobs] == [
        ("expire_dataset", (pk,), expires),
        ("send_reminder", (pk, 10), expires - timedelta(seconds=10)),
    ]
    # and once all reminders passed, only the expiry (even when overdue)
    clock.advance(100)
    assert [job.job_id for job in await plan(dataset_id, clock)] == [f"expire:{pk}:{ms(expires)}"]


async def test_the_same_state_plans_the_same_job_ids(api: Api, clock: MutableClock) -> None:
    # given a private published dataset, planned once
    _, dataset_id = await given_private_published(api)
    first = await plan(dataset_id, clock)
    # when it is planned again a little later, nothing having changed
    clock.advance(5)
    second = await plan(dataset_id, clock)
    # then the ids are the same (so ARQ enqueues each job once)
    assert [job.job_id for job in second] == [job.job_id for job in first]
    assert second == first


async def test_a_moved_window_plans_new_job_ids(api: Api, clock: MutableClock) -> None:
    # given a private published dataset, planned once
    owner, dataset_id = await given_private_published(api)
    before = {job.job_id for job in await plan(dataset_id, clock)}
    # when its window moves (made public and private again)
    clock.advance(20)
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    assert await plan(dataset_id, clock) == []
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    after = await plan(dataset_id, clock)
    # then every job has a new id, at the new times
    expires = clock.now() + timedelta(seconds=60)
    assert [job.at for job in after] == [
        expires,
        expires - timedelta(seconds=30),
        expires - timedelta(seconds=10),
    ]
    assert before.isdisjoint(job.job_id for job in after)


async def test_jobs_queued_again_after_redis_lost_them_go_when_the_dataset_goes_public(
    api: Api, env: dict[str, str], clock: MutableClock, redis: RedisServer, ctx: dict[str, Any]
) -> None:
    clock.set(datetime.now(UTC))  # arq reckons its jobs' expiry in real time
    owner, dataset_id = await given_private_published(api)
    pk = await raw_id(dataset_id)
    scheduler = ArqScheduler(load_settings({**env, "LORASHELF_REDIS_URL": redis.url}), clock)
    pool = await create_pool(redis_settings(redis.url))
    try:
        # given a private dataset's jobs queued, then lost with everything in Redis (a
        # restart without persistence)
        await scheduler.dataset_changed(pk)
        await pool.flushall()
        # when a sweep queues the coming work again from the database
        rt = ctx["runtime"]
        sweeps = 1 + 60 // rt.settings.sweep_interval  # the whole 60 s window
        assert await plan_ahead(pool, rt, now=clock.now(), sweeps=sweeps, limit=100) == 3
        ids = [job.job_id for job in await plan(dataset_id, clock)]
        assert [await pool.zscore(default_queue_name, i) is not None for i in ids] == [True] * 3
        # and the dataset is then made public (serve tells the scheduler)
        await set_visibility(api, owner, dataset_id, "PUBLIC")
        await scheduler.dataset_changed(pk)
        # then none of its jobs is left in the queue
        assert [await pool.zscore(default_queue_name, i) for i in ids] == [None] * 3
    finally:
        await pool.aclose()
        await scheduler.close()
