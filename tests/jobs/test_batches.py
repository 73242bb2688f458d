"""Claims in batches, called directly with the injected clock: what falls due is claimed
by one statement per batch, concurrent claimers share the rows (never the same row
twice), and concurrent finishers write each tombstone, history entry and notice once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from jobs.tasks import expire_dataset, sweep
from storage.config.settings import Settings
from storage.db.enums import DatasetStatus, NotificationKind
from storage.db.models import DatasetEvent, Notification, TrainingDataset
from storage.retention import batches
from tests.conftest import Api, MutableClock, dataset_blobs, raw_id, set_visibility
from tests.jobs.conftest import owner_view

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="")
RETENTION = 60
COUNT = 12

Ctx = dict[str, Any]


async def test_concurrent_claims_share_the_due_rows_and_leave_the_rest(
    api: Api, clock: MutableClock
) -> None:
    # given private datasets whose windows end now, one made public, one not yet due
    ids = await api.private_datasets(COUNT)
    owner = await api.sign_up()
    _, _, public = await api.model_with_dataset(owner, "PRIVATE")
    await set_visibility(api, owner, public, "PUBLIC")
    clock.advance(RETENTION)
    _, _, later = await api.model_with_dataset(owner, "PRIVATE")
    # when four claimers take batches of five at once
    claims = await asyncio.gather(*(batches.claim_expired(clock.now(), limit=5) for _ in range(4)))
    # then every due row is claimed once, by exactly one of them, and nothing else is
    claimed = [i for batch in claims for i in batch]
    assert sorted(claimed) == sorted(ids)
    assert all(len(batch) <= 5 for batch in claims)
    statuses = Counter(await TrainingDataset.all().values_list("status", flat=True))
    assert statuses == {DatasetStatus.DELETING: COUNT, DatasetStatus.AVAILABLE: 2}
    assert await TrainingDataset.filter(id=await raw_id(later), status="AVAILABLE").exists()
    # and a claim with nothing due claims nothing
    assert await batches.claim_expired(clock.now(), limit=5) == []


async def test_many_due_at_once_are_deleted_once_by_concurrent_jobs_and_sweeps(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given many private datasets whose windows end in the same instant
    ids = await api.private_datasets(COUNT)
    assert len(dataset_blobs(settings.blob_dir)) == COUNT
    clock.advance(RETENTION)
    # when each one's job and two sweeps run at once
    results = await asyncio.gather(
        *(expire_dataset(ctx, i) for i in ids), sweep(ctx), sweep(ctx, startup=True)
    )
    # then each was deleted: one tombstone, one DELETED event, one notice, no bytes left
    assert sum(1 for r in results[:COUNT] if r) <= COUNT
    rows = await TrainingDataset.filter(id__in=ids)
    assert {r.status for r in rows} == {DatasetStatus.DELETED}
    assert {r.deleted_at for r in rows} == {clock.now()}
    assert all(r.receipt_payload and r.key_destroyed_at for r in rows)
    events = Counter(await DatasetEvent.filter(kind="DELETED").values_list("dataset_id", flat=True))
    assert events == dict.fromkeys(ids, 1)
    notices = Counter(
        await Notification.filter(kind=NotificationKind.DATASET_DELETED).values_list(
            "dataset_id", flat=True
        )
    )
    assert notices == dict.fromkeys(ids, 1)
    assert dataset_blobs(settings.blob_dir) == set()
    # and running everything again changes nothing
    again = await asyncio.gather(*(expire_dataset(ctx, i) for i in ids), sweep(ctx))
    assert not any(again[:COUNT])
    assert await Notification.filter(kind=NotificationKind.DATASET_DELETED).count() == COUNT


async def test_a_claim_left_before_its_key_is_finished_by_the_next_job(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given due datasets claimed by this process, which stopped before their keys went
    ids = await api.private_datasets(3)
    clock.advance(RETENTION)
    assert sorted(await batches.claim_expired(clock.now(), limit=10)) == sorted(ids)
    # when the job of one of them runs again (an earlier try of it failed)
    done = await expire_dataset(ctx, ids[0])
    # then it finishes that one; the others are the sweep's once their lease is over
    assert done is True
    assert (await TrainingDataset.get(id=ids[0])).status == DatasetStatus.DELETED
    clock.advance(30)
    assert (await sweep(ctx))["unstuck"] == 2
    for dataset_id in ids:
        assert (await TrainingDataset.get(id=dataset_id)).status == DatasetStatus.DELETED


async def test_the_owner_sees_the_claim_as_the_deletion(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private dataset claimed at the end of its window, its bytes not yet gone
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    clock.advance(RETENTION)
    claimed_at = clock.now()
    await batches.claim_expired(claimed_at, limit=10)
    clock.advance(5)
    # then the owner sees it deleted then, and it stays so once finished
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "DELETED"
    await sweep(ctx, startup=True)
    finished = await owner_view(api, owner, dataset_id)
    assert finished["status"] == "DELETED"
    assert finished["deletedAt"] == view["deletedAt"]
