"""The privacy matrix: every path x {owner, other user, operator, anonymous} x
{public, private, draft, deleted}, each with its exact expected answer. An operator of
the site is a viewer like any other signed-in user: every expectation below treats
"operator" exactly as "other"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from storage import operators
from tests.conftest import START, Api, MutableClock, Person, missing_id

VIEWERS = ("owner", "other", "operator", "anonymous")
STATES = ("public", "private", "draft", "deleted")


@dataclass
class World:
    owner: Person
    other: Person
    operator: Person
    model_id: str
    version_id: str
    dataset_id: str

    def token(self, viewer: str) -> str | None:
        tokens = {"owner": self.owner, "other": self.other, "operator": self.operator}
        person = tokens.get(viewer)
        return person.token if person is not None else None


async def given_world(api: Api, state: str) -> World:
    """Alice owns one model, one version, one dataset in `state`; Bob is another user;
    Olga is an operator of the site (granted as the command line grants it)."""
    owner = await api.sign_up("alice")
    other = await api.sign_up("bob")
    operator = await api.sign_up("olga")
    _, changed = await operators.grant("olga", now=START)
    assert changed
    visibility = "PRIVATE" if state == "private" else "PUBLIC"
    model_id, version_id, dataset_id = await api.model_with_dataset(
        owner, visibility, publish=state != "draft"
    )
    if state == "deleted":
        await api.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
            "{ dataset { status } userErrors { code } } }",
            {"i": {"datasetId": dataset_id}},
            owner.token,
        )
    return World(owner, other, operator, model_id, version_id, dataset_id)


def sees_dataset(viewer: str, state: str) -> bool:
    return viewer == "owner" or state == "public"


def may_download(viewer: str, state: str) -> bool:
    return state != "deleted" and sees_dataset(viewer, state)


def sees_version(viewer: str, state: str) -> bool:
    return viewer == "owner" or state != "draft"


matrix = pytest.mark.parametrize(("viewer", "state"), [(v, s) for v in VIEWERS for s in STATES])

DATASET_FIELDS = "id status visibility filename sizeBytes sha256 expiresAt deletedAt downloadUrl"


@matrix
async def test_version_training_dataset(api: Api, viewer: str, state: str) -> None:
    # given
    world = await given_world(api, state)
    # when
    data = await api.gql(
        f"query($id: ID!) {{ node(id: $id) {{ ... on ModelVersion {{ trainingDataset "
        f"{{ {DATASET_FIELDS} }} }} }} }}",
        {"id": world.version_id},
        world.token(viewer),
    )
    # then
    if not sees_version(viewer, state):
        assert data["node"] is None
        return
    dataset = data["node"]["trainingDataset"]
    if not sees_dataset(viewer, state):
        assert dataset is None
        return
    assert dataset["id"] == world.dataset_id
    assert dataset["status"] == ("DELETED" if state == "deleted" else "AVAILABLE")
    assert (dataset["downloadUrl"] is not None) == may_download(viewer, state)
    if state == "private":
        assert dataset["expiresAt"] is not None


@matrix
async def test_node_lookup_of_dataset(api: Api, viewer: str, state: str) -> None:
    # given
    world = await given_world(api, state)
    # when
    data = await api.gql(
        "query($id: ID!) { node(id: $id) { id ... on TrainingDataset { status } } }",
        {"id": world.dataset_id},
        world.token(viewer),
    )
    # then
    if sees_dataset(viewer, state):
        assert data["node"]["id"] == world.dataset_id
    else:
        assert data["node"] is None


@matrix
async def test_model_versions_and_models_connection(api: Api, viewer: str, state: str) -> None:
    # given
    world = await given_world(api, state)
    # when
    data = await api.gql(
        "query($id: ID!) { model(id: $id) { id versions { id trainingDataset { id } } } "
        "models(first: 100) { edges { node { id versions { id } } } } }",
        {"id": world.model_id},
        world.token(viewer),
    )
    # then
    listed = [e["node"]["id"] for e in data["models"]["edges"]]
    if not sees_version(viewer, state):  # a model with nothing published is a draft too
        assert data["model"] is None
        assert listed == []
        return
    assert listed == [world.model_id]
    versions = data["model"]["versions"]
    assert [v["id"] for v in versions] == [world.version_id]
    expected = {"id": world.dataset_id} if sees_dataset(viewer, state) else None
    assert versions[0]["trainingDataset"] == expected


@matrix
async def test_user_connections(api: Api, viewer: str, state: str) -> None:
    # given
    world = await given_world(api, state)
    # when
    data = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on User { username "
        "models { edges { node { id } } } trainingDatasets { edges { node { id } } } "
        "notifications { edges { node { id } } } unreadNotificationCount } } }",
        {"id": world.owner.id},
        world.token(viewer),
    )
    # then an account with nothing public is not found for anybody else (accounts cannot
    # be listed or probed by id)
    user = data["node"]
    if viewer != "owner" and not sees_version(viewer, state):
        assert user is None
        return
    assert user["username"] == "alice"
    models = [e["node"]["id"] for e in user["models"]["edges"]]
    datasets = [e["node"]["id"] for e in user["trainingDatasets"]["edges"]]
    assert models == ([world.model_id] if sees_version(viewer, state) else [])
    assert datasets == ([world.dataset_id] if sees_dataset(viewer, state) else [])
    if viewer == "owner":
        assert user["notifications"] == {"edges": []}
        assert user["unreadNotificationCount"] == 0
    else:
        assert user["notifications"] is None
        assert user["unreadNotificationCount"] is None


@matrix
async def test_download_route(api: Api, viewer: str, state: str) -> None:
    """The owner's download URL works only while the rule allows; a URL is re-checked
    at request time, so one minted before deletion stops working."""
    # given a URL minted while the dataset was still available
    world = await given_world(api, "private" if state == "private" else "public")
    url_query = "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }"
    minted = await api.gql(url_query, {"id": world.dataset_id}, world.owner.token)
    url = minted["node"]["downloadUrl"]
    if state == "deleted":
        await api.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) { userErrors { code } } }",
            {"i": {"datasetId": world.dataset_id}},
            world.owner.token,
        )
    # when the viewer asks for a URL of their own, and the minted one is used
    own = await api.gql(url_query, {"id": world.dataset_id}, world.token(viewer))
    response = await api.http.get(url)
    # then
    if state == "draft":
        return  # covered by the draft-specific test below
    own_url = (own["node"] or {}).get("downloadUrl")
    assert (own_url is not None) == may_download(viewer, state)
    assert response.status_code == (404 if state == "deleted" else 200)


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_draft_dataset_downloads_only_for_owner(api: Api, viewer: str) -> None:
    # given a public dataset on a draft version
    world = await given_world(api, "draft")
    # when
    data = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
        {"id": world.dataset_id},
        world.token(viewer),
    )
    # then
    if viewer == "owner":
        response = await api.http.get(data["node"]["downloadUrl"])
        assert response.status_code == 200
    else:
        assert data["node"] is None


MUTATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "setDatasetVisibility": (
        "dataset",
        "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
        "{ dataset { id } userErrors { field message code } } }",
        {"visibility": "PRIVATE", "ownsRights": True},
    ),
    "deleteDataset": (
        "dataset",
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
        "{ dataset { id } userErrors { field message code } } }",
        {},
    ),
    "startDatasetUpload": (
        "version",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ dataset { id } uploadUrl userErrors { field message code } } }",
        {"filename": "x.zip", "sizeBytes": 10, "visibility": "PRIVATE"},
    ),
    "publishModelVersion": (
        "version",
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { field message code } } }",
        {},
    ),
    "createModelVersion": (
        "model",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { field message code } } }",
        {"name": "v2", "baseModel": "SDXL_1_0"},
    ),
}
ID_FIELD = {"dataset": "datasetId", "version": "versionId", "model": "modelId"}
ID_TYPE = {"dataset": "TrainingDataset", "version": "ModelVersion", "model": "Model"}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("actor", ("other", "operator"))
async def test_mutations_by_others_answer_as_for_missing_ids(
    api: Api, mutation: str, state: str, actor: str
) -> None:
    # given Alice's object, and ids that do not exist, are malformed or of another type
    world = await given_world(api, state)
    target, document, extra = MUTATIONS[mutation]
    real = {"dataset": world.dataset_id, "version": world.version_id, "model": world.model_id}
    field = ID_FIELD[target]
    missing = missing_id(ID_TYPE[target])
    wrong_type = world.owner.id
    answers = []
    for candidate in (real[target], missing, "not-an-id", wrong_type):
        # when Bob (or Olga, an operator) tries the mutation
        data = await api.gql(document, {"i": {field: candidate, **extra}}, world.token(actor))
        answers.append(data[mutation])
    # then every answer is the same NOT_FOUND, with nothing to tell them apart
    first = answers[0]
    assert first["userErrors"][0]["code"] == "NOT_FOUND"
    assert all(answer == first for answer in answers)


@pytest.mark.parametrize("viewer", ("other", "operator"))
async def test_guessing_global_ids_reveals_nothing(api: Api, viewer: str) -> None:
    # given Alice's private dataset among others
    world = await given_world(api, "private")
    guesses = [missing_id("TrainingDataset") for _ in range(19)] + [world.dataset_id]
    # when Bob (or Olga, an operator) looks every guess up
    results = []
    for guess in guesses:
        answer = await api.gql(
            "query($id: ID!) { node(id: $id) { id } }", {"id": guess}, world.token(viewer)
        )
        results.append(answer["node"])
    # then
    assert results == [None] * len(guesses)
    assert world.dataset_id in guesses


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s")
async def test_download_url_stops_at_expiry(api: Api, clock: MutableClock) -> None:
    # given a private dataset published with a 60-second window
    owner = await api.sign_up("alice")
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    query = "query($id: ID!) { node(id: $id) { ... on TrainingDataset { expiresAt downloadUrl } } }"
    minted = (await api.gql(query, {"id": dataset_id}, owner.token))["node"]
    clock.advance(59)
    assert (await api.http.get(minted["downloadUrl"])).status_code == 200
    # when the expiry instant passes (the deletion job has not run)
    clock.advance(1)
    # then the URL minted earlier stops working, and no new one is given
    assert (await api.http.get(minted["downloadUrl"])).status_code == 404
    after = (await api.gql(query, {"id": dataset_id}, owner.token))["node"]
    assert after == {"expiresAt": minted["expiresAt"], "downloadUrl": None}
