"""The draft lifetime: a private dataset of a version that is never published expires
``LORASHELF_DRAFT_RETENTION`` after its bytes arrive, with the reminders, deletion,
notice and history of a published one. Publishing replaces the draft window with the
normal one; visibility changes open or clear it; the sweep repairs a private dataset
left without a window. Job functions called directly, time moved with the injected
clock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.tasks import expire_dataset, send_reminder, sweep
from storage.config.settings import Settings
from storage.db.models import TrainingDataset
from tests.conftest import (
    START,
    Api,
    MutableClock,
    Person,
    at,
    blob_files,
    dataset_blobs,
    make_safetensors,
    make_zip,
    raw_id,
    set_visibility,
)
from tests.jobs.conftest import notifications_of

Ctx = dict[str, Any]

DRAFT = 100
PRIVATE = 60
draft_env = pytest.mark.env(
    LORASHELF_DRAFT_RETENTION=f"{DRAFT}s",
    LORASHELF_PRIVATE_RETENTION=f"{PRIVATE}s",
    LORASHELF_REMINDERS="30s,10s",
)

DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status visibility "
    "filename sha256 uploadedAt expiresAt deletedAt deletionReason downloadUrl "
    "events { kind at detail } } } }"
)
FILE = (
    "query($id: ID!) { node(id: $id) { ... on ModelFile { id withheldKeys headerExpiresAt "
    "headerErasedAt originalSha256 sha256 downloadUrl headerMetadata { key value } } } }"
)
TAGS = '{"otters": {"otter": 12, "river": 3}}'


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def when(moment: datetime) -> str:
    """A date as the notifications write it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def view(api: Api, owner: Person, dataset_id: str) -> dict[str, Any]:
    node: dict[str, Any] | None = (await api.gql(DATASET, {"id": dataset_id}, owner.token))["node"]
    assert node is not None
    return node


async def file_view(api: Api, owner: Person, file_id: str) -> dict[str, Any]:
    node: dict[str, Any] | None = (await api.gql(FILE, {"id": file_id}, owner.token))["node"]
    assert node is not None
    return node


async def given_draft(
    api: Api, owner: Person, model: str = "Otters", version: str = "draft-3"
) -> str:
    """A model with one draft version (never published); the version's ID."""
    model_id = await api.create_model(owner, model)
    return await api.create_version(owner, model_id, version)


async def start(
    api: Api, owner: Person, version_id: str, body: bytes, visibility: str = "PRIVATE"
) -> dict[str, Any]:
    payload = await api.start_upload(
        owner, version_id, len(body), visibility, filename="otters.zip"
    )
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload


async def upload(
    api: Api, owner: Person, version_id: str, body: bytes, visibility: str = "PRIVATE"
) -> str:
    """A dataset named otters.zip uploaded completely now; its ID."""
    payload = await start(api, owner, version_id, body, visibility)
    response = await api.put(payload["uploadUrl"], body)
    assert response.status_code == 200, response.text
    dataset_id: str = payload["dataset"]["id"]
    return dataset_id


async def notices(api: Api, owner: Person, kind: str) -> list[dict[str, Any]]:
    return [n for n in await notifications_of(api, owner) if n["kind"] == kind]


# 1. A private draft dataset lives the draft lifetime --------------------------------


@draft_env
async def test_private_draft_dataset_is_reminded_then_deleted_when_its_draft_window_ends(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private dataset uploaded now to a draft that is never published
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    body = make_zip({"otters/1.txt": b"otter" * 300})
    dataset_id = await upload(api, owner, version_id, body)
    pk = await raw_id(dataset_id)
    uploaded = clock.now()

    # then its window ends the draft lifetime after the upload
    first = await view(api, owner, dataset_id)
    assert first["status"] == "AVAILABLE"
    assert at(first["uploadedAt"]) == uploaded
    expires = at(first["expiresAt"])
    assert expires == uploaded + seconds(DRAFT)
    assert len(dataset_blobs(settings.blob_dir)) == 1
    # and meanwhile the owner downloads exactly what she sent
    response = await api.http.get(first["downloadUrl"])
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(body).hexdigest()

    # when the jobs run a second before the first reminder is due
    clock.set(expires - seconds(31))
    assert await sweep(ctx) == {}
    assert await send_reminder(ctx, pk, 30) is False
    assert await notifications_of(api, owner) == []

    # when the first reminder falls due
    clock.set(expires - seconds(30))
    assert await sweep(ctx) == {"reminded": 1}
    # then it is sent once, however often the jobs run
    assert await send_reminder(ctx, pk, 30) is False
    assert await sweep(ctx) == {}
    [reminder] = await notices(api, owner, "DATASET_EXPIRING")
    assert at(reminder["createdAt"]) == clock.now()
    for part in ('"otters.zip"', "Otters", "draft-3", when(expires)):
        assert part in reminder["message"], (part, reminder["message"])
    assert reminder["dataset"]["id"] == dataset_id

    # when the second reminder falls due
    clock.set(expires - seconds(10))
    assert await sweep(ctx) == {"reminded": 1}
    assert await send_reminder(ctx, pk, 10) is False
    assert await sweep(ctx) == {}
    reminders = await notices(api, owner, "DATASET_EXPIRING")
    assert len(reminders) == 2
    assert when(expires) in reminders[0]["message"]
    earlier_url = (await view(api, owner, dataset_id))["downloadUrl"]
    assert earlier_url is not None

    # when the window ends, before any job has run
    clock.set(expires)
    at_end = await view(api, owner, dataset_id)
    # then access has ended although the bytes are still there
    assert at_end["downloadUrl"] is None
    assert len(dataset_blobs(settings.blob_dir)) == 1

    # when the sweep runs
    clock.advance(2)
    assert await sweep(ctx) == {"expired": 1}
    # then the bytes are gone and the owner sees an expired tombstone
    assert dataset_blobs(settings.blob_dir) == set()
    assert (await api.http.get(earlier_url)).status_code == 404
    tombstone = await view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED"
    assert tombstone["deletionReason"] == "EXPIRED"
    assert at(tombstone["deletedAt"]) == clock.now()
    assert at(tombstone["expiresAt"]) == expires
    assert tombstone["downloadUrl"] is None
    assert kinds(tombstone["events"]) == [
        "UPLOAD_STARTED",
        "UPLOADED",
        "DOWNLOADED",
        "REMINDED",
        "REMINDED",
        "DELETED",
    ]
    assert tombstone["events"][-1]["detail"] == "EXPIRED"
    # and one deletion notice naming file, model, version and date
    [deleted] = await notices(api, owner, "DATASET_DELETED")
    for part in ('"otters.zip"', "Otters", "draft-3", when(clock.now())):
        assert part in deleted["message"], (part, deleted["message"])
    assert deleted["dataset"] == {
        "id": dataset_id,
        "status": "DELETED",
        "deletionReason": "EXPIRED",
    }

    # when the jobs run again later
    clock.advance(DRAFT)
    assert await sweep(ctx) == {}
    assert await expire_dataset(ctx, pk) is False
    # then nothing changes
    assert await view(api, owner, dataset_id) == tombstone
    assert len(await notifications_of(api, owner)) == 3


@draft_env
async def test_expiry_job_before_the_draft_window_ends_changes_nothing(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private draft dataset a second before its draft window ends
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip())
    clock.advance(DRAFT - 1)
    # when the expiry job runs (early)
    done = await expire_dataset(ctx, await raw_id(dataset_id))
    # then the dataset is untouched and still downloadable
    assert done is False
    current = await view(api, owner, dataset_id)
    assert current["status"] == "AVAILABLE"
    assert current["downloadUrl"] is not None
    assert len(dataset_blobs(settings.blob_dir)) == 1


# 2. Publishing replaces the draft window -----------------------------------------


@pytest.mark.parametrize(
    ("draft", "private", "offsets"),
    [
        pytest.param(
            100,
            20,
            (15, 5),
            marks=pytest.mark.env(
                LORASHELF_DRAFT_RETENTION="100s",
                LORASHELF_PRIVATE_RETENTION="20s",
                LORASHELF_REMINDERS="15s,5s",
            ),
            id="shorter than what was left",
        ),
        pytest.param(
            100,
            60,
            (30, 10),
            marks=pytest.mark.env(
                LORASHELF_DRAFT_RETENTION="100s",
                LORASHELF_PRIVATE_RETENTION="60s",
                LORASHELF_REMINDERS="30s,10s",
            ),
            id="longer than what was left",
        ),
    ],
)
async def test_publishing_replaces_the_draft_window_with_the_private_window(
    api: Api,
    clock: MutableClock,
    ctx: Ctx,
    settings: Settings,
    draft: int,
    private: int,
    offsets: tuple[int, int],
) -> None:
    # given a private dataset uploaded to a draft, half-way through its draft window
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip())
    pk = await raw_id(dataset_id)
    uploaded = clock.now()
    old_expiry = uploaded + seconds(draft)
    assert at((await view(api, owner, dataset_id))["expiresAt"]) == old_expiry
    clock.advance(50)

    # when the version is published
    published = await api.publish(owner, version_id)

    # then the window is the private retention from publishing, not what was left
    published_at = at(published["publishedAt"])
    assert published_at == clock.now()
    new_expiry = published_at + seconds(private)
    assert new_expiry != old_expiry
    assert at((await view(api, owner, dataset_id))["expiresAt"]) == new_expiry
    old_times = {old_expiry - seconds(o): o for o in offsets}
    new_times = {new_expiry - seconds(o): o for o in offsets}
    assert not set(old_times) & set(new_times)

    # when the clock passes every old and new reminder time and both expiries
    for moment in sorted({*old_times, *new_times, old_expiry, new_expiry}):
        clock.set(moment)
        swept = await sweep(ctx)
        if moment in new_times:
            # then each new reminder comes at its new time
            assert swept == {"reminded": 1}, moment
        elif moment == new_expiry:
            # and the dataset is deleted at the new expiry
            assert swept == {"expired": 1}, moment
        else:
            # and nothing happens at the old reminder times or the old expiry
            assert swept == {}, moment
        if moment in old_times:
            assert await send_reminder(ctx, pk, old_times[moment]) is False, moment

    reminders = await notices(api, owner, "DATASET_EXPIRING")
    assert len(reminders) == 2
    assert sorted(at(n["createdAt"]) for n in reminders) == sorted(new_times)
    for reminder in reminders:
        assert when(new_expiry) in reminder["message"]
        assert when(old_expiry) not in reminder["message"]
    tombstone = await view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED"
    assert tombstone["deletionReason"] == "EXPIRED"
    assert at(tombstone["deletedAt"]) == new_expiry
    assert at(tombstone["expiresAt"]) == new_expiry
    assert kinds(tombstone["events"]) == [
        "UPLOAD_STARTED",
        "UPLOADED",
        "PUBLISHED",
        "REMINDED",
        "REMINDED",
        "DELETED",
    ]
    assert len(await notices(api, owner, "DATASET_DELETED")) == 1
    assert dataset_blobs(settings.blob_dir) == set()


@draft_env
async def test_a_reminder_sent_in_the_draft_window_does_not_stop_the_published_ones(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private draft dataset whose first reminder was sent for the draft window
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip())
    draft_expiry = clock.now() + seconds(DRAFT)
    clock.set(draft_expiry - seconds(30))
    assert await sweep(ctx) == {"reminded": 1}
    # when the version is published a little later
    clock.advance(5)
    published_at = at((await api.publish(owner, version_id))["publishedAt"])
    expiry = published_at + seconds(PRIVATE)
    assert at((await view(api, owner, dataset_id))["expiresAt"]) == expiry
    # then the published window's reminders come at their own times, naming its date
    clock.set(draft_expiry - seconds(10))
    assert await sweep(ctx) == {}
    clock.set(expiry - seconds(30))
    assert await sweep(ctx) == {"reminded": 1}
    clock.set(expiry - seconds(10))
    assert await sweep(ctx) == {"reminded": 1}
    reminders = await notices(api, owner, "DATASET_EXPIRING")
    assert len(reminders) == 3
    assert sum(when(expiry) in n["message"] for n in reminders) == 2
    assert sum(when(draft_expiry) in n["message"] for n in reminders) == 1
    # and it is deleted at the published window's end, not the draft's
    clock.set(draft_expiry)
    assert await sweep(ctx) == {}
    assert (await view(api, owner, dataset_id))["downloadUrl"] is not None
    clock.set(expiry)
    assert await sweep(ctx) == {"expired": 1}


@draft_env
async def test_publishing_after_the_draft_window_ended_does_not_bring_the_dataset_back(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a private draft dataset whose draft window has ended, not yet swept
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    await api.upload_file(owner, version_id)
    dataset_id = await upload(api, owner, version_id, make_zip())
    expiry = clock.now() + seconds(DRAFT)
    clock.set(expiry + seconds(1))
    assert (await view(api, owner, dataset_id))["downloadUrl"] is None
    # when the owner publishes the version (whether or not that is accepted)
    await api.raw(
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { code } } }",
        {"i": {"versionId": version_id}},
        owner.token,
    )
    # then access does not come back, and the next sweep deletes it as expired
    after = await view(api, owner, dataset_id)
    assert after["downloadUrl"] is None, f"access came back; expiresAt now {after['expiresAt']}"
    assert await sweep(ctx) == {"expired": 1}
    tombstone = await view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED"
    assert tombstone["deletionReason"] == "EXPIRED"
    assert dataset_blobs(settings.blob_dir) == set()


# 3. Visibility changes on a draft ------------------------------------------------


@draft_env
async def test_public_draft_dataset_gets_a_draft_window_when_made_private_and_loses_it_when_public(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a public dataset of a draft
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip(), "PUBLIC")
    # then it has no window, and nothing happens to it long after a draft window
    assert (await view(api, owner, dataset_id))["expiresAt"] is None
    clock.advance(10 * DRAFT)
    assert await sweep(ctx) == {}

    # when the owner makes it private
    made_private = clock.now()
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    # then a full draft window starts at that moment
    private = await view(api, owner, dataset_id)
    assert private["visibility"] == "PRIVATE"
    assert at(private["expiresAt"]) == made_private + seconds(DRAFT)

    # when she makes it public again within that window
    clock.advance(DRAFT - 40)
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    # then the window is cleared
    public = await view(api, owner, dataset_id)
    assert public["visibility"] == "PUBLIC"
    assert public["expiresAt"] is None
    # and neither its reminders nor its end do anything, long after
    for later in (30, 10, 0):
        clock.set(made_private + seconds(DRAFT - later))
        assert await sweep(ctx) == {}
    clock.advance(10 * DRAFT)
    assert await sweep(ctx) == {}
    assert await expire_dataset(ctx, await raw_id(dataset_id)) is False
    kept = await view(api, owner, dataset_id)
    assert kept["status"] == "AVAILABLE"
    assert kept["downloadUrl"] is not None
    assert len(dataset_blobs(settings.blob_dir)) == 1
    assert await notifications_of(api, owner) == []


@draft_env
async def test_private_draft_dataset_made_public_and_private_again_gets_a_new_full_window(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private draft dataset near the end of its draft window
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip())
    first_expiry = at((await view(api, owner, dataset_id))["expiresAt"])
    clock.set(first_expiry - seconds(5))
    # when it is made public, then private again
    await set_visibility(api, owner, dataset_id, "PUBLIC")
    clock.advance(2)
    again = clock.now()
    await set_visibility(api, owner, dataset_id, "PRIVATE")
    # then its window is a full draft window from that moment
    assert at((await view(api, owner, dataset_id))["expiresAt"]) == again + seconds(DRAFT)
    clock.set(first_expiry)
    assert await sweep(ctx) == {}
    assert (await view(api, owner, dataset_id))["downloadUrl"] is not None
    clock.set(again + seconds(DRAFT))
    assert await sweep(ctx) == {"expired": 1}


# 4. A pending upload has no window until its bytes arrive ------------------------


@draft_env
async def test_pending_upload_gets_its_draft_window_when_its_bytes_arrive(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given an upload started now on a draft, private, with no bytes yet
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    body = make_zip({"otters/2.txt": b"river" * 200})
    payload = await start(api, owner, version_id, body)
    dataset_id = payload["dataset"]["id"]
    started = clock.now()
    pending = await view(api, owner, dataset_id)
    assert pending["status"] == "PENDING_UPLOAD"
    assert pending["expiresAt"] is None
    # then the sweep gives it no window while it waits
    clock.advance(40)
    assert await sweep(ctx) == {}
    assert (await view(api, owner, dataset_id))["expiresAt"] is None

    # when its bytes arrive 40 s after the start
    response = await api.put(payload["uploadUrl"], body)
    assert response.status_code == 200, response.text
    arrived = clock.now()

    # then the draft window starts at the arrival
    available = await view(api, owner, dataset_id)
    assert available["status"] == "AVAILABLE"
    assert at(available["uploadedAt"]) == arrived
    assert available["sha256"] == hashlib.sha256(body).hexdigest()
    assert at(available["expiresAt"]) == arrived + seconds(DRAFT)
    # so it is still there when a window from the start would have ended
    clock.set(started + seconds(DRAFT))
    assert await sweep(ctx) == {}
    assert (await view(api, owner, dataset_id))["downloadUrl"] is not None
    clock.set(arrived + seconds(DRAFT - 1))
    assert (await view(api, owner, dataset_id))["downloadUrl"] is not None
    # and it ends at arrival + draft retention
    clock.set(arrived + seconds(DRAFT))
    assert (await view(api, owner, dataset_id))["downloadUrl"] is None
    assert (await sweep(ctx))["expired"] == 1


@draft_env
@pytest.mark.parametrize(("declared", "changed_to"), [("PUBLIC", "PRIVATE"), ("PRIVATE", "PUBLIC")])
async def test_visibility_changed_while_pending_decides_the_window_at_arrival(
    api: Api, clock: MutableClock, ctx: Ctx, declared: str, changed_to: str
) -> None:
    # given a pending upload on a draft whose visibility is changed before the bytes come
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    body = make_zip()
    payload = await start(api, owner, version_id, body, declared)
    dataset_id = payload["dataset"]["id"]
    clock.advance(10)
    await set_visibility(api, owner, dataset_id, changed_to)
    changed = await view(api, owner, dataset_id)
    assert changed["visibility"] == changed_to
    assert changed["expiresAt"] is None
    # when the bytes arrive later
    clock.advance(20)
    response = await api.put(payload["uploadUrl"], body)
    assert response.status_code == 200, response.text
    arrived = clock.now()
    # then a private one gets a draft window from the arrival, a public one none
    expires = (await view(api, owner, dataset_id))["expiresAt"]
    if changed_to == "PRIVATE":
        assert at(expires) == arrived + seconds(DRAFT)
    else:
        assert expires is None
        clock.advance(10 * DRAFT)
        assert await sweep(ctx) == {}
        assert (await view(api, owner, dataset_id))["status"] == "AVAILABLE"


# 5. The sweep repairs a private dataset without a window -------------------------


@draft_env
@pytest.mark.parametrize("published", [False, True], ids=["draft", "published"])
async def test_sweep_gives_a_windowless_private_dataset_a_full_window_from_now(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings, published: bool
) -> None:
    # given a private dataset (of a draft, or of a published version) with no window, as
    # an older lorashelf could leave it (only reachable through the database)
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE", publish=published)
    pk = await raw_id(dataset_id)
    await TrainingDataset.filter(id=pk).update(expires_at=None, next_reminder_at=None)
    assert (await view(api, owner, dataset_id))["expiresAt"] is None
    clock.advance(10 * DRAFT)

    # when the sweep runs
    repaired_at = clock.now()
    assert await sweep(ctx) == {"windows_repaired": 1}

    # then it has a full window from now: the private retention once published, else
    # the draft lifetime
    length = PRIVATE if published else DRAFT
    expires = repaired_at + seconds(length)
    assert at((await view(api, owner, dataset_id))["expiresAt"]) == expires
    assert await sweep(ctx) == {}
    # and that window runs like any other: reminders, then deletion
    clock.set(expires - seconds(30))
    assert await sweep(ctx) == {"reminded": 1}
    clock.set(expires - seconds(10))
    assert await sweep(ctx) == {"reminded": 1}
    clock.set(expires)
    assert await sweep(ctx) == {"expired": 1}
    tombstone = await view(api, owner, dataset_id)
    assert tombstone["status"] == "DELETED"
    assert tombstone["deletionReason"] == "EXPIRED"
    assert dataset_blobs(settings.blob_dir) == set()
    assert len(await notices(api, owner, "DATASET_DELETED")) == 1


# 6. A draft's weights-file header keys follow the draft window -------------------


@draft_env
async def test_withheld_header_keys_of_a_draft_are_erased_with_its_dataset(
    api: Api, clock: MutableClock, ctx: Ctx, settings: Settings
) -> None:
    # given a draft with a weights file recording the training tags, and (10 s later)
    # a private dataset
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    weights = make_safetensors({"ss_tag_frequency": TAGS, "ss_network_dim": "4"})
    file_id = await api.upload_file(owner, version_id, weights)
    clock.advance(10)
    dataset_id = await upload(api, owner, version_id, make_zip())
    expires = at((await view(api, owner, dataset_id))["expiresAt"])
    assert expires == clock.now() + seconds(DRAFT)

    # then the owner sees the tag frequencies until the dataset's draft window ends
    file = await file_view(api, owner, file_id)
    assert file["withheldKeys"] == ["ss_tag_frequency"]
    assert at(file["headerExpiresAt"]) == expires
    assert file["headerErasedAt"] is None
    assert {"key": "ss_tag_frequency", "value": TAGS} in file["headerMetadata"]
    assert file["originalSha256"] == hashlib.sha256(weights).hexdigest()
    original = await api.http.get(file["downloadUrl"])
    assert original.status_code == 200
    assert original.content == weights
    clock.set(expires - seconds(1))
    file = await file_view(api, owner, file_id)
    assert "ss_tag_frequency" in [e["key"] for e in file["headerMetadata"]]

    # when the window ends, before any job runs
    clock.set(expires)
    file = await file_view(api, owner, file_id)
    # then the owner no longer sees them
    assert "ss_tag_frequency" not in [e["key"] for e in file["headerMetadata"]]

    # when the sweep runs
    assert await sweep(ctx) == {"expired": 1, "headers_erased": 1}
    # then the keys are erased from the stored file
    file = await file_view(api, owner, file_id)
    assert at(file["headerErasedAt"]) == clock.now()
    assert file["headerExpiresAt"] is None
    assert file["withheldKeys"] == ["ss_tag_frequency"]
    assert file["originalSha256"] is None
    keys = [e["key"] for e in file["headerMetadata"]]
    assert "ss_tag_frequency" not in keys and "ss_network_dim" in keys
    public = await api.http.get(file["downloadUrl"])
    assert public.status_code == 200
    assert b"ss_tag_frequency" not in public.content
    assert hashlib.sha256(public.content).hexdigest() == file["sha256"]
    for path in blob_files(settings.blob_dir):
        assert b"ss_tag_frequency" not in path.read_bytes(), path
    assert (await view(api, owner, dataset_id))["status"] == "DELETED"
    assert await sweep(ctx) == {}


# 7. The policy reports the setting ------------------------------------------------

POLICY = "{ retentionPolicy { draftRetentionSeconds privateRetentionSeconds } }"


@pytest.mark.env(LORASHELF_DRAFT_RETENTION="3h", LORASHELF_PRIVATE_RETENTION="2d")
async def test_retention_policy_reports_the_configured_draft_retention(api: Api) -> None:
    policy = (await api.gql(POLICY))["retentionPolicy"]
    assert policy == {"draftRetentionSeconds": 3 * 3600, "privateRetentionSeconds": 2 * 86400}


async def test_retention_policy_draft_retention_defaults_to_thirty_days(
    api: Api, clock: MutableClock
) -> None:
    # given the default configuration
    policy = (await api.gql(POLICY))["retentionPolicy"]
    assert policy["draftRetentionSeconds"] == 30 * 86400
    # and a private draft dataset uploaded under it lives that long
    assert clock.now() == START
    owner = await api.sign_up()
    version_id = await given_draft(api, owner)
    dataset_id = await upload(api, owner, version_id, make_zip())
    expires = at((await view(api, owner, dataset_id))["expiresAt"])
    assert expires == START + timedelta(days=30)
