"""Downloads: the signed ``downloadUrl``, ranges, lifetime and the download record."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, MutableClock, Person, make_zip

DATASET = """
query($id: ID!) {
  node(id: $id) {
    ... on TrainingDataset { id status sizeBytes downloadUrl events { kind detail } }
  }
}
"""

BODY = make_zip({f"images/{n}.txt": bytes([n]) * (100 + n) for n in range(20)})


async def published_dataset(api: Api, owner: Person, visibility: str = "PRIVATE") -> str:
    """A published version whose dataset holds BODY; returns the dataset's ID."""
    model_id = await api.create_model(owner)
    version_id = await api.create_version(owner, model_id)
    dataset_id = await api.upload(owner, version_id, visibility, body=BODY)
    await api.publish(owner, version_id)
    return dataset_id


async def dataset(api: Api, dataset_id: str, token: str | None) -> dict[str, Any]:
    node: dict[str, Any] = (await api.gql(DATASET, {"id": dataset_id}, token))["node"]
    return node


async def download_url(api: Api, owner: Person, dataset_id: str) -> str:
    url: str = (await dataset(api, dataset_id, owner.token))["downloadUrl"]
    assert url
    return url


async def test_full_download_returns_the_uploaded_bytes(api: Api) -> None:
    # given alice's private dataset of a published version
    alice = await api.sign_up("alice")
    dataset_id = await published_dataset(api, alice)
    url = await download_url(api, alice, dataset_id)
    # when she downloads it
    response = await api.http.get(url)
    # then she gets exactly what she uploaded, as a private, uncached zip attachment
    assert response.status_code == 200
    assert response.content == BODY
    assert response.headers["content-length"] == str(len(BODY))
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["content-disposition"] == "attachment; filename*=UTF-8''data.zip"


async def test_draft_owner_can_download_before_publishing(api: Api) -> None:
    # given alice's dataset of a draft version
    alice = await api.sign_up("alice")
    model_id = await api.create_model(alice)
    version_id = await api.create_version(alice, model_id)
    dataset_id = await api.upload(alice, version_id, "PRIVATE", body=BODY)
    # when she downloads it
    response = await api.http.get(await download_url(api, alice, dataset_id))
    # then
    assert response.status_code == 200
    assert response.content == BODY


async def test_range_of_the_first_ten_bytes(api: Api) -> None:
    # given a download URL
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    # when the first ten bytes are asked for
    response = await api.http.get(url, headers={"Range": "bytes=0-9"})
    # then exactly those come back as partial content
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-9/{len(BODY)}"
    assert response.headers["content-length"] == "10"
    assert response.content == BODY[:10]


async def test_range_in_the_middle_and_past_the_end(api: Api) -> None:
    # given a download URL
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    size = len(BODY)
    # when a middle range and a range running past the end are asked for
    middle = await api.http.get(url, headers={"Range": "bytes=100-199"})
    tail = await api.http.get(url, headers={"Range": f"bytes={size - 3}-{size + 50}"})
    # then each is served, the second clipped to the file
    assert middle.status_code == 206
    assert middle.headers["content-range"] == f"bytes 100-199/{size}"
    assert middle.content == BODY[100:200]
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes {size - 3}-{size - 1}/{size}"
    assert tail.content == BODY[-3:]


async def test_suffix_range_returns_the_last_bytes(api: Api) -> None:
    # given a download URL
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    size = len(BODY)
    # when the last five bytes are asked for
    response = await api.http.get(url, headers={"Range": "bytes=-5"})
    # then
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    assert response.content == BODY[-5:]


async def test_range_starting_at_the_size_is_not_satisfiable(api: Api) -> None:
    # given a download URL
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    size = len(BODY)
    # when a range starting just past the last byte is asked for
    response = await api.http.get(url, headers={"Range": f"bytes={size}-"})
    # then it is refused with the size
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.content == b""


async def test_head_answers_headers_without_body(api: Api) -> None:
    # given a download URL
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    # when it is asked with HEAD, whole and ranged
    whole = await api.http.head(url)
    ranged = await api.http.head(url, headers={"Range": "bytes=0-9"})
    # then the headers describe the content and no body is sent
    assert whole.status_code == 200
    assert whole.headers["content-length"] == str(len(BODY))
    assert whole.headers["content-type"] == "application/zip"
    assert whole.content == b""
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(BODY)}"
    assert ranged.content == b""


async def test_tampered_download_url_is_not_found(api: Api) -> None:
    # given a download URL whose sealed token has one character changed
    alice = await api.sign_up("alice")
    url = await download_url(api, alice, await published_dataset(api, alice))
    prefix, token = url.rsplit("/", 1)
    # one character changed in the middle of the sealed token
    forged = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    # when it is used
    response = await api.http.get(f"{prefix}/{forged}")
    # then it looks like nothing is there, while the real URL works
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    assert (await api.http.get(url)).status_code == 200


async def test_download_url_stops_working_after_five_minutes(api: Api, clock: MutableClock) -> None:
    # given a download URL that worked when minted
    alice = await api.sign_up("alice")
    dataset_id = await published_dataset(api, alice)
    url = await download_url(api, alice, dataset_id)
    assert (await api.http.get(url)).status_code == 200
    # when it is used again 301 seconds later
    clock.advance(301)
    response = await api.http.get(url)
    # then it is gone, though a freshly minted URL works
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    fresh = await download_url(api, alice, dataset_id)
    assert (await api.http.get(fresh)).content == BODY


async def test_download_is_recorded_in_the_owners_history(api: Api) -> None:
    # given alice's dataset, with no download yet
    alice = await api.sign_up("alice")
    dataset_id = await published_dataset(api, alice)
    before = await dataset(api, dataset_id, alice.token)
    assert "DOWNLOADED" not in [e["kind"] for e in before["events"]]
    # when she downloads it
    assert (await api.http.get(before["downloadUrl"])).status_code == 200
    # then her history of the dataset records it
    after = await dataset(api, dataset_id, alice.token)
    downloads = [e for e in after["events"] if e["kind"] == "DOWNLOADED"]
    assert downloads == [
        {"kind": "DOWNLOADED", "detail": "through a link issued to you, from 127.0.0.1"}
    ]
    assert [e["kind"] for e in after["events"]] == [
        "UPLOAD_STARTED",
        "UPLOADED",
        "PUBLISHED",
        "DOWNLOADED",
    ]


async def test_anonymous_downloads_a_public_dataset_of_a_published_version(api: Api) -> None:
    # given alice's public dataset of a published version
    alice = await api.sign_up("alice")
    dataset_id = await published_dataset(api, alice, "PUBLIC")
    # when somebody not signed in looks it up and downloads it
    seen = await dataset(api, dataset_id, None)
    response = await api.http.get(seen["downloadUrl"])
    # then they get the bytes, do not see the history, and alice sees the download
    assert seen["status"] == "AVAILABLE"
    assert seen["events"] is None
    assert response.status_code == 200
    assert response.content == BODY
    events = (await dataset(api, dataset_id, alice.token))["events"]
    assert {"kind": "DOWNLOADED", "detail": "by someone else"} in events


async def test_private_dataset_gives_others_no_download(api: Api) -> None:
    # given alice's private dataset of a published version, and her download URL
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    dataset_id = await published_dataset(api, alice, "PRIVATE")
    url = await download_url(api, alice, dataset_id)
    # when bob or an anonymous visitor look the dataset up
    as_bob = await api.gql(DATASET, {"id": dataset_id}, bob.token)
    as_anonymous = await api.gql(DATASET, {"id": dataset_id})
    # then it does not exist for them (the URL is alice's alone and still works for her)
    assert as_bob["node"] is None
    assert as_anonymous["node"] is None
    assert (await api.http.get(url)).status_code == 200


async def test_head_request_is_not_recorded_as_a_download(api: Api) -> None:
    # given alice's dataset and its download URL
    alice = await api.sign_up("alice")
    dataset_id = await published_dataset(api, alice)
    url = await download_url(api, alice, dataset_id)
    # when only its headers are asked for (no bytes leave the server)
    assert (await api.http.head(url)).status_code == 200
    # then the history does not claim a download
    events = (await dataset(api, dataset_id, alice.token))["events"]
    assert "DOWNLOADED" not in [e["kind"] for e in events]
