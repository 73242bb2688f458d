"""What the retention work logs, read as an operator reads it: a private dataset's
reminder and deletion never name its owner (the window's end is predictable from public
dates, so a line naming a user then says the user had a private dataset)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from jobs.tasks import sweep
from storage.db.models import TrainingDataset
from tests.conftest import Api, MutableClock

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s")


async def test_a_private_datasets_reminder_and_deletion_never_name_its_owner_in_a_log(
    api: Api, clock: MutableClock, ctx: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # given an owner (among others, so that the ids are not all 1) with a private dataset
    for _ in range(3):
        await api.sign_up()
    [dataset_id] = await api.private_datasets(1)
    owner_id = (await TrainingDataset.get(id=dataset_id)).owner_id
    owner = f"user {owner_id}"
    # when its reminder is sent and its window ends, as the operator's logs record it
    with caplog.at_level(logging.DEBUG, logger="lorashelf"):
        clock.advance(30)
        assert (await sweep(ctx)).get("reminded") == 1
        clock.advance(30)
        assert (await sweep(ctx)).get("expired") == 1
    # then no line names the owner
    lines = [r.getMessage() for r in caplog.records]
    assert lines, "nothing was logged"
    assert [line for line in lines if owner in line] == []
