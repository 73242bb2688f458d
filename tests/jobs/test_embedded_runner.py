"""The embedded runner (``serve``'s retention work without Redis), driven by the injected
clock: it sleeps until what is due, wakes when time reaches it, does it once, and
nothing more happens however long time runs on afterwards. (tests/jobs/
test_embedded_e2e.py shows the same runner in a real ``lorashelf serve``.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from jobs.runner import EmbeddedRunner
from storage.blobs.local import LocalBlobStore
from tests.conftest import Api, MutableClock, Person, at, dataset_blobs
from tests.jobs.conftest import notifications_of, owner_view

RETENTION = 60
REMINDER = 20
SWEEP = 10

pytestmark = pytest.mark.env(
    LORASHELF_PRIVATE_RETENTION=f"{RETENTION}s",
    LORASHELF_REMINDERS=f"{REMINDER}s",
    LORASHELF_SWEEP_INTERVAL=f"{SWEEP}s",
)


@pytest.fixture
async def running(ctx: dict[str, Any], clock: MutableClock) -> AsyncIterator[EmbeddedRunner]:
    """Starts the runner on the same runtime (clock, database, blobs) the API writes
    through, when a test is ready: ``await start()``."""
    runner = EmbeddedRunner()
    yield runner
    await runner.stop()


async def start(runner: EmbeddedRunner, ctx: dict[str, Any], clock: MutableClock) -> None:
    runner.start(ctx["runtime"])
    await clock.asleep()  # its first pass (the start-up sweep) is done


async def notices(api: Api, owner: Person, dataset_id: str) -> Counter[str]:
    found = await notifications_of(api, owner)
    return Counter(n["kind"] for n in found if n["dataset"] and n["dataset"]["id"] == dataset_id)


async def history(api: Api, owner: Person, dataset_id: str) -> Counter[str]:
    return Counter(e["kind"] for e in (await owner_view(api, owner, dataset_id))["events"])


async def test_the_runner_reminds_then_deletes_once_as_time_passes(
    api: Api,
    clock: MutableClock,
    store: LocalBlobStore,
    ctx: dict[str, Any],
    running: EmbeddedRunner,
) -> None:
    # given a private dataset published now, and the runner started (asleep)
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    expires = at((await owner_view(api, owner, dataset_id))["expiresAt"])
    assert expires == clock.now() + timedelta(seconds=RETENTION)
    await start(running, ctx, clock)

    # when time reaches a moment before the reminder is due, then nothing is sent
    clock.advance(RETENTION - REMINDER - 1)
    await clock.asleep()
    assert await notices(api, owner, dataset_id) == Counter()

    # when it reaches the reminder, then the runner wakes and sends it
    clock.advance(1)
    await clock.asleep()
    assert await notices(api, owner, dataset_id) == Counter(DATASET_EXPIRING=1)
    assert (await owner_view(api, owner, dataset_id))["status"] == "AVAILABLE"

    # when it reaches the end of the window, then the dataset is deleted at that instant
    clock.set(expires)
    await clock.asleep()
    tombstone = await owner_view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED" and tombstone["deletionReason"] == "EXPIRED"
    assert at(tombstone["deletedAt"]) == expires
    assert dataset_blobs(store.root) == set()

    # and however long time runs on (many passes of the runner), nothing happens again
    for _ in range(6):
        clock.advance(SWEEP)
        await clock.asleep()
    assert await notices(api, owner, dataset_id) == Counter(DATASET_EXPIRING=1, DATASET_DELETED=1)
    assert (await history(api, owner, dataset_id))["DELETED"] == 1
    assert (await history(api, owner, dataset_id))["REMINDED"] == 1
    assert (await owner_view(api, owner, dataset_id))["deletedAt"] == tombstone["deletedAt"]


async def test_a_restarted_runner_deletes_what_expired_while_it_was_stopped(
    api: Api,
    clock: MutableClock,
    store: LocalBlobStore,
    ctx: dict[str, Any],
    running: EmbeddedRunner,
) -> None:
    # given a private dataset whose window ended (and whose reminder fell due) while no
    # runner ran
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    expires = at((await owner_view(api, owner, dataset_id))["expiresAt"])
    clock.set(expires + timedelta(seconds=5))
    assert len(dataset_blobs(store.root)) == 1

    # when the runner starts, then its first pass deletes it, once
    await start(running, ctx, clock)
    tombstone = await owner_view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED" and tombstone["deletionReason"] == "EXPIRED"
    assert dataset_blobs(store.root) == set()
    for _ in range(6):
        clock.advance(SWEEP)
        await clock.asleep()
    # and the reminder that fell due while it was stopped is not sent after the fact
    assert await notices(api, owner, dataset_id) == Counter(DATASET_DELETED=1)
    assert (await history(api, owner, dataset_id))["DELETED"] == 1


@pytest.mark.env(LORASHELF_DRAFT_RETENTION="90s")
async def test_a_draft_is_reminded_and_deleted_on_its_draft_lifetime_once(
    api: Api,
    clock: MutableClock,
    store: LocalBlobStore,
    ctx: dict[str, Any],
    running: EmbeddedRunner,
) -> None:
    # given a private dataset of a version never published, and the runner started
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE", publish=False)
    expires = at((await owner_view(api, owner, dataset_id))["expiresAt"])
    assert expires == clock.now() + timedelta(seconds=90)
    await start(running, ctx, clock)

    # when time runs past its draft lifetime and on
    clock.set(expires - timedelta(seconds=REMINDER))
    await clock.asleep()
    assert await notices(api, owner, dataset_id) == Counter(DATASET_EXPIRING=1)
    clock.set(expires)
    await clock.asleep()
    for _ in range(6):
        clock.advance(SWEEP)
        await clock.asleep()

    # then it was reminded once and deleted once, at its expiry
    tombstone = await owner_view(api, owner, dataset_id)
    assert at(tombstone["deletedAt"]) == expires
    assert await notices(api, owner, dataset_id) == Counter(DATASET_EXPIRING=1, DATASET_DELETED=1)
    assert (await history(api, owner, dataset_id))["DELETED"] == 1
