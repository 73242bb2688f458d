"""A new window (private again after being public) gets its own reminders."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.tasks import sweep
from tests.conftest import Api, MutableClock, set_visibility
from tests.jobs.conftest import notifications_of


@pytest.mark.env(
    LORASHELF_PRIVATE_RETENTION="10d", LORASHELF_REMINDERS="1d", LORASHELF_TOKEN_LIFETIME="400d"
)
async def test_each_window_gets_its_reminder(
    api: Api, clock: MutableClock, ctx: dict[str, Any]
) -> None:
    # given a private dataset reminded once, one day before its first deletion date
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    clock.advance(9 * 86400)
    assert await sweep(ctx) == {"reminded": 1}
    # when the owner makes it public and private again, starting a new window
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    clock.advance(9 * 86400)
    # then the new window's reminder comes too, naming the new date
    assert await sweep(ctx) == {"reminded": 1}
    reminders = [n for n in await notifications_of(api, owner) if n["kind"] == "DATASET_EXPIRING"]
    assert len(reminders) == 2
    assert reminders[0]["message"] != reminders[1]["message"]
