"""The owner's view: "my datasets" (viewer.trainingDatasets) in expiry order, with
filters and paging; deleting versions and models; a dataset's history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs.tasks import expire_dataset, send_reminder
from storage.config.settings import Settings
from tests.conftest import (
    Api,
    MutableClock,
    Person,
    at,
    blob_files,
    dataset_blobs,
    missing_id,
    raw_id,
    set_visibility,
)

pytestmark = pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s", LORASHELF_REMINDERS="30s,10s")

RETENTION = timedelta(seconds=60)
Ctx = dict[str, Any]

MY_DATASETS = (
    "query($first: Int, $after: String, $status: DatasetStatus) { viewer { "
    "trainingDatasets(first: $first, after: $after, status: $status) { edges { node "
    "{ id status visibility expiresAt deletedAt deletionReason } } "
    "pageInfo { hasNextPage endCursor } } } }"
)
USER_DATASETS = (
    "query($id: ID!) { node(id: $id) { ... on User { trainingDatasets(first: 100) "
    "{ edges { node { id } } } } } }"
)
DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status expiresAt "
    "deletedAt deletionReason downloadUrl events { kind at detail } } } }"
)
DELETE_DATASET = (
    "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
    "{ dataset { status } userErrors { code } } }"
)
DELETE_VERSION = (
    "mutation($i: DeleteModelVersionInput!) { deleteModelVersion(input: $i) "
    "{ version { id } userErrors { field code message } } }"
)
DELETE_MODEL = (
    "mutation($i: DeleteModelInput!) { deleteModel(input: $i) "
    "{ model { id } userErrors { field code message } } }"
)
MODELS = "{ models(first: 100) { edges { node { id versions { id } } } } }"


async def my_datasets(
    api: Api,
    who: Person,
    *,
    first: int | None = 100,
    after: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    variables = {"first": first, "after": after, "status": status}
    connection: dict[str, Any] = (await api.gql(MY_DATASETS, variables, who.token))["viewer"][
        "trainingDatasets"
    ]
    return connection


def listed(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def users_datasets(api: Api, user: Person, viewer: Person | None) -> list[str]:
    node = (await api.gql(USER_DATASETS, {"id": user.id}, viewer.token if viewer else None))["node"]
    return [edge["node"]["id"] for edge in node["trainingDatasets"]["edges"]]


async def dataset(api: Api, dataset_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (
        await api.gql(DATASET, {"id": dataset_id}, who.token if who else None)
    )["node"]
    return node


async def models_listed(api: Api, who: Person | None) -> list[str]:
    data = await api.gql(MODELS, token=who.token if who else None)
    return [edge["node"]["id"] for edge in data["models"]["edges"]]


class Shelf:
    """Given: one owner's datasets in every state that lists differently."""

    def __init__(self, api: Api, clock: MutableClock, owner: Person):
        self.api, self.clock, self.owner = api, clock, owner

    async def version(self, name: str) -> str:
        model_id = await self.api.create_model(self.owner, name)
        return await self.api.create_version(self.owner, model_id)

    async def build(self) -> dict[str, str]:
        """Created a second apart in this order; the private ones published out of order."""
        api, clock, owner = self.api, self.clock, self.owner
        late_version = await self.version("late")
        late = await api.upload(owner, late_version, "PRIVATE")
        clock.advance(1)
        early_version = await self.version("early")
        early = await api.upload(owner, early_version, "PRIVATE")
        clock.advance(1)
        public = await api.upload(owner, await self.version("public"), "PUBLIC")
        await api.publish(owner, await self._version_of(public))
        clock.advance(1)
        draft = await api.upload(owner, await self.version("draft"), "PRIVATE")
        clock.advance(1)
        pending_payload = await api.start_upload(owner, await self.version("pending"), 100)
        pending: str = pending_payload["dataset"]["id"]
        clock.advance(1)
        await api.publish(owner, early_version)  # expires at +65 s
        clock.advance(5)
        await api.publish(owner, late_version)  # expires at +70 s
        return {
            "late": late,
            "early": early,
            "public": public,
            "draft": draft,
            "pending": pending,
        }

    async def _version_of(self, dataset_id: str) -> str:
        data = await self.api.gql(
            "query($id: ID!) { node(id: $id) { ... on TrainingDataset { version { id } } } }",
            {"id": dataset_id},
            self.owner.token,
        )
        version_id: str = data["node"]["version"]["id"]
        return version_id


# viewer.trainingDatasets ---------------------------------------------------------


async def test_my_datasets_soonest_expiry_first_then_newest(api: Api, clock: MutableClock) -> None:
    # given private datasets published out of creation order, a public one, a draft's
    # and a pending upload
    alice = await api.sign_up("alice")
    shelf = await Shelf(api, clock, alice).build()
    # when alice lists her datasets
    connection = await my_datasets(api, alice)
    # then the soonest expiry comes first, then those without expiry, newest first
    assert listed(connection) == [
        shelf["early"],
        shelf["late"],
        shelf["draft"],  # a never-published private dataset expires too (the draft lifetime)
        shelf["pending"],
        shelf["public"],
    ]
    shown = [(e["node"]["status"], e["node"]["visibility"]) for e in connection["edges"]]
    assert shown == [
        ("AVAILABLE", "PRIVATE"),
        ("AVAILABLE", "PRIVATE"),
        ("AVAILABLE", "PRIVATE"),
        ("PENDING_UPLOAD", "PRIVATE"),
        ("AVAILABLE", "PUBLIC"),
    ]
    expiries = [e["node"]["expiresAt"] for e in connection["edges"]]
    assert at(expiries[0]) < at(expiries[1]) < at(expiries[2])
    assert expiries[3:] == [None, None]
    assert connection["pageInfo"]["hasNextPage"] is False


async def test_paging_two_at_a_time_yields_each_once_in_order(
    api: Api, clock: MutableClock
) -> None:
    # given five datasets
    alice = await api.sign_up("alice")
    await Shelf(api, clock, alice).build()
    everything = listed(await my_datasets(api, alice))
    # when alice pages through them two at a time
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await my_datasets(api, alice, first=2, after=after)
        seen += listed(page)
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # then each comes once, in the same order (the page boundary crosses the groups)
    assert seen == everything
    assert len(set(seen)) == 5
    assert pages == 3


async def test_status_filters(api: Api, clock: MutableClock, ctx: Ctx) -> None:
    # given the shelf, with the early private dataset expired and the draft's deleted
    # (the late one's window not ended yet: an expiry job deletes everything due)
    alice = await api.sign_up("alice")
    shelf = await Shelf(api, clock, alice).build()
    clock.advance(58)
    assert await expire_dataset(ctx, await raw_id(shelf["early"])) is True
    await api.mutate(
        "deleteDataset", DELETE_DATASET, {"i": {"datasetId": shelf["draft"]}}, alice.token
    )
    # when she filters by status
    deleted = await my_datasets(api, alice, status="DELETED")
    pending = await my_datasets(api, alice, status="PENDING_UPLOAD")
    available = await my_datasets(api, alice, status="AVAILABLE")
    # then
    assert {e["node"]["id"]: e["node"]["deletionReason"] for e in deleted["edges"]} == {
        shelf["early"]: "EXPIRED",
        shelf["draft"]: "OWNER_REQUEST",
    }
    assert [e["node"]["status"] for e in deleted["edges"]] == ["DELETED", "DELETED"]
    assert listed(pending) == [shelf["pending"]]
    assert listed(available) == [shelf["late"], shelf["public"]]


async def test_the_order_follows_the_expiry_each_dataset_shows(
    api: Api, clock: MutableClock
) -> None:
    # given the shelf, where alice deletes the early private dataset herself: its
    # tombstone shows no expiry (expiresAt null)
    alice = await api.sign_up("alice")
    shelf = await Shelf(api, clock, alice).build()
    await api.mutate(
        "deleteDataset", DELETE_DATASET, {"i": {"datasetId": shelf["early"]}}, alice.token
    )
    # when she lists her datasets
    connection = await my_datasets(api, alice)
    # then those showing an expiry come first, soonest first, then those without
    # (the tombstone among them, by age), as the contract orders them
    nodes = [e["node"] for e in connection["edges"]]
    deleted = next(n for n in nodes if n["id"] == shelf["early"])
    assert (deleted["status"], deleted["expiresAt"]) == ("DELETED", None)
    assert [n["id"] for n in nodes] == [
        shelf["late"],
        shelf["draft"],
        shelf["pending"],
        shelf["public"],
        shelf["early"],
    ]


@pytest.mark.parametrize("viewer", ["other", "anonymous"])
async def test_others_see_only_public_available_datasets(
    api: Api, clock: MutableClock, viewer: str
) -> None:
    # given alice's shelf plus a public dataset she deleted
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    shelf = await Shelf(api, clock, alice).build()
    _, _, gone = await api.model_with_dataset(alice, "PUBLIC")
    await api.mutate("deleteDataset", DELETE_DATASET, {"i": {"datasetId": gone}}, alice.token)
    # when somebody else lists alice's datasets
    seen = await users_datasets(api, alice, bob if viewer == "other" else None)
    # then only the public, available one
    assert seen == [shelf["public"]]
    # and bob's own list does not mention alice's
    assert listed(await my_datasets(api, bob)) == []


# Deleting versions and models --------------------------------------------------------


async def test_deleting_a_version_deletes_its_dataset_now(
    api: Api, clock: MutableClock, settings: Settings
) -> None:
    # given a model with two published versions: v1 private, v2 public
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    model_id = await api.create_model(alice)
    v1 = await api.create_version(alice, model_id, "v1")
    private = await api.upload(alice, v1, "PRIVATE")
    await api.publish(alice, v1)
    v2 = await api.create_version(alice, model_id, "v2")
    public = await api.upload(alice, v2, "PUBLIC")
    await api.publish(alice, v2)
    assert len(dataset_blobs(settings.blob_dir)) == 2
    clock.advance(10)
    # when she deletes v2
    await api.mutate("deleteModelVersion", DELETE_VERSION, {"i": {"versionId": v2}}, alice.token)
    # then its dataset's bytes are gone now, with a tombstone for her only
    assert len(dataset_blobs(settings.blob_dir)) == 1
    view = await dataset(api, public, alice)
    assert view is not None
    assert (view["status"], view["deletionReason"], view["downloadUrl"]) == (
        "DELETED",
        "MODEL_DELETED",
        None,
    )
    assert at(view["deletedAt"]) == clock.now()
    assert [e["kind"] for e in view["events"]][-1] == "DELETED"
    assert await dataset(api, public, bob) is None
    assert await dataset(api, public, None) is None
    assert listed(await my_datasets(api, alice, status="DELETED")) == [public]
    # and the model is still public through v1
    assert await models_listed(api, bob) == [model_id]
    # when she deletes v1, its only published version
    clock.advance(10)
    await api.mutate("deleteModelVersion", DELETE_VERSION, {"i": {"versionId": v1}}, alice.token)
    # then the private dataset is deleted too, and the model is no longer public
    assert blob_files(settings.blob_dir) == set()
    view = await dataset(api, private, alice)
    assert view is not None
    assert (view["status"], view["deletionReason"]) == ("DELETED", "MODEL_DELETED")
    assert at(view["deletedAt"]) == clock.now()
    assert await models_listed(api, bob) == []
    assert await models_listed(api, None) == []
    assert set(listed(await my_datasets(api, alice, status="DELETED"))) == {public, private}
    # and she keeps the (now empty) model as a draft
    owner_models = (await api.gql(MODELS, token=alice.token))["models"]["edges"]
    assert [(e["node"]["id"], e["node"]["versions"]) for e in owner_models] == [(model_id, [])]
    # and no notification: deletion was her own doing
    count = await api.gql("{ viewer { unreadNotificationCount } }", token=alice.token)
    assert count["viewer"]["unreadNotificationCount"] == 0


async def test_deleting_a_model_deletes_all_its_datasets_now(
    api: Api, clock: MutableClock, settings: Settings
) -> None:
    # given a model with a published private version, a published public one, and a draft
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    model_id = await api.create_model(alice)
    shelf = []
    for name, visibility, publish in (
        ("v1", "PRIVATE", True),
        ("v2", "PUBLIC", True),
        ("v3", "PRIVATE", False),
    ):
        version_id = await api.create_version(alice, model_id, name)
        shelf.append(await api.upload(alice, version_id, visibility))
        if publish:
            await api.publish(alice, version_id)
    assert len(dataset_blobs(settings.blob_dir)) == 3
    clock.advance(10)
    # when she deletes the model
    await api.mutate("deleteModel", DELETE_MODEL, {"i": {"modelId": model_id}}, alice.token)
    # then every dataset's bytes are gone now and she keeps the tombstones
    assert blob_files(settings.blob_dir) == set()
    connection = await my_datasets(api, alice)
    assert {e["node"]["id"] for e in connection["edges"]} == set(shelf)
    for edge in connection["edges"]:
        node = edge["node"]
        assert (node["status"], node["deletionReason"]) == ("DELETED", "MODEL_DELETED")
        assert at(node["deletedAt"]) == clock.now()
    # and the model is gone for everyone, her included
    for who in (alice, bob, None):
        assert await models_listed(api, who) == []
        found = await api.gql(
            "query($id: ID!) { model(id: $id) { id } }",
            {"id": model_id},
            who.token if who else None,
        )
        assert found == {"model": None}
    # and deleting it again is "not found"
    again = (await api.gql(DELETE_MODEL, {"i": {"modelId": model_id}}, alice.token))["deleteModel"]
    assert [e["code"] for e in again["userErrors"]] == ["NOT_FOUND"]


async def test_deleting_someone_elses_model_or_version_is_not_found(
    api: Api, settings: Settings
) -> None:
    # given alice's published model with a private dataset, and bob
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    model_id, version_id, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    missing_model = missing_id("Model")
    missing_version = missing_id("ModelVersion")
    # when bob tries to delete them, and ids that do not exist
    as_bob = {
        "model": await api.gql(DELETE_MODEL, {"i": {"modelId": model_id}}, bob.token),
        "missing model": await api.gql(DELETE_MODEL, {"i": {"modelId": missing_model}}, bob.token),
        "version": await api.gql(DELETE_VERSION, {"i": {"versionId": version_id}}, bob.token),
        "missing version": await api.gql(
            DELETE_VERSION, {"i": {"versionId": missing_version}}, bob.token
        ),
    }
    # then the answers are identical to those for missing ids
    assert as_bob["model"] == as_bob["missing model"]
    assert as_bob["version"] == as_bob["missing version"]
    assert as_bob["model"]["deleteModel"]["model"] is None
    assert [(e["field"], e["code"]) for e in as_bob["model"]["deleteModel"]["userErrors"]] == [
        ("modelId", "NOT_FOUND")
    ]
    assert [
        (e["field"], e["code"]) for e in as_bob["version"]["deleteModelVersion"]["userErrors"]
    ] == [("versionId", "NOT_FOUND")]
    # and nothing was deleted
    assert len(dataset_blobs(settings.blob_dir)) == 1
    view = await dataset(api, dataset_id, alice)
    assert view is not None and view["status"] == "AVAILABLE"
    assert await models_listed(api, None) == [model_id]


# A dataset's history -------------------------------------------------------------------


async def test_events_record_the_datasets_history_in_order(
    api: Api, clock: MutableClock, ctx: Ctx
) -> None:
    # given a private dataset uploaded to a draft at 12:00:00
    alice = await api.sign_up("alice")
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    dataset_id = await api.upload(alice, version_id, "PRIVATE")
    start = clock.now()
    # when it is published, made public, made private, downloaded, reminded about and
    # finally deleted at the end of its window
    clock.advance(1)
    await api.publish(alice, version_id)
    clock.advance(1)
    await set_visibility(api, alice, dataset_id, "PUBLIC")
    clock.advance(1)
    await set_visibility(api, alice, dataset_id, "PRIVATE")  # expires at 12:01:03
    clock.advance(1)
    view = await dataset(api, dataset_id, alice)
    assert view is not None
    response = await api.http.get(view["downloadUrl"])
    assert response.status_code == 200
    clock.advance(29)  # 12:00:33: 30 s before deletion
    assert await send_reminder(ctx, await raw_id(dataset_id), 30) is True
    clock.advance(30)  # 12:01:03
    assert await expire_dataset(ctx, await raw_id(dataset_id)) is True
    # then the owner sees each step, oldest first, at its time
    view = await dataset(api, dataset_id, alice)
    assert view is not None
    assert [(e["kind"], at(e["at"]) - start) for e in view["events"]] == [
        ("UPLOAD_STARTED", timedelta(0)),
        ("UPLOADED", timedelta(0)),
        ("PUBLISHED", timedelta(seconds=1)),
        ("MADE_PUBLIC", timedelta(seconds=2)),
        ("MADE_PRIVATE", timedelta(seconds=3)),
        ("DOWNLOADED", timedelta(seconds=4)),
        ("REMINDED", timedelta(seconds=33)),
        ("DELETED", timedelta(seconds=63)),
    ]
    details = {e["kind"]: e["detail"] for e in view["events"]}
    assert details["UPLOAD_STARTED"] == "data.zip"
    assert details["UPLOADED"].startswith("sha256 ")
    assert details["DOWNLOADED"] == "through a link issued to you, from 127.0.0.1"
    assert details["REMINDED"] == "30 seconds before deletion"
    assert details["DELETED"] == "EXPIRED"
    # and nobody else sees the history, even of a public dataset
    bob = await api.sign_up("bob")
    _, _, public = await api.model_with_dataset(alice, "PUBLIC")
    public_view = await dataset(api, public, bob)
    assert public_view is not None and public_view["events"] is None
