"""Regressions from review: races between mutations, bounded lists, odd inputs,
deletion after expiry, and a download in progress at the expiry instant."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import zipfile
from typing import Any

import pytest

from graph.http.app import create_app
from storage.catalog import MAX_VERSIONS
from storage.config.settings import Settings
from storage.runtime import NoScheduler
from tests.conftest import Api, MutableClock, Person

PUBLISH = (
    "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
    "{ version { id } userErrors { code } } }"
)
START = (
    "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
    "{ dataset { id } uploadUrl userErrors { code } } }"
)
OWNER_VIEW = (
    "{ viewer { trainingDatasets(first: 100) { edges { node { id status visibility "
    "expiresAt deletionReason version { id status } } } } } }"
)


async def datasets_of(api: Api, owner: Person) -> list[dict[str, Any]]:
    data = await api.gql(OWNER_VIEW, token=owner.token)
    return [e["node"] for e in data["viewer"]["trainingDatasets"]["edges"]]


@pytest.mark.parametrize("publish_first", [True, False])
async def test_publish_and_upload_at_once_never_leave_a_windowless_private_dataset(
    api: Api, publish_first: bool
) -> None:
    # given a draft with a weights file but without a dataset
    owner = await api.sign_up()
    version_id = await api.create_version(owner, await api.create_model(owner))
    await api.upload_file(owner, version_id)
    publish = api.gql(PUBLISH, {"i": {"versionId": version_id}}, owner.token)
    start = api.gql(
        START,
        {
            "i": {
                "versionId": version_id,
                "filename": "d.zip",
                "sizeBytes": 100,
                "visibility": "PRIVATE",
            }
        },
        owner.token,
    )
    # when both arrive at once
    first, second = await asyncio.gather(*((publish, start) if publish_first else (start, publish)))
    published, started = (first, second) if publish_first else (second, first)
    # then exactly one of them wins
    codes = [
        [e["code"] for e in published["publishModelVersion"]["userErrors"]],
        [e["code"] for e in started["startDatasetUpload"]["userErrors"]],
    ]
    assert codes in ([[], ["VERSION_PUBLISHED"]], [["UPLOAD_INCOMPLETE"], []])


async def test_making_private_while_publishing_always_opens_a_window(api: Api) -> None:
    # given a public dataset on a draft (with its weights file)
    owner = await api.sign_up()
    _, version_id, dataset_id = await api.model_with_dataset(owner, "PUBLIC", publish=False)
    await api.upload_file(owner, version_id)
    # when it is made private while the version is published
    await asyncio.gather(
        api.gql(
            "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
            "{ userErrors { code } } }",
            {"i": {"datasetId": dataset_id, "visibility": "PRIVATE"}},
            owner.token,
        ),
        api.gql(PUBLISH, {"i": {"versionId": version_id}}, owner.token),
    )
    # then the private dataset of the published version has a window
    (dataset,) = await datasets_of(api, owner)
    assert dataset["visibility"] == "PRIVATE"
    assert dataset["version"]["status"] == "PUBLISHED"
    assert dataset["expiresAt"] is not None


async def test_deleting_a_version_while_an_upload_starts_leaves_nothing_live(api: Api) -> None:
    # given a draft
    owner = await api.sign_up()
    version_id = await api.create_version(owner, await api.create_model(owner))
    # when the version is deleted while an upload starts
    await asyncio.gather(
        api.gql(
            "mutation($i: DeleteModelVersionInput!) { deleteModelVersion(input: $i) "
            "{ userErrors { code } } }",
            {"i": {"versionId": version_id}},
            owner.token,
        ),
        api.gql(
            START,
            {
                "i": {
                    "versionId": version_id,
                    "filename": "d.zip",
                    "sizeBytes": 100,
                    "visibility": "PRIVATE",
                }
            },
            owner.token,
        ),
    )
    # then no dataset is left live on the deleted version
    assert all(d["status"] == "DELETED" for d in await datasets_of(api, owner))


async def test_a_model_has_a_bounded_number_of_versions(api: Api) -> None:
    # given a model with the most versions allowed
    owner = await api.sign_up()
    model_id = await api.create_model(owner)
    document = (
        "mutation { "
        + " ".join(
            f'v{i}: createModelVersion(input: {{modelId: "{model_id}", name: "v{i}", baseModel: SDXL_1_0}}) '
            "{ userErrors { code } }"
            for i in range(25)
        )
        + " }"
    )
    for _ in range(MAX_VERSIONS // 25):
        data = await api.gql(document, token=owner.token)
        assert all(p["userErrors"] == [] for p in data.values())
    # when one more is asked for
    payload = await api.gql(
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { field code } } }",
        {"i": {"modelId": model_id, "name": "one too many", "baseModel": "SDXL_1_0"}},
        owner.token,
    )
    # then it is refused
    assert payload["createModelVersion"] == {
        "version": None,
        "userErrors": [{"field": "modelId", "code": "TOO_MANY_VERSIONS"}],
    }


async def test_nested_version_lists_count_as_full_in_the_cost(api: Api) -> None:
    # version lists asking for all 50, nested: 50 x 50 x 50 versions could come back
    body = await api.raw(
        '{ model(id: "x") { versions(first: 50) { model { versions(first: 50) { model '
        "{ versions(first: 50) { id } } } } } } }"
    )
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "TOO_COSTLY"


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s")
async def test_deleting_after_the_window_ended_records_an_expiry(
    api: Api, clock: MutableClock
) -> None:
    # given a private dataset whose window ended before the deletion job ran
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PRIVATE")
    clock.advance(120)
    # when the owner deletes it
    data = await api.gql(
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
        "{ dataset { status deletionReason expiresAt } userErrors { code } } }",
        {"i": {"datasetId": dataset_id}},
        owner.token,
    )
    # then the record says what really happened, and the owner is told
    dataset = data["deleteDataset"]["dataset"]
    assert dataset["status"] == "DELETED"
    assert dataset["deletionReason"] == "EXPIRED"
    assert dataset["expiresAt"] is not None
    kinds = await api.gql(
        "{ viewer { notifications { edges { node { kind } } } } }", token=owner.token
    )
    assert [e["node"]["kind"] for e in kinds["viewer"]["notifications"]["edges"]] == [
        "DATASET_DELETED"
    ]


@pytest.mark.parametrize(
    "position",
    ["²", "9" * 30, "1." + "9" * 30, "٣.4", "-.", "1.x"],
    ids=["unicode digit", "huge", "huge time", "arabic digit", "empty id", "letters"],
)
async def test_malformed_cursors_are_clear_errors(api: Api, position: str) -> None:
    owner = await api.sign_up()
    cursor = base64.urlsafe_b64encode(f"cursor:{position}".encode()).decode().rstrip("=")
    for document in (
        "query($c: String) { models(after: $c) { edges { cursor } } }",
        "query($c: String) { viewer { trainingDatasets(after: $c) { edges { cursor } } } }",
    ):
        body = await api.raw(document, {"c": cursor}, owner.token)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR", body


async def test_an_absurd_range_header_is_not_a_server_error(api: Api) -> None:
    owner = await api.sign_up()
    _, _, dataset_id = await api.model_with_dataset(owner, "PUBLIC")
    url = (
        await api.gql(
            "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
            {"id": dataset_id},
        )
    )["node"]["downloadUrl"]
    response = await api.http.get(url, headers={"range": "bytes=" + "9" * 5000 + "-"})
    assert response.status_code == 200  # an unusable Range is ignored


@pytest.mark.env(LORASHELF_PRIVATE_RETENTION="60s")
async def test_a_download_in_progress_is_cut_at_the_expiry_instant(
    api: Api, clock: MutableClock, settings: Settings
) -> None:
    # given a private dataset of about 2 MB (several chunks) and its download URL
    owner = await api.sign_up()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("noise.bin", os.urandom(2_000_000))
    content = buffer.getvalue()
    version_id = await api.create_version(owner, await api.create_model(owner))
    dataset_id = await api.upload(owner, version_id, "PRIVATE", body=content)
    await api.publish(owner, version_id)
    url = (
        await api.gql(
            "query($id: ID!) { node(id: $id) { ... on TrainingDataset { downloadUrl } } }",
            {"id": dataset_id},
            owner.token,
        )
    )["node"]["downloadUrl"]
    clock.advance(59)
    # when the window ends after the first chunk has gone out
    app = create_app(settings, clock=clock, scheduler=NoScheduler(), manage_database=False)
    path = url.removeprefix("http://testserver")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    received: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client never disconnects on its own
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            received.append(message["body"])
            clock.advance(2)  # the window ends while the bytes are on their way

    await app(scope, receive, send)
    # then the rest of the file is not sent
    sent = sum(len(chunk) for chunk in received)
    assert 0 < sent < len(content)
