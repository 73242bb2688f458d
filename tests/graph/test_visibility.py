"""Publishing, visibility changes and deletion follow the rules in PRODUCT.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from storage.config.settings import Settings
from tests.conftest import Api, MutableClock, Person, at, dataset_blobs

DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status visibility "
    "expiresAt deletedAt deletionReason downloadUrl events { kind at } } } }"
)
SET_VISIBILITY = (
    "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
    "{ dataset { visibility expiresAt } userErrors { field code message } } }"
)
DELETE = (
    "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
    "{ dataset { status deletedAt deletionReason downloadUrl } userErrors { code } } }"
)
RETENTION = timedelta(days=30)


async def dataset(api: Api, dataset_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (
        await api.gql(DATASET, {"id": dataset_id}, who.token if who else None)
    )["node"]
    return node


async def set_visibility(
    api: Api, owner: Person, dataset_id: str, visibility: str, owns_rights: bool | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = (
        await api.gql(
            SET_VISIBILITY,
            {"i": {"datasetId": dataset_id, "visibility": visibility, "ownsRights": owns_rights}},
            owner.token,
        )
    )["setDatasetVisibility"]
    return payload


async def test_publishing_starts_the_private_window(api: Api, clock: MutableClock) -> None:
    # given a private dataset on a draft, uploaded long before publishing
    owner = await api.sign_up()
    model_id = await api.create_model(owner)
    version_id = await api.create_version(owner, model_id)
    dataset_id = await api.upload(owner, version_id, "PRIVATE")
    draft_expiry = (await dataset(api, dataset_id, owner) or {})["expiresAt"]
    assert at(draft_expiry) == clock.now() + timedelta(days=30)  # the draft lifetime
    clock.advance(5 * 86400)
    # when
    version = await api.publish(owner, version_id)
    # then
    expires = (await dataset(api, dataset_id, owner) or {})["expiresAt"]
    assert at(expires) == at(version["publishedAt"]) + RETENTION
    assert at(version["publishedAt"]) == clock.now()


async def test_making_private_after_publish_starts_a_full_window(
    api: Api, clock: MutableClock
) -> None:
    # given a public dataset published ten days ago
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PUBLIC")
    clock.advance(10 * 86400)
    # when
    payload = await set_visibility(api, owner, dataset_id, "PRIVATE")
    # then
    assert payload["userErrors"] == []
    assert at(payload["dataset"]["expiresAt"]) == clock.now() + RETENTION
    assert await dataset(api, dataset_id, None) is None


async def test_making_private_again_never_moves_the_window(api: Api, clock: MutableClock) -> None:
    # given a private published dataset
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    before = (await dataset(api, dataset_id, owner) or {})["expiresAt"]
    clock.advance(86400)
    # when
    payload = await set_visibility(api, owner, dataset_id, "PRIVATE")
    # then
    assert payload == {"dataset": {"visibility": "PRIVATE", "expiresAt": before}, "userErrors": []}


async def test_making_public_needs_rights_and_clears_the_expiry(api: Api) -> None:
    # given a private published dataset
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    # when the owner does not confirm the rights
    refused = await set_visibility(api, owner, dataset_id, "PUBLIC")
    # then nothing changes
    assert refused["dataset"] is None
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [
        ("ownsRights", "RIGHTS_NOT_CONFIRMED")
    ]
    assert await dataset(api, dataset_id, None) is None
    # when they confirm
    payload = await set_visibility(api, owner, dataset_id, "PUBLIC", owns_rights=True)
    # then the expiry is gone and everybody sees it
    assert payload == {"dataset": {"visibility": "PUBLIC", "expiresAt": None}, "userErrors": []}
    public = await dataset(api, dataset_id, None)
    assert public is not None and public["downloadUrl"] is not None
    kinds = [e["kind"] for e in (await dataset(api, dataset_id, owner) or {})["events"]]
    assert kinds == ["UPLOAD_STARTED", "UPLOADED", "PUBLISHED", "MADE_PUBLIC"]


@pytest.mark.env(LORASHELF_TOKEN_LIFETIME="90d")
async def test_an_expired_dataset_cannot_be_made_public(api: Api, clock: MutableClock) -> None:
    # given a private dataset whose window has ended (deletion has not run yet)
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    clock.advance(RETENTION.total_seconds())
    # when
    payload = await set_visibility(api, owner, dataset_id, "PUBLIC", owns_rights=True)
    # then
    assert payload["dataset"] is None
    assert payload["userErrors"][0]["code"] == "DATASET_DELETED"
    assert await dataset(api, dataset_id, None) is None
    owned = await dataset(api, dataset_id, owner)
    assert owned is not None and owned["visibility"] == "PRIVATE"
    assert owned["downloadUrl"] is None


async def test_publish_refuses_twice_and_pending_uploads(api: Api) -> None:
    # given a published version and a draft whose upload never finished
    owner = await api.sign_up()
    model_id, version_id, _ = await api.model_with_dataset(owner, "PRIVATE")
    pending_version = await api.create_version(owner, model_id, "v2")
    started = await api.start_upload(owner, pending_version, 100)
    assert started["userErrors"] == []
    document = (
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { field code } } }"
    )
    # when
    again = await api.gql(document, {"i": {"versionId": version_id}}, owner.token)
    pending = await api.gql(document, {"i": {"versionId": pending_version}}, owner.token)
    # then
    assert again["publishModelVersion"]["userErrors"] == [
        {"field": "versionId", "code": "ALREADY_PUBLISHED"}
    ]
    assert pending["publishModelVersion"]["userErrors"] == [
        {"field": "versionId", "code": "UPLOAD_INCOMPLETE"}
    ]
    status = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelVersion { status } } }",
        {"id": pending_version},
        owner.token,
    )
    assert status["node"] == {"status": "DRAFT"}


async def test_delete_removes_the_bytes_and_leaves_a_tombstone(
    api: Api, clock: MutableClock, settings: Settings
) -> None:
    # given a private published dataset whose bytes are on disk
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    blobs = sorted(dataset_blobs(settings.blob_dir))
    assert len(blobs) == 1
    url = (await dataset(api, dataset_id, owner) or {})["downloadUrl"]
    clock.advance(60)
    # when
    payload = (await api.gql(DELETE, {"i": {"datasetId": dataset_id}}, owner.token))[
        "deleteDataset"
    ]
    # then
    assert payload["userErrors"] == []
    assert payload["dataset"] == {
        "status": "DELETED",
        "deletedAt": clock.now().isoformat(),
        "deletionReason": "OWNER_REQUEST",
        "downloadUrl": None,
    }
    assert not blobs[0].exists()
    assert (await api.http.get(url)).status_code == 404
    kinds = [e["kind"] for e in (await dataset(api, dataset_id, owner) or {})["events"]]
    assert kinds[-1] == "DELETED"
    # and deleting again changes nothing
    again = (await api.gql(DELETE, {"i": {"datasetId": dataset_id}}, owner.token))["deleteDataset"]
    assert again == payload


async def test_only_the_owner_sees_the_history(api: Api) -> None:
    # given a public dataset
    owner = await api.sign_up()
    other = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PUBLIC")
    # when
    theirs = await dataset(api, dataset_id, other)
    mine = await dataset(api, dataset_id, owner)
    # then
    assert theirs is not None and theirs["events"] is None
    assert mine is not None and len(mine["events"]) == 3


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="2h", LORASHELF_REMINDERS="10m,1h")
async def test_retention_policy_comes_from_configuration(api: Api) -> None:
    # when
    data = await api.gql(
        "{ retentionPolicy { privateRetentionSeconds reminderOffsetsSeconds notice } }"
    )
    # then
    assert data["retentionPolicy"] == {
        "privateRetentionSeconds": 7200,
        "reminderOffsetsSeconds": [3600, 600],
        "notice": "Private datasets are visible only to you and are deleted automatically "
        "2 hours after the version is published (or 30 days after upload if it is never "
        "published).",
    }


async def test_draft_models_are_listed_only_for_their_owner(api: Api) -> None:
    # given a published model and a draft-only model
    owner = await api.sign_up()
    other = await api.sign_up()
    published, _, _ = await api.model_with_dataset(owner, "PUBLIC")
    draft = await api.create_model(owner, "Draft")
    await api.create_version(owner, draft)
    query = "{ models { edges { node { id } } } }"
    # when
    mine = await api.gql(query, None, owner.token)
    theirs = await api.gql(query, None, other.token)
    # then, newest first
    assert [e["node"]["id"] for e in mine["models"]["edges"]] == [draft, published]
    assert [e["node"]["id"] for e in theirs["models"]["edges"]] == [published]


async def test_models_connection_pages_with_cursors(api: Api) -> None:
    # given five published models
    owner = await api.sign_up()
    made = [(await api.model_with_dataset(owner, "PUBLIC"))[0] for _ in range(5)]
    query = (
        "query($after: String) { models(first: 2, after: $after) "
        "{ edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    seen: list[str] = []
    after = None
    pages = 0
    # when paging through
    while True:
        page = (await api.gql(query, {"after": after}))["models"]
        seen += [e["node"]["id"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # then
    assert seen == list(reversed(made))
    assert pages == 3


async def test_bad_page_arguments_are_clear_errors(api: Api) -> None:
    # when
    too_many = await api.raw("{ models(first: 101) { edges { cursor } } }")
    bad_cursor = await api.raw('{ models(after: "nope") { edges { cursor } } }')
    # then
    assert too_many["errors"][0]["extensions"]["code"] == "INVALID_PAGE_SIZE"
    assert bad_cursor["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
