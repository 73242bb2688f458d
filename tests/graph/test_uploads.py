"""Uploads: ``startDatasetUpload`` and the single-use ``PUT`` to its ``uploadUrl``."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from storage.config.settings import Settings
from tests.conftest import Api, MutableClock, Person, make_zip, missing_id

START_UPLOAD = """
mutation($i: StartDatasetUploadInput!) {
  startDatasetUpload(input: $i) {
    dataset { id filename sizeBytes sha256 status visibility }
    uploadUrl
    userErrors { field code message }
  }
}
"""

DATASET = """
query($id: ID!) {
  node(id: $id) { ... on TrainingDataset { id filename sizeBytes sha256 status visibility } }
}
"""

MY_DATASETS = "{ viewer { trainingDatasets { edges { node { id status } } } } }"

DELETE_DATASET = """
mutation($i: DeleteDatasetInput!) {
  deleteDataset(input: $i) { dataset { id status } userErrors { field code } }
}
"""


def upload_input(version_id: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"versionId": version_id, "filename": "data.zip", "sizeBytes": size, **extra}


def zip_with_entry(name: str) -> bytes:
    """A zip whose entry name is written verbatim (``writestr`` keeps ``..`` and ``/``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), b"payload")
    return buffer.getvalue()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def draft_version(api: Api, owner: Person) -> str:
    model_id = await api.create_model(owner)
    return await api.create_version(owner, model_id)


async def dataset_state(api: Api, owner: Person, dataset_id: str) -> dict[str, Any]:
    node: dict[str, Any] = (await api.gql(DATASET, {"id": dataset_id}, owner.token))["node"]
    return node


async def start(api: Api, owner: Person | None, variables: dict[str, Any]) -> dict[str, Any]:
    data = await api.gql(START_UPLOAD, {"i": variables}, owner.token if owner else None)
    payload: dict[str, Any] = data["startDatasetUpload"]
    return payload


@pytest.fixture
def small_limit(env: dict[str, str]) -> dict[str, str]:
    """The upload limit lowered to 1000 bytes; request it before ``api``."""
    env["LORASHELF_MAX_DATASET_BYTES"] = "1000"
    return env


# Happy path -------------------------------------------------------------------


async def test_put_with_the_declared_zip_makes_the_dataset_available(api: Api) -> None:
    # given a pending dataset for a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip({"images/a.txt": b"a" * 300, "captions/a.txt": b"a cat"})
    payload = await start(api, alice, upload_input(version_id, len(body), visibility="PRIVATE"))
    assert payload["userErrors"] == []
    assert payload["dataset"]["status"] == "PENDING_UPLOAD"
    assert payload["dataset"]["sha256"] is None
    # when the bytes are PUT to the upload URL
    response = await api.put(payload["uploadUrl"], body)
    # then the answer reports size and checksum, and the dataset is available
    digest = hashlib.sha256(body).hexdigest()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": payload["dataset"]["id"],
        "status": "AVAILABLE",
        "sizeBytes": len(body),
        "sha256": digest,
    }
    state = await dataset_state(api, alice, payload["dataset"]["id"])
    assert state["status"] == "AVAILABLE"
    assert state["sha256"] == digest
    assert state["sizeBytes"] == len(body)
    assert state["visibility"] == "PRIVATE"


# Rejected bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_body", "declared_delta", "status", "code"),
    [
        pytest.param(lambda: make_zip(), 1, 400, "SIZE_MISMATCH", id="shorter-than-declared"),
        pytest.param(lambda: make_zip(), -1, 413, "SIZE_MISMATCH", id="longer-than-declared"),
        pytest.param(lambda: b"this is not a zip archive", 0, 415, "NOT_A_ZIP", id="not-a-zip"),
        pytest.param(lambda: zip_with_entry("../evil"), 0, 422, "UNSAFE_ARCHIVE", id="dotdot"),
        pytest.param(lambda: zip_with_entry("/abs"), 0, 422, "UNSAFE_ARCHIVE", id="absolute"),
    ],
)
async def test_rejected_body_leaves_no_dataset_and_no_bytes(
    api: Api, settings: Settings, make_body: Any, declared_delta: int, status: int, code: str
) -> None:
    # given a pending dataset whose declared size differs from the body by declared_delta
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body: bytes = make_body()
    payload = await api.start_upload(alice, version_id, len(body) + declared_delta)
    assert payload["userErrors"] == []
    # when the body is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused with the documented status and code
    assert response.status_code == status
    assert response.json()["error"] == code
    # and nothing is kept: neither the bytes nor the dataset's record
    assert await dataset_state(api, alice, payload["dataset"]["id"]) is None
    assert files_under(settings.blob_dir) == []


# Single use, expiry, signature ----------------------------------------------------


async def test_second_put_after_success_is_refused(api: Api, settings: Settings) -> None:
    # given a completed upload
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    payload = await api.start_upload(alice, version_id, len(body))
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200
    stored = files_under(settings.blob_dir)
    # when the same URL is used again, even with other valid bytes of the same size
    response = await api.put(payload["uploadUrl"], body)
    # then it is gone, and the stored bytes are untouched
    assert response.status_code == 410
    assert response.json()["error"] == "UPLOAD_URL_USED"
    assert files_under(settings.blob_dir) == stored
    state = await dataset_state(api, alice, payload["dataset"]["id"])
    assert state["status"] == "AVAILABLE"
    assert state["sha256"] == hashlib.sha256(body).hexdigest()


async def test_a_failed_put_leaves_nothing_and_a_new_upload_works(api: Api) -> None:
    # given an upload URL whose first attempt failed (body too short)
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    first = await api.start_upload(alice, version_id, len(body))
    assert (await api.put(first["uploadUrl"], body[:-1])).status_code == 400
    # when the same URL is tried again with the right bytes
    retry = await api.put(first["uploadUrl"], body)
    # then it finds nothing: the refused upload was not kept
    assert retry.status_code == 404
    assert retry.json()["error"] == "NOT_FOUND"
    # when a new upload is started for the same version
    second = await api.start_upload(alice, version_id, len(body))
    # then a new dataset gets a fresh URL that takes the bytes
    assert second["userErrors"] == []
    assert second["dataset"]["id"] != first["dataset"]["id"]
    assert second["uploadUrl"] != first["uploadUrl"]
    response = await api.put(second["uploadUrl"], body)
    assert response.status_code == 200
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


async def test_restarting_a_pending_upload_invalidates_the_old_url(api: Api) -> None:
    # given an unused upload URL, then a second startDatasetUpload for the same version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    first = await api.start_upload(alice, version_id, len(body))
    second = await api.start_upload(alice, version_id, len(body))
    # when the first URL is used
    response = await api.put(first["uploadUrl"], body)
    # then only the newest URL counts
    assert response.status_code == 410
    assert response.json()["error"] == "UPLOAD_URL_USED"
    assert (await api.put(second["uploadUrl"], body)).status_code == 200


async def test_upload_url_expires_after_an_hour(api: Api, clock: MutableClock) -> None:
    # given an upload URL
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    payload = await api.start_upload(alice, version_id, len(body))
    # when it is used more than an hour later
    clock.advance(3601)
    response = await api.put(payload["uploadUrl"], body)
    # then it has expired and the dataset still waits
    assert response.status_code == 410
    assert response.json()["error"] == "UPLOAD_URL_EXPIRED"
    assert (await dataset_state(api, alice, payload["dataset"]["id"]))["status"] == "PENDING_UPLOAD"


async def test_upload_url_still_works_just_before_the_hour(api: Api, clock: MutableClock) -> None:
    # given an upload URL
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    payload = await api.start_upload(alice, version_id, len(body))
    # when it is used one second before its hour is up
    clock.advance(3599)
    response = await api.put(payload["uploadUrl"], body)
    # then it is accepted
    assert response.status_code == 200


async def test_tampered_upload_url_is_refused(api: Api, settings: Settings) -> None:
    # given an upload URL whose sealed token has one character changed
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    payload = await api.start_upload(alice, version_id, len(body))
    url: str = payload["uploadUrl"]
    prefix, token = url.rsplit("/", 1)
    # one character changed in the middle of the sealed token
    forged = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    # when the bytes are PUT to the forged URL
    response = await api.put(f"{prefix}/{forged}", body)
    # then it is refused, nothing is stored, and the real URL still works
    assert response.status_code == 403
    assert response.json()["error"] == "INVALID_UPLOAD_URL"
    assert files_under(settings.blob_dir) == []
    assert (await dataset_state(api, alice, payload["dataset"]["id"]))["status"] == "PENDING_UPLOAD"
    assert (await api.put(url, body)).status_code == 200


# Declared sizes ---------------------------------------------------------------------


async def test_declared_size_over_configured_limit_is_too_large(small_limit: Any, api: Api) -> None:
    # given a server limited to 1000 bytes per dataset
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when 1001 bytes are declared
    payload = await start(api, alice, upload_input(version_id, 1001, visibility="PRIVATE"))
    # then it is refused on sizeBytes and nothing is recorded
    assert payload["dataset"] is None
    assert payload["uploadUrl"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [("sizeBytes", "TOO_LARGE")]
    assert (await api.gql(MY_DATASETS, token=alice.token))["viewer"]["trainingDatasets"][
        "edges"
    ] == []


async def test_declared_size_at_configured_limit_is_accepted(small_limit: Any, api: Api) -> None:
    # given a server limited to 1000 bytes per dataset
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when exactly 1000 bytes are declared
    payload = await start(api, alice, upload_input(version_id, 1000, visibility="PRIVATE"))
    # then it is accepted
    assert payload["userErrors"] == []
    assert payload["dataset"]["sizeBytes"] == 1000


async def test_zero_size_is_invalid(api: Api) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when an empty file is declared
    payload = await start(api, alice, upload_input(version_id, 0, visibility="PRIVATE"))
    # then
    assert payload["dataset"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("sizeBytes", "INVALID_SIZE")
    ]


async def test_size_beyond_32_bits_reaches_the_limit_check(api: Api) -> None:
    # given the default 2 GiB limit
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when 3 GiB are declared (more than GraphQL Int can carry)
    body = await api.raw(
        START_UPLOAD, {"i": upload_input(version_id, 3 * 2**30, visibility="PRIVATE")}, alice.token
    )
    # then the BigInt scalar accepts it and the limit refuses it as a userError
    assert "errors" not in body
    payload = body["data"]["startDatasetUpload"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [("sizeBytes", "TOO_LARGE")]


async def test_size_of_exactly_the_default_limit_is_accepted_and_shown(api: Api) -> None:
    # given the default 2 GiB limit
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when exactly 2 GiB (2^31, past the Int range) are declared
    payload = await start(api, alice, upload_input(version_id, 2**31, visibility="PRIVATE"))
    # then it is accepted and read back as a JSON number
    assert payload["userErrors"] == []
    assert payload["dataset"]["sizeBytes"] == 2**31


@pytest.mark.parametrize(
    "size", [2**53, -(2**53), 1.5, "123"], ids=["2^53", "-2^53", "float", "str"]
)
async def test_size_outside_the_bigint_scalar_is_a_graphql_error(api: Api, size: Any) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when a size the BigInt scalar cannot represent is sent
    body = await api.raw(
        START_UPLOAD, {"i": upload_input(version_id, size, visibility="PRIVATE")}, alice.token
    )
    # then the request is refused before execution, and nothing is recorded
    assert body.get("data") is None
    assert len(body["errors"]) == 1
    assert "sizeBytes" in body["errors"][0]["message"]
    assert (await api.gql(MY_DATASETS, token=alice.token))["viewer"]["trainingDatasets"][
        "edges"
    ] == []


# Rights ---------------------------------------------------------------------------


@pytest.mark.parametrize("owns_rights", [None, False], ids=["omitted", "false"])
async def test_public_without_rights_confirmation_is_refused(api: Api, owns_rights: Any) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    variables = upload_input(version_id, 100, visibility="PUBLIC")
    if owns_rights is not None:
        variables["ownsRights"] = owns_rights
    # when a public upload is started without confirming the rights
    payload = await start(api, alice, variables)
    # then it is refused on ownsRights and no dataset exists
    assert payload["dataset"] is None
    assert payload["uploadUrl"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("ownsRights", "RIGHTS_NOT_CONFIRMED")
    ]
    assert (await api.gql(MY_DATASETS, token=alice.token))["viewer"]["trainingDatasets"][
        "edges"
    ] == []


async def test_public_with_rights_confirmation_is_accepted(api: Api) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    # when a public upload is started with ownsRights: true
    payload = await start(
        api, alice, upload_input(version_id, len(body), visibility="PUBLIC", ownsRights=True)
    )
    # then it is recorded as public and takes its bytes
    assert payload["userErrors"] == []
    assert payload["dataset"]["visibility"] == "PUBLIC"
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200


# Which versions ---------------------------------------------------------------------


async def test_published_version_takes_no_upload(api: Api) -> None:
    # given a published version without a dataset
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    await api.publish(alice, version_id)
    # when an upload is started for it
    payload = await api.start_upload(alice, version_id, 100)
    # then
    assert payload["dataset"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("versionId", "VERSION_PUBLISHED")
    ]


async def test_foreign_malformed_and_wrong_type_ids_all_look_not_found(api: Api) -> None:
    # given bob's draft version and an id of alice's model
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    bobs_version = await draft_version(api, bob)
    alices_model = await api.create_model(alice)
    candidates = {
        "someone else's": bobs_version,
        "malformed": "not-an-id!",
        "another type": alices_model,
        "missing": missing_id("ModelVersion"),
    }
    # when alice starts an upload for each
    answers = {
        label: await api.start_upload(alice, version_id, 100)
        for label, version_id in candidates.items()
    }
    # then every answer is the same NOT_FOUND, and bob's version has no dataset
    expected = {
        "dataset": None,
        "uploadUrl": None,
        "userErrors": [
            {"field": "versionId", "code": "NOT_FOUND", "message": "No such model version."}
        ],
    }
    assert answers == {label: expected for label in candidates}
    assert (await api.gql(MY_DATASETS, token=bob.token))["viewer"]["trainingDatasets"][
        "edges"
    ] == []


async def test_anonymous_upload_is_unauthenticated(api: Api) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when nobody signed in starts an upload for it
    payload = await start(api, None, upload_input(version_id, 100, visibility="PRIVATE"))
    # then
    assert payload["dataset"] is None
    assert payload["uploadUrl"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["UNAUTHENTICATED"]


# Filenames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cats.zip", "cats.zip"),
        ("ca\x00ts\x07\n\u202e.zip", "cats.zip"),
        ("  spaced.zip  ", "spaced.zip"),
    ],
    ids=["dotdot-path", "windows-path", "control-chars", "whitespace"],
)
async def test_filename_is_reduced_to_a_safe_display_name(api: Api, given: str, shown: str) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    body = make_zip()
    # when an upload is started with a hostile filename and completed
    payload = await api.start_upload(alice, version_id, len(body), filename=given)
    assert payload["userErrors"] == []
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200
    # then only the cleaned name is stored and shown
    assert (await dataset_state(api, alice, payload["dataset"]["id"]))["filename"] == shown


@pytest.mark.parametrize(
    "given", ["", "../", "\x00\x01", " . "], ids=["empty", "dir", "ctrl", "dot"]
)
async def test_filename_with_nothing_left_is_refused(api: Api, given: str) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    # when the filename cleans down to nothing
    payload = await api.start_upload(alice, version_id, 100, filename=given)
    # then
    assert payload["dataset"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("filename", "INVALID_FILENAME")
    ]


# One dataset per version ------------------------------------------------------------------


async def test_version_with_available_dataset_takes_no_second_upload(api: Api) -> None:
    # given a draft version whose dataset is uploaded
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    await api.upload(alice, version_id)
    # when another upload is started for it
    payload = await api.start_upload(alice, version_id, 100)
    # then
    assert payload["dataset"] is None
    assert payload["uploadUrl"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        ("versionId", "DATASET_EXISTS")
    ]


async def test_after_deleting_a_drafts_dataset_a_new_upload_is_accepted(
    api: Api, settings: Settings
) -> None:
    # given a draft version whose dataset was uploaded and then deleted
    alice = await api.sign_up("alice")
    version_id = await draft_version(api, alice)
    old_id = await api.upload(alice, version_id)
    deleted = await api.mutate(
        "deleteDataset", DELETE_DATASET, {"i": {"datasetId": old_id}}, alice.token
    )
    assert deleted["dataset"]["status"] == "DELETED"
    assert files_under(settings.blob_dir) == []
    # when a new upload is started and completed
    body = make_zip({"new.txt": b"fresh"})
    payload = await api.start_upload(alice, version_id, len(body))
    # then it is accepted and the new bytes are the version's dataset
    assert payload["userErrors"] == []
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200
    data = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on ModelVersion "
        "{ trainingDataset { id status sha256 } } } }",
        {"id": version_id},
        alice.token,
    )
    assert data["node"]["trainingDataset"] == {
        "id": payload["dataset"]["id"],
        "status": "AVAILABLE",
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    assert len(files_under(settings.blob_dir)) == 1
