"""The scheduler tells a failing database from a failing Redis: a change whose row cannot
be read is logged as the database's failure and tried again, and Redis stays in use."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from tortoise import connections

from jobs.adapters.scheduler import ArqScheduler
from storage.config.settings import load_settings
from tests.conftest import Api, MutableClock, raw_id
from tests.processes import RedisServer


async def test_a_database_failure_while_scheduling_is_not_taken_for_redis_down(
    api: Api,
    env: dict[str, str],
    clock: MutableClock,
    redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.set(datetime.now(UTC))  # arq reckons its jobs' expiry in real time
    owner = await api.sign_up()
    _, _, dataset = await api.model_with_dataset(owner, "PRIVATE")
    dataset_id = await raw_id(dataset)
    scheduler = ArqScheduler(load_settings({**env, "LORASHELF_REDIS_URL": redis.url}), clock)
    try:
        # given a scheduler that works, and then a database that fails every read of datasets
        await scheduler.dataset_changed(dataset_id)
        await connections.get("default").execute_script(
            "ALTER TABLE training_datasets RENAME TO training_datasets_away"
        )
        # when two changes are scheduled one after the other
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lorashelf"):
            await scheduler.dataset_changed(dataset_id)
            await scheduler.dataset_changed(dataset_id)
        # then each is logged as the database's failure, naming it, and neither as Redis's
        messages = [record.getMessage() for record in caplog.records]
        assert len(messages) == 2, messages
        for message in messages:
            assert f"could not read dataset {dataset_id} from the database" in message
            assert "training_datasets" in message
            assert "Redis" not in message
        # and Redis is still used at once (the scheduler never switched to Redis-down mode)
        assert await scheduler.queue_depth() > 0
    finally:
        await connections.get("default").execute_script(
            "ALTER TABLE training_datasets_away RENAME TO training_datasets"
        )
        await scheduler.close()
