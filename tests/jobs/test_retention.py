"""The retention jobs, called directly with the injected clock against the same
database the API writes: expiry, reminders, the sweep and orphan collection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from jobs.tasks import (
    BATCH,
    LEASE,
    ORPHAN_AGE,
    collect_orphan_blobs,
    expire_dataset,
    runtime_of,
    send_reminder,
    sweep,
)
from storage import uploads
from storage.blobs.local import LocalBlobStore
from storage.config.settings import Settings
from storage.crypto import keystore
from storage.db.enums import DeletionReason
from storage.db.models import TrainingDataset
from storage.retention import deletion as retention
from tests.conftest import (
    Api,
    MutableClock,
    Person,
    at,
    blob_files,
    dataset_blobs,
    make_zip,
    raw_id,
    set_visibility,
)
from tests.jobs.conftest import notifications_of, owner_view

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s,10s")

RETENTION = 60

Ctx = dict[str, Any]


def deleted_message(filename: str, model: str, version: str, when: str) -> str:
    return (
        f'Your private training dataset "{filename}" for {model} {version} was deleted on '
        f"{when}: its retention window ended."
    )


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def given_private_published(api: Api, owner: Person) -> str:
    """A private dataset of a version published right now (model Cats, version v1)."""
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    return dataset_id


# expire_dataset ------------------------------------------------------------------


async def test_expiry_before_the_window_ends_changes_nothing(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private dataset published now, a second before its window ends
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    files = dataset_blobs(settings.blob_dir)
    clock.advance(RETENTION - 1)
    # when
    done = await expire_dataset(ctx, await raw_id(dataset_id))
    # then
    assert done is False
    assert dataset_blobs(settings.blob_dir) == files and len(files) == 1
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "AVAILABLE"
    assert view["deletedAt"] is None and view["deletionReason"] is None
    assert await notifications_of(api, owner) == []


async def test_expiry_at_the_exact_instant_deletes_bytes_and_leaves_a_tombstone(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private dataset whose window ends exactly now
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    assert len(dataset_blobs(settings.blob_dir)) == 1
    clock.advance(RETENTION)
    # when
    done = await expire_dataset(ctx, await raw_id(dataset_id))
    # then the bytes are gone and the owner sees a tombstone
    assert done is True
    assert dataset_blobs(settings.blob_dir) == set()
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "DELETED"
    assert at(view["deletedAt"]) == clock.now()
    assert view["deletionReason"] == "EXPIRED"
    assert at(view["expiresAt"]) == clock.now()
    assert view["downloadUrl"] is None
    assert kinds(view["events"]) == ["UPLOAD_STARTED", "UPLOADED", "PUBLISHED", "DELETED"]
    assert view["events"][-1]["detail"] == "EXPIRED"
    assert at(view["events"][-1]["at"]) == clock.now()
    # and one notice naming model, version, file and date
    notices = await notifications_of(api, owner)
    assert [(n["kind"], n["message"]) for n in notices] == [
        (
            "DATASET_DELETED",
            deleted_message("data.zip", "Cats", "v1", "2026-03-01 12:01:00 UTC"),
        )
    ]
    assert at(notices[0]["createdAt"]) == clock.now()
    assert notices[0]["dataset"] == {
        "id": dataset_id,
        "status": "DELETED",
        "deletionReason": "EXPIRED",
    }


async def test_expiring_twice_deletes_and_notifies_once(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given an expired dataset, already deleted once
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    clock.advance(RETENTION)
    assert await expire_dataset(ctx, await raw_id(dataset_id)) is True
    deleted_at = (await owner_view(api, owner, dataset_id))["deletedAt"]
    clock.advance(5)
    # when the job runs again (a retry, or the sweep)
    again = await expire_dataset(ctx, await raw_id(dataset_id))
    # then nothing more happens
    assert again is False
    view = await owner_view(api, owner, dataset_id)
    assert view["deletedAt"] == deleted_at
    assert kinds(view["events"]).count("DELETED") == 1
    assert [n["kind"] for n in await notifications_of(api, owner)] == ["DATASET_DELETED"]


async def test_concurrent_expiries_delete_once(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given an expired dataset
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    clock.advance(RETENTION)
    # when two runners expire it at the same time
    results = await asyncio.gather(
        expire_dataset(ctx, await raw_id(dataset_id)), expire_dataset(ctx, await raw_id(dataset_id))
    )
    # then exactly one of them wrote the tombstone
    assert sorted(results) == [False, True]
    assert dataset_blobs(settings.blob_dir) == set()
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "DELETED"
    assert kinds(view["events"]).count("DELETED") == 1
    assert [n["kind"] for n in await notifications_of(api, owner)] == ["DATASET_DELETED"]


async def given_crash_after_blob_deletion(
    api: Api, clock: MutableClock, store: LocalBlobStore
) -> tuple[Person, str]:
    """An expired dataset whose deletion was claimed and whose bytes were deleted,
    and then the process died before writing the tombstone."""
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    clock.advance(RETENTION)
    now = clock.now()
    pk = await raw_id(dataset_id)
    claimed = await retention.claim_deletion(
        retention.expiry_condition(pk, now), reason=DeletionReason.EXPIRED, now=now
    )
    assert claimed is True
    row = await TrainingDataset.get(id=pk)
    assert row.blob_key is not None
    await store.delete(row.blob_key)
    return owner, dataset_id


async def test_rerun_after_a_crash_between_blob_deletion_and_tombstone_converges(
    api: Api, clock: MutableClock, ctx: Ctx, store: LocalBlobStore, settings: Settings
) -> None:
    # given a deletion that crashed half-way: claimed (DELETING) and bytes gone
    owner, dataset_id = await given_crash_after_blob_deletion(api, clock, store)
    assert dataset_blobs(settings.blob_dir) == set()
    # the half-done deletion (DELETING) already reads as DELETED
    assert (await owner_view(api, owner, dataset_id))["status"] == "DELETED"
    assert await notifications_of(api, owner) == []
    clock.advance(1)
    # when the job is retried
    done = await expire_dataset(ctx, await raw_id(dataset_id))
    # then it finishes the tombstone and the notice, once
    assert done is True
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "DELETED"
    assert view["deletionReason"] == "EXPIRED"
    # deletedAt is when access ended (the claim), written once, whoever finishes
    assert at(view["deletedAt"]) == clock.now() - timedelta(seconds=1)
    assert kinds(view["events"]).count("DELETED") == 1
    assert [n["kind"] for n in await notifications_of(api, owner)] == ["DATASET_DELETED"]
    assert await expire_dataset(ctx, await raw_id(dataset_id)) is False


async def test_sweep_finishes_a_stuck_deletion_only_after_the_claim_is_old(
    api: Api, clock: MutableClock, ctx: Ctx, store: LocalBlobStore
) -> None:
    # given a deletion that crashed half-way
    owner, dataset_id = await given_crash_after_blob_deletion(api, clock, store)
    claimed_at = clock.now()
    # when the sweep runs while the claim may still be in progress
    clock.advance(LEASE - 1)
    early = await sweep(ctx)
    # then it leaves the claim alone (the owner sees when access ended)
    assert early == {}
    assert await notifications_of(api, owner) == []
    assert at((await owner_view(api, owner, dataset_id))["deletedAt"]) == claimed_at
    # when the claim is LEASE seconds old
    clock.advance(1)
    late = await sweep(ctx)
    # then the sweep finishes it
    assert late == {"unstuck": 1}
    view = await owner_view(api, owner, dataset_id)
    assert view["status"] == "DELETED"
    assert at(view["deletedAt"]) == claimed_at  # written once: when access ended
    assert [n["kind"] for n in await notifications_of(api, owner)] == ["DATASET_DELETED"]
    assert await sweep(ctx) == {}


@pytest.mark.parametrize("state", ["public", "public draft", "made public before expiry"])
async def test_datasets_without_a_window_are_never_expired(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings, state: str
) -> None:
    # given a dataset that is public, public on a draft, or made public within its window
    # (a private draft's dataset has a window of its own: tests/jobs/test_draft_lifetime.py)
    owner = await api.sign_up()
    visibility = "PRIVATE" if state == "made public before expiry" else "PUBLIC"
    _, _, dataset_id = await api.model_with_dataset(
        owner, visibility, publish=state != "public draft"
    )
    if state == "made public before expiry":
        clock.advance(RETENTION - 1)
        await set_visibility(api, owner, dataset_id, "PUBLIC")
    # when long after any window would have ended, the jobs run
    clock.advance(10 * RETENTION)
    expired = await expire_dataset(ctx, await raw_id(dataset_id))
    swept = await sweep(ctx)
    # then the dataset is untouched
    assert expired is False
    assert swept == {}
    assert len(dataset_blobs(settings.blob_dir)) == 1
    view = await owner_view(api, owner, dataset_id)
    assert (view["status"], view["expiresAt"], view["deletedAt"]) == ("AVAILABLE", None, None)
    assert view["downloadUrl"] is not None
    assert await notifications_of(api, owner) == []


# send_reminder -------------------------------------------------------------------


def expiring_message(expires: str, left: str) -> str:
    return (
        f'Your private training dataset "data.zip" for Cats v1 will be deleted on {expires} '
        f"(in about {left}). Download it before then if you still need it."
    )


async def test_a_reminder_is_sent_when_due_and_only_once(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private dataset published now: expires in 60 s, reminded 30 s before
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    pk = await raw_id(dataset_id)
    # when the reminder runs a second early
    clock.advance(29)
    early = await send_reminder(ctx, pk, 30)
    # then nothing is sent
    assert early is False
    assert await notifications_of(api, owner) == []
    # when it runs on time
    clock.advance(1)
    sent = await send_reminder(ctx, pk, 30)
    # then the owner is told the date
    assert sent is True
    notices = await notifications_of(api, owner)
    assert [(n["kind"], n["message"]) for n in notices] == [
        ("DATASET_EXPIRING", expiring_message("2026-03-01 12:01:00 UTC", "30 seconds"))
    ]
    assert at(notices[0]["createdAt"]) == clock.now()
    assert notices[0]["readAt"] is None
    assert notices[0]["dataset"] == {
        "id": dataset_id,
        "status": "AVAILABLE",
        "deletionReason": None,
    }
    view = await owner_view(api, owner, dataset_id)
    assert kinds(view["events"]) == ["UPLOAD_STARTED", "UPLOADED", "PUBLISHED", "REMINDED"]
    assert view["events"][-1]["detail"] == "30 seconds before deletion"
    # when the same reminder runs again (a retry, or the sweep)
    clock.advance(1)
    again = await send_reminder(ctx, pk, 30)
    # then it is not sent twice
    assert again is False
    assert len(await notifications_of(api, owner)) == 1
    assert kinds((await owner_view(api, owner, dataset_id))["events"]).count("REMINDED") == 1


async def test_concurrent_reminders_send_one(api: Api, clock: MutableClock, ctx: Ctx) -> None:
    # given a reminder due now
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    clock.advance(30)
    # when two runners send it at once
    results = await asyncio.gather(
        send_reminder(ctx, await raw_id(dataset_id), 30),
        send_reminder(ctx, await raw_id(dataset_id), 30),
    )
    # then one notification
    assert sorted(results) == [False, True]
    assert [n["kind"] for n in await notifications_of(api, owner)] == ["DATASET_EXPIRING"]
    assert kinds((await owner_view(api, owner, dataset_id))["events"]).count("REMINDED") == 1


async def test_no_reminder_once_the_dataset_is_public(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private dataset made public before its reminder
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    clock.advance(20)
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    clock.advance(10)
    # when the reminder job runs at its old time
    sent = await send_reminder(ctx, await raw_id(dataset_id), 30)
    # then nothing is sent
    assert sent is False
    assert await notifications_of(api, owner) == []
    assert await sweep(ctx) == {}


@pytest.mark.env(LORASHELF_SWEEP_INTERVAL="5s")
async def test_a_late_reminder_is_sent_late_and_the_next_one_still_comes(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a reminder due 30 s after publishing, with a 10 s grace (2 x 5 s sweeps)
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    # when it runs 11 s late (an outage), the window still open
    clock.advance(30 + 11)
    sent = await send_reminder(ctx, await raw_id(dataset_id), 30)
    # then it is sent all the same, saying it is late
    assert sent is True
    late = expiring_message("2026-03-01 12:01:00 UTC", "19 seconds")
    late += " (This reminder comes late: it could not be sent on time.)"
    assert [n["message"] for n in await notifications_of(api, owner)] == [late]
    # and the sweep does not send it again, but sends the 10 s reminder on time
    assert await sweep(ctx) == {}
    clock.advance(9)  # 50 s after publishing: 10 s before deletion
    assert await sweep(ctx) == {"reminded": 1}
    notices = await notifications_of(api, owner)
    assert [(n["kind"], n["message"]) for n in notices] == [
        ("DATASET_EXPIRING", expiring_message("2026-03-01 12:01:00 UTC", "10 seconds")),
        ("DATASET_EXPIRING", late),
    ]


@pytest.mark.env(LORASHELF_SWEEP_INTERVAL="5s", LORASHELF_REMINDERS="40s,30s")
async def test_reminders_missed_in_an_outage_become_one_late_reminder(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given reminders due 40 s and 30 s before deletion (20 s and 30 s after publishing),
    # and nothing run until 45 s after publishing (an outage; the grace is 10 s)
    owner = await api.sign_up()
    await given_private_published(api, owner)
    clock.advance(45)
    # when the sweep catches up
    counts = await sweep(ctx)
    # then the owner gets one reminder, late, the latest due (not two at once)
    assert counts == {"reminded": 1}
    (notice,) = await notifications_of(api, owner)
    assert notice["message"].endswith("(This reminder comes late: it could not be sent on time.)")
    assert "in about 15 seconds" in notice["message"]
    # and nothing more until the deletion
    assert await sweep(ctx) == {}


@pytest.mark.env(LORASHELF_SWEEP_INTERVAL="5s")
async def test_a_reminder_just_within_the_grace_is_sent(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a reminder due 30 s after publishing, with a 10 s grace
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    # when it runs exactly 10 s late
    clock.advance(30 + 10)
    # then it is still sent
    assert await send_reminder(ctx, await raw_id(dataset_id), 30) is True
    notices = await notifications_of(api, owner)
    assert [n["message"] for n in notices] == [
        expiring_message("2026-03-01 12:01:00 UTC", "20 seconds")
    ]


@pytest.mark.env(
    LORASHELF_DRAFT_RETENTION="60s",
    LORASHELF_PRIVATE_RETENTION="120s",
    LORASHELF_REMINDERS="90s,10s",
)
async def test_a_reminder_due_before_a_draft_window_opened_is_never_sent(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # (A reminder at or beyond the published window is refused at start-up, see
    # tests/storage/test_config.py; a draft's shorter window can still be shorter.)
    # given a 60 s draft window and a reminder 90 s before deletion, i.e. 30 s before upload
    owner = await api.sign_up()
    model_id = await api.create_model(owner)
    version_id = await api.create_version(owner, model_id)
    dataset_id = await api.upload(owner, version_id, "PRIVATE")
    # when the sweep and the reminder job run right after the upload
    swept = await sweep(ctx)
    direct = await send_reminder(ctx, await raw_id(dataset_id), 90)
    # then the 90 s reminder is not sent: the owner would be told "in about 60 seconds"
    # by a reminder promised for 90 seconds before, about a window that just opened
    assert swept == {}
    assert direct is False
    assert await notifications_of(api, owner) == []
    # and the 10 s reminder comes on time
    clock.advance(50)
    assert await sweep(ctx) == {"reminded": 1}
    (notice,) = await notifications_of(api, owner)
    assert "(in about 10 seconds)" in notice["message"]


# Visibility changes move the window -------------------------------------------------


async def test_private_public_private_starts_a_new_window(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private dataset published at 12:00:00 (expiring 12:01:00)
    owner = await api.sign_up()
    dataset_id = await given_private_published(api, owner)
    pk = await raw_id(dataset_id)
    old_expiry = clock.now() + timedelta(seconds=RETENTION)
    # when it is made public at 12:00:10 and private again at 12:00:20
    clock.advance(10)
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    clock.advance(10)
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    # then the window is a full one from the second switch
    new_expiry = clock.now() + timedelta(seconds=RETENTION)
    assert at((await owner_view(api, owner, dataset_id))["expiresAt"]) == new_expiry
    # when the old expiry passes
    clock.set(old_expiry)
    assert await expire_dataset(ctx, pk) is False
    # then the dataset is still there; only the new window's 30 s reminder (12:00:50) is due
    assert await sweep(ctx) == {"reminded": 1}
    assert (await owner_view(api, owner, dataset_id))["status"] == "AVAILABLE"
    assert len(dataset_blobs(settings.blob_dir)) == 1
    # when the new expiry comes
    clock.set(new_expiry)
    assert await expire_dataset(ctx, pk) is True
    # then it is deleted
    view = await owner_view(api, owner, dataset_id)
    assert (view["status"], view["deletionReason"]) == ("DELETED", "EXPIRED")
    assert at(view["deletedAt"]) == new_expiry
    assert dataset_blobs(settings.blob_dir) == set()
    assert kinds(view["events"]) == [
        "UPLOAD_STARTED",
        "UPLOADED",
        "PUBLISHED",
        "MADE_PUBLIC",
        "MADE_PRIVATE",
        "REMINDED",
        "DELETED",
    ]
    assert [n["kind"] for n in await notifications_of(api, owner)] == [
        "DATASET_DELETED",
        "DATASET_EXPIRING",
    ]


# The sweep -------------------------------------------------------------------------

VIEWER_DATASETS = "{ viewer { trainingDatasets(first: 100) { edges { node { id status } } } } }"


async def test_one_sweep_does_all_the_overdue_work(
    api: Api, clock: MutableClock, ctx: Ctx, store: LocalBlobStore, settings: Settings
) -> None:
    # given, at 12:00, an upload started and never sent (its URL lives an hour)
    owner = await api.sign_up()
    model_id = await api.create_model(owner, "Abandoned")
    pending = (await api.start_upload(owner, await api.create_version(owner, model_id), 100))[
        "dataset"
    ]["id"]
    # and three private datasets published at 12:00
    overdue = [await given_private_published(api, owner) for _ in range(3)]
    # and one whose deletion crashed half-way at 12:01
    clock.advance(RETENTION)
    stuck_owner, stuck = await given_crash_after_blob_deletion(api, clock, store)
    # and, 35 s before the sweep, a private dataset published: its 30 s reminder is due
    sweep_at = clock.now() + timedelta(seconds=3600 + LEASE)
    clock.set(sweep_at - timedelta(seconds=35))
    reminded = await given_private_published(api, owner)
    clock.set(sweep_at)
    # when one sweep runs
    counts = await sweep(ctx)
    # then it did all of it
    assert counts == {"expired": 3, "reminded": 1, "unstuck": 1, "abandoned": 1}
    for dataset_id in overdue:
        view = await owner_view(api, owner, dataset_id)
        assert (view["status"], view["deletionReason"]) == ("DELETED", "EXPIRED")
        assert at(view["deletedAt"]) == sweep_at
    assert (await owner_view(api, stuck_owner, stuck))["status"] == "DELETED"
    assert [n["kind"] for n in await notifications_of(api, stuck_owner)] == ["DATASET_DELETED"]
    notices = await notifications_of(api, owner)
    assert sorted(n["kind"] for n in notices) == ["DATASET_DELETED"] * 3 + ["DATASET_EXPIRING"]
    assert len(dataset_blobs(settings.blob_dir)) == 1  # only the reminded dataset's bytes are left
    # and the abandoned upload is gone
    listed = (await api.gql(VIEWER_DATASETS, token=owner.token))["viewer"]["trainingDatasets"]
    listed_ids = [e["node"]["id"] for e in listed["edges"]]
    assert pending not in listed_ids
    assert sorted(listed_ids) == sorted([*overdue, reminded])
    assert (
        await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": pending}, owner.token)
    )["node"] is None
    # when the sweep runs again
    # then there is nothing left to do
    assert await sweep(ctx) == {}


async def test_the_sweep_leaves_an_upload_alone_while_its_bytes_keep_arriving(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a large upload on a slow link: a chunk every 50 s, the whole taking longer
    # than an abandoned upload's staleness (a 2 GiB file at 50 Mbit/s takes 6 minutes)
    owner = await api.sign_up()
    version_id = await api.create_version(owner, await api.create_model(owner))
    content = make_zip({"images/cat.txt": os.urandom(30_000)})
    started = await api.start_upload(owner, version_id, len(content))
    third = len(content) // 3
    swept: list[dict[str, int]] = []

    async def slow_body() -> AsyncIterator[bytes]:
        yield content[:third]
        clock.advance(50)
        yield content[third : 2 * third]
        clock.advance(50)
        yield content[2 * third : 2 * third + 100]
        clock.advance(50)
        # when the sweep runs mid-upload, 150 s after the PUT began (past the staleness),
        # 50 s after the last bytes arrived
        assert uploads.staleness(settings) < 150
        swept.append(await sweep(ctx))
        yield content[2 * third + 100 :]

    response = await api.http.put(started["uploadUrl"], content=slow_body())
    # then the upload is not taken for abandoned: it completes
    assert swept == [{}]
    assert response.status_code == 200, response.text
    view = await owner_view(api, owner, started["dataset"]["id"])
    assert view["status"] == "AVAILABLE"


@pytest.mark.env(LORASHELF_REMINDERS="")
async def test_a_sweep_works_through_more_than_one_batch(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given more overdue private datasets than one batch holds
    count = BATCH + 20
    owner = await api.sign_up()
    for n in range(count):
        if n % 40 == 0:  # a model holds at most 50 versions
            model_id = await api.create_model(owner, f"Model {n // 40}")
        version_id = await api.create_version(owner, model_id, f"v{n}")
        await api.upload(owner, version_id, "PRIVATE")
        await api.publish(owner, version_id)
    assert len(dataset_blobs(settings.blob_dir)) == count
    clock.advance(RETENTION)
    # when one sweep runs
    counts = await sweep(ctx)
    # then all of them are deleted
    assert counts == {"expired": count}
    assert dataset_blobs(settings.blob_dir) == set()
    unread = await api.gql("{ viewer { unreadNotificationCount } }", token=owner.token)
    assert unread["viewer"]["unreadNotificationCount"] == count
    assert await sweep(ctx) == {}


# Orphan blobs ------------------------------------------------------------------------


async def test_orphan_blobs_and_stale_temp_files_are_collected(
    api: Api, clock: MutableClock, ctx: Ctx, store: LocalBlobStore, settings: Settings
) -> None:
    # given a dataset's blob and its version's weights file blobs (referenced), written
    # long ago
    owner = await api.sign_up()
    await given_private_published(api, owner)
    referenced = blob_files(settings.blob_dir)
    assert len(dataset_blobs(settings.blob_dir)) == 1 and len(referenced) > 1
    written = clock.now().timestamp()

    async def orphan() -> str:
        writer = runtime_of(ctx).blobs.writer()
        await writer.write(b"x")
        return await writer.commit()

    # and an orphan blob (a crash between commit and the row update), written then too
    old_orphan = store.path_for(await orphan())
    # and a temp file left by a dead upload, written then too
    stale_temp = store.tmp_dir / "dead.part"
    stale_temp.write_bytes(b"partial")
    for path in (*referenced, old_orphan, stale_temp):
        os.utime(path, (written, written))
    # and, an hour and a minute later, a fresh orphan and a fresh temp file
    clock.advance(ORPHAN_AGE + 60)
    fresh = clock.now().timestamp() - 30
    young_orphan = store.path_for(await orphan())
    young_temp = store.tmp_dir / "live.part"
    young_temp.write_bytes(b"in flight")
    for path in (young_orphan, young_temp):
        os.utime(path, (fresh, fresh))
    # when the collector runs
    removed = await collect_orphan_blobs(ctx)
    # then only the old unreferenced files are gone
    assert removed == 2
    assert not old_orphan.exists()
    assert not stale_temp.exists()
    assert all(path.exists() for path in referenced)
    assert young_orphan.exists()
    assert young_temp.exists()
    assert blob_files(settings.blob_dir) == referenced | {young_orphan}
    # and the old orphan's key is gone with it, the young one's kept
    assert await keystore.load(runtime_of(ctx).master, old_orphan.name) is None
    assert await keystore.load(runtime_of(ctx).master, young_orphan.name) is not None
    # and a second run finds nothing
    assert await collect_orphan_blobs(ctx) == 0
