"""Weights files (``ModelFile``) end to end over HTTP: ``startModelFileUpload``, the
single-use ``PUT`` to its ``uploadUrl`` (validated as a safetensors file while it
streams), primary file, deletion, visibility, downloads and download counts."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storage.config.settings import Settings
from storage.files import MAX_FILES_PER_VERSION
from storage.formats.safetensors.header import MAX_METADATA_ENTRIES
from tests.conftest import (
    Api,
    MutableClock,
    Person,
    blob_files,
    make_safetensors,
    make_zip,
    missing_id,
)

MIB = 1024 * 1024

FILE = """
query($id: ID!) {
  node(id: $id) {
    ... on ModelFile {
      id filename status primary sizeBytes sha256 autoV2 autoV3 uploadedAt downloadUrl
      version { id }
    }
  }
}
"""

VERSION = """
query($id: ID!) {
  node(id: $id) {
    ... on ModelVersion {
      id status downloadCount
      files { id status primary downloadUrl }
      model { id downloadCount }
    }
  }
}
"""

MODEL = "query($id: ID!) { node(id: $id) { ... on Model { id downloadCount } } }"

DELETE_FILE = """
mutation($i: DeleteModelFileInput!) {
  deleteModelFile(input: $i) { file { id status primary downloadUrl } userErrors { field code message } }
}
"""

SET_PRIMARY = """
mutation($i: SetPrimaryModelFileInput!) {
  setPrimaryModelFile(input: $i) { file { id status primary } userErrors { field code message } }
}
"""

PUBLISH = """
mutation($i: PublishModelVersionInput!) {
  publishModelVersion(input: $i) { version { id status } userErrors { field code message } }
}
"""

DELETE_VERSION = """
mutation($i: DeleteModelVersionInput!) {
  deleteModelVersion(input: $i) { version { id } userErrors { field code message } }
}
"""

DELETE_MODEL = """
mutation($i: DeleteModelInput!) {
  deleteModel(input: $i) { model { id } userErrors { field code message } }
}
"""


# Files built for the tests -------------------------------------------------------


def weights(seed: int = 0) -> bytes:
    """A real safetensors file of a few KiB whose metadata has no training-data keys
    (so the public file is the uploaded file, byte for byte)."""
    return make_safetensors(
        {"ss_network_dim": "8", "ss_network_alpha": "4", "seed": str(seed)},
        {
            "lora_unet_down.lora_down.weight": (np.arange(1024, dtype=np.float16) + seed).reshape(
                32, 32
            ),
            "lora_unet_down.lora_up.weight": np.full((16, 8), seed, dtype=np.float32),
        },
    )


def header_length(body: bytes) -> int:
    (length,) = struct.unpack("<Q", body[:8])
    return int(length)


def raw_file(header: bytes | dict[str, Any], data: bytes = b"", length: int | None = None) -> bytes:
    """A file written by hand: 8-byte little-endian length, header, data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


VALID = weights()
N = header_length(VALID)
U8x4 = tensor("U8", [4], 0, 4)

# name, body, declared sizeBytes (None: the body's length), HTTP status, code
MALFORMED: list[tuple[str, bytes, int | None, int, str]] = [
    ("truncated inside the 8-byte length", VALID[:5], None, 422, "TRUNCATED"),
    # the length says the header runs past the end of the declared file
    ("truncated inside the header", VALID[: 8 + N // 2], None, 422, "HEADER_TOO_LARGE"),
    (
        "truncated inside the header, whole size declared",
        VALID[: 8 + N // 2],
        len(VALID),
        400,
        "SIZE_MISMATCH",
    ),
    ("truncated inside the data", VALID[:-3], None, 422, "TRUNCATED"),
    (
        "header length far beyond the declared size",
        raw_file({"w": U8x4}, b"\0" * 4, length=1_000_000),
        None,
        422,
        "HEADER_TOO_LARGE",
    ),
    (
        # a file large enough to hold such a header (sent whole: a body shorter than
        # declared is SIZE_MISMATCH first): refused by the header limit (32 MiB)
        "header length above 100 MiB",
        raw_file(b'{"w":', length=100 * MIB + 1).ljust(8 + 100 * MIB + 1 + 64, b" "),
        None,
        422,
        "HEADER_TOO_LARGE",
    ),
    ("header not JSON", raw_file(b"{w: not json}  "), None, 422, "BAD_HEADER"),
    ("header a JSON array", raw_file(b'[{"dtype": "U8"}]'), None, 422, "BAD_HEADER"),
    (
        # the reference keeps the last of a repeated name: nothing covers bytes 0 to 4
        "a tensor named twice",
        raw_file(
            b'{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
            b'"w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}',
            b"\0" * 8,
        ),
        None,
        422,
        "BAD_OFFSETS",
    ),
    (
        "a tensor's field named twice",
        raw_file(
            b'{"w":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}}', b"\0" * 4
        ),
        None,
        422,
        "BAD_HEADER",
    ),
    (
        "__metadata__ named twice",
        raw_file(b'{"__metadata__":{},"__metadata__":{}}'),
        None,
        422,
        "BAD_HEADER",
    ),
    (
        "unknown dtype",
        raw_file({"w": tensor("F42", [2], 0, 8)}, b"\0" * 8),
        None,
        422,
        "UNKNOWN_DTYPE",
    ),
    (
        "shape times dtype size differs from the span",
        raw_file({"w": tensor("F32", [3], 0, 8)}, b"\0" * 8),
        None,
        422,
        "BAD_TENSOR",
    ),
    (
        "overlapping offsets",
        raw_file({"a": tensor("U8", [8], 0, 8), "b": tensor("U8", [8], 4, 12)}, b"\0" * 12),
        None,
        422,
        "BAD_OFFSETS",
    ),
    (
        "a gap between tensors",
        raw_file({"a": tensor("U8", [4], 0, 4), "b": tensor("U8", [4], 8, 12)}, b"\0" * 12),
        None,
        422,
        "BAD_OFFSETS",
    ),
    ("trailing bytes after the tensors", VALID + b"\0" * 8, None, 422, "TRAILING_DATA"),
    (
        "metadata value not a string",
        raw_file({"__metadata__": {"ss_network_dim": 8}, "w": U8x4}, b"\0" * 4),
        None,
        422,
        "BAD_METADATA",
    ),
    ("header not UTF-8", raw_file(b'{"w\xff":1}'), None, 422, "BAD_HEADER"),
    ("header holding NaN", raw_file(b'{"__metadata__":{"k":NaN}}'), None, 422, "BAD_HEADER"),
    ("header length below 2", raw_file(b"", length=0), None, 422, "BAD_HEADER"),
    (
        "a dimension out of 64 bits beside a zero",
        raw_file(
            b'{"w":{"dtype":"F32","shape":[99999999999999999999999,0],"data_offsets":[0,0]}}'
        ),
        None,
        422,
        "BAD_TENSOR",
    ),
    (
        # refused only after the data arrived: the data must not be kept either
        "more metadata entries than accepted",
        raw_file(
            {"__metadata__": {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}, "w": U8x4},
            b"\0" * 4,
        ),
        None,
        422,
        "BAD_METADATA",
    ),
    *[
        (
            f"a pickle (protocol {protocol})",
            pickle.dumps({"state_dict": {"lora.weight": [0.5] * 64}}, protocol=protocol),
            None,
            415,
            "NOT_SAFETENSORS",
        )
        for protocol in (0, 2, 4, 5)
    ],
    (
        "a zip (a PyTorch .pt)",
        make_zip({"archive/data.pkl": pickle.dumps({"w": [1.0] * 16})}),
        None,
        415,
        "NOT_SAFETENSORS",
    ),
]


# Helpers -------------------------------------------------------------------------


async def draft(api: Api, owner: Person, name: str = "v1") -> tuple[str, str]:
    """A model with one draft version: (model, version) IDs."""
    model_id = await api.create_model(owner)
    return model_id, await api.create_version(owner, model_id, name)


async def file_node(api: Api, file_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (
        await api.gql(FILE, {"id": file_id}, who.token if who else None)
    )["node"]
    return node


async def version_node(api: Api, version_id: str, who: Person | None) -> dict[str, Any] | None:
    node: dict[str, Any] | None = (
        await api.gql(VERSION, {"id": version_id}, who.token if who else None)
    )["node"]
    return node


async def files_of(api: Api, version_id: str, who: Person | None) -> list[dict[str, Any]]:
    node = await version_node(api, version_id, who)
    assert node is not None
    found: list[dict[str, Any]] = node["files"]
    return found


async def model_downloads(api: Api, model_id: str) -> int:
    node = (await api.gql(MODEL, {"id": model_id}))["node"]
    count: int = node["downloadCount"]
    return count


async def version_downloads(api: Api, version_id: str) -> int:
    node = await version_node(api, version_id, None)
    assert node is not None
    count: int = node["downloadCount"]
    return count


async def mutation(
    api: Api, query: str, name: str, variables: dict[str, Any], who: Person
) -> dict[str, Any]:
    payload: dict[str, Any] = (await api.gql(query, {"i": variables}, who.token))[name]
    return payload


async def delete_file(api: Api, who: Person, file_id: str) -> dict[str, Any]:
    return await mutation(api, DELETE_FILE, "deleteModelFile", {"fileId": file_id}, who)


async def set_primary(api: Api, who: Person, file_id: str) -> dict[str, Any]:
    return await mutation(api, SET_PRIMARY, "setPrimaryModelFile", {"fileId": file_id}, who)


async def publish(api: Api, who: Person, version_id: str) -> dict[str, Any]:
    return await mutation(api, PUBLISH, "publishModelVersion", {"versionId": version_id}, who)


async def download_url(api: Api, file_id: str, who: Person | None) -> str:
    node = await file_node(api, file_id, who)
    assert node is not None
    url: str | None = node["downloadUrl"]
    assert url
    return url


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(error["field"], error["code"]) for error in payload["userErrors"]]


async def in_chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    """The body as a client streams it: ``size`` bytes at a time."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def temp_files(settings: Settings) -> list[Path]:
    tmp = settings.blob_dir / ".tmp"
    return sorted(p for p in tmp.rglob("*") if p.is_file()) if tmp.exists() else []


# 1. Malformed files --------------------------------------------------------------


async def test_malformed_files_are_refused_on_put_and_nothing_is_kept(
    api: Api, settings: Settings
) -> None:
    # given alice's model; each malformed file goes to a draft version of its own
    alice = await api.sign_up("alice")
    model_id = await api.create_model(alice)
    wrong: list[str] = []
    for number, (name, body, declared, status, code) in enumerate(MALFORMED):
        version_id = await api.create_version(alice, model_id, f"v{number}")
        size = len(body) if declared is None else declared
        payload = await api.start_file_upload(alice, version_id, size)
        assert payload["userErrors"] == [], (name, payload["userErrors"])
        before = blob_files(settings.blob_dir)
        # when the file is PUT to its upload URL
        response = await api.put(payload["uploadUrl"], body)
        # then it is refused with the expected status and code ...
        got = (response.status_code, response.json().get("error"))
        if got != (status, code):
            wrong.append(f"{name}: expected {(status, code)}, got {got} {response.text}")
        # ... and nothing is kept: no blob, no temporary file, no record of the file
        if blob_files(settings.blob_dir) != before:
            wrong.append(f"{name}: blobs were kept")
        if temp_files(settings):
            wrong.append(f"{name}: temporary files were left: {temp_files(settings)}")
        node = await file_node(api, payload["file"]["id"], alice)
        if node is not None:
            wrong.append(f"{name}: the file is still listed: {node}")
        # ... and the owner can start a new upload and send a valid file
        again = await api.start_file_upload(alice, version_id, len(VALID))
        if again["userErrors"]:
            wrong.append(f"{name}: no new upload: {again['userErrors']}")
            continue
        retry = await api.put(again["uploadUrl"], VALID)
        if retry.status_code != 200:
            wrong.append(f"{name}: a valid file after the refusal got {retry.status_code}")
    assert wrong == [], "\n".join(wrong)


async def test_a_refused_upload_leaves_no_file_behind(api: Api) -> None:
    # given a draft with one available file and one whose upload was refused
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    await api.upload_file(alice, version_id, VALID)
    bad = VALID[:8] + b"[" + VALID[9:]
    refused = await api.start_file_upload(alice, version_id, len(bad))
    assert (await api.put(refused["uploadUrl"], bad)).status_code == 422
    # then the refused file is not listed, and its URL finds nothing
    node = await version_node(api, version_id, alice)
    assert node is not None
    assert await file_node(api, refused["file"]["id"], alice) is None
    again = await api.put(refused["uploadUrl"], VALID)
    assert (again.status_code, again.json()["error"]) == (404, "NOT_FOUND")
    # and the version publishes with the file that arrived
    payload = await publish(api, alice, version_id)
    assert payload["userErrors"] == []
    assert payload["version"]["status"] == "PUBLISHED"


async def test_publishing_needs_an_available_file(api: Api) -> None:
    # given a draft without any file
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    # then it cannot be published
    assert codes(await publish(api, alice, version_id)) == [("versionId", "NO_FILES")]
    # nor with a file whose bytes have not arrived
    pending = await api.start_file_upload(alice, version_id, len(VALID))
    assert codes(await publish(api, alice, version_id)) == [("versionId", "UPLOAD_INCOMPLETE")]
    # nor with only a deleted file
    assert (await delete_file(api, alice, pending["file"]["id"]))["userErrors"] == []
    assert codes(await publish(api, alice, version_id)) == [("versionId", "NO_FILES")]
    # and the version stayed a draft all along
    node = await version_node(api, version_id, alice)
    assert node is not None and node["status"] == "DRAFT"
    # when a file arrives, it can
    await api.upload_file(alice, version_id, VALID)
    assert (await publish(api, alice, version_id))["userErrors"] == []


# 2. Pickles by name ----------------------------------------------------------------


PICKLE_NAMES = [
    "model.ckpt",
    "model.pt",
    "pytorch_model.bin",
    "LORA.CKPT",
    "cats.pth",
    "model.ckpt.",  # trailing dots are dropped from the display name
    "folder/model.pt",
    "model.pt\u200b",  # an invisible format character is dropped too
]


async def test_pickled_checkpoint_names_are_refused(api: Api) -> None:
    # given a draft version
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    for filename in PICKLE_NAMES:
        # when a pickled checkpoint's name is given
        payload = await api.start_file_upload(alice, version_id, len(VALID), filename=filename)
        # then it is refused on the filename
        assert codes(payload) == [("filename", "NOT_SAFETENSORS")], filename
        assert payload["file"] is None and payload["uploadUrl"] is None, filename
    # and no file is recorded, while a safetensors name is taken
    assert await files_of(api, version_id, alice) == []
    await api.upload_file(alice, version_id, VALID, filename="model.ckpt.safetensors")


# 3. Sizes and quota ------------------------------------------------------------------


@pytest.mark.env(LORASHELF_MAX_MODEL_FILE_BYTES=str(len(VALID)))
async def test_declared_sizes_are_checked(api: Api) -> None:
    # given a server taking weights files up to exactly len(VALID) bytes
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    # then zero, negative and too large sizes are refused on sizeBytes
    for size, code in [(0, "INVALID_SIZE"), (-1, "INVALID_SIZE"), (len(VALID) + 1, "TOO_LARGE")]:
        payload = await api.start_file_upload(alice, version_id, size)
        assert codes(payload) == [("sizeBytes", code)], size
        assert payload["file"] is None
    assert await files_of(api, version_id, alice) == []
    # and a file of exactly the limit is taken
    file_id = await api.upload_file(alice, version_id, VALID)
    node = await file_node(api, file_id, alice)
    assert node is not None and node["status"] == "AVAILABLE"


async def test_body_longer_or_shorter_than_declared_is_refused(
    api: Api, settings: Settings
) -> None:
    # given two pending files declared as len(VALID) bytes
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    longer = await api.start_file_upload(alice, version_id, len(VALID))
    shorter = await api.start_file_upload(alice, version_id, len(VALID))
    # when one gets a byte more and the other ten bytes fewer, streamed in small chunks
    # (so that data bytes were written before the refusal)
    too_long = await api.http.put(longer["uploadUrl"], content=in_chunks(VALID + b"\0", 100))
    too_short = await api.http.put(shorter["uploadUrl"], content=in_chunks(VALID[:-10], 100))
    # then both are refused as SIZE_MISMATCH and nothing is kept
    assert (too_long.status_code, too_long.json()["error"]) == (413, "SIZE_MISMATCH")
    assert (too_short.status_code, too_short.json()["error"]) == (400, "SIZE_MISMATCH")
    assert blob_files(settings.blob_dir) == set()
    assert temp_files(settings) == []
    for payload in (longer, shorter):
        assert await file_node(api, payload["file"]["id"], alice) is None


ZIP = make_zip()


@pytest.mark.env(LORASHELF_MAX_BYTES_PER_USER=str(len(ZIP) + len(VALID)))
async def test_byte_quota_counts_datasets_and_files_together(api: Api) -> None:
    # given alice, allowed exactly one dataset of len(ZIP) and one file of len(VALID)
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    await api.upload(alice, version_id, body=ZIP)
    # then a file one byte larger than what is left is refused
    over = await api.start_file_upload(alice, version_id, len(VALID) + 1)
    assert codes(over) == [("sizeBytes", "QUOTA_BYTES")]
    # while one that fills the quota exactly is taken; pending, it already counts
    started = await api.start_file_upload(alice, version_id, len(VALID))
    assert started["userErrors"] == []
    assert codes(await api.start_file_upload(alice, version_id, 1)) == [
        ("sizeBytes", "QUOTA_BYTES")
    ]
    assert (await api.put(started["uploadUrl"], VALID)).status_code == 200
    # and once available it counts against a new dataset too
    _, other_version = await draft(api, alice, "v2")
    dataset = await api.start_upload(alice, other_version, 1)
    assert [(e["field"], e["code"]) for e in dataset["userErrors"]] == [
        ("sizeBytes", "QUOTA_BYTES")
    ]
    assert codes(await api.start_file_upload(alice, other_version, 1)) == [
        ("sizeBytes", "QUOTA_BYTES")
    ]
    # when the file is deleted, its bytes are free again
    assert (await delete_file(api, alice, started["file"]["id"]))["userErrors"] == []
    assert (await api.start_file_upload(alice, other_version, len(VALID)))["userErrors"] == []
    # and the quota is per user
    bob = await api.sign_up("bob")
    _, bobs_version = await draft(api, bob)
    await api.upload_file(bob, bobs_version, VALID)


# 4. Single use ---------------------------------------------------------------------


async def test_upload_url_is_single_use(api: Api, settings: Settings) -> None:
    # given a file uploaded through its URL
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    assert (await api.put(payload["uploadUrl"], VALID)).status_code == 200
    before = blob_files(settings.blob_dir)
    # when the URL is used again
    response = await api.put(payload["uploadUrl"], VALID)
    # then it is gone, and the stored file is untouched
    assert (response.status_code, response.json()["error"]) == (410, "UPLOAD_URL_USED")
    assert blob_files(settings.blob_dir) == before
    node = await file_node(api, payload["file"]["id"], alice)
    assert node is not None
    assert (node["status"], node["sha256"]) == ("AVAILABLE", hashlib.sha256(VALID).hexdigest())


async def test_upload_url_refused_once_is_used_up(api: Api, clock: MutableClock) -> None:
    # given an upload refused as malformed
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    assert (await api.put(payload["uploadUrl"], VALID[:8] + b"x" + VALID[9:])).status_code == 422
    # when the same URL is tried again with a valid file
    response = await api.put(payload["uploadUrl"], VALID)
    # then it finds nothing (the refused upload was not kept): a new upload is needed
    assert (response.status_code, response.json()["error"]) == (404, "NOT_FOUND")
    assert "start a new one" in response.json()["message"]
    # and a URL not used within its hour has expired
    late = await api.start_file_upload(alice, version_id, len(VALID))
    clock.advance(3600)
    response = await api.put(late["uploadUrl"], VALID)
    assert (response.status_code, response.json()["error"]) == (410, "UPLOAD_URL_EXPIRED")
    node = await file_node(api, late["file"]["id"], alice)
    assert node is not None and node["status"] == "PENDING_UPLOAD"


async def test_tampered_upload_url_is_refused(api: Api, settings: Settings) -> None:
    # given an upload URL whose sealed token has one character changed
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    url: str = payload["uploadUrl"]
    prefix, token = url.rsplit("/", 1)
    # one character changed in the middle of the sealed token
    forged = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    # when the bytes are PUT to the forged URL
    response = await api.put(f"{prefix}/{forged}", VALID)
    # then it is refused, nothing is stored, and the real URL still works
    assert (response.status_code, response.json()["error"]) == (403, "INVALID_UPLOAD_URL")
    assert blob_files(settings.blob_dir) == set()
    node = await file_node(api, payload["file"]["id"], alice)
    assert node is not None and node["status"] == "PENDING_UPLOAD"
    assert (await api.put(url, VALID)).status_code == 200


# 5. Drafts only, ten files at most --------------------------------------------------


async def test_published_version_takes_no_new_file(api: Api) -> None:
    # given a published version
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    await api.upload_file(alice, version_id, VALID)
    await api.publish(alice, version_id)
    # when another file is started for it
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    # then it is refused, and the version keeps its one file
    assert codes(payload) == [("versionId", "VERSION_PUBLISHED")]
    assert payload["file"] is None and payload["uploadUrl"] is None
    assert len(await files_of(api, version_id, alice)) == 1


async def test_at_most_ten_live_files_per_version(api: Api) -> None:
    # given a draft with ten files (nine pending, one available)
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    await api.upload_file(alice, version_id, VALID)
    started = [await api.start_file_upload(alice, version_id, len(VALID)) for _ in range(9)]
    assert all(p["userErrors"] == [] for p in started)
    # then an eleventh is refused
    assert codes(await api.start_file_upload(alice, version_id, len(VALID))) == [
        ("versionId", "TOO_MANY_FILES")
    ]
    # when one is deleted, its tombstone does not count
    assert (await delete_file(api, alice, started[0]["file"]["id"]))["userErrors"] == []
    gone = await api.put(started[0]["uploadUrl"], VALID)
    assert (gone.status_code, gone.json()["error"]) == (404, "NOT_FOUND")
    again = await api.start_file_upload(alice, version_id, len(VALID))
    assert again["userErrors"] == []
    assert codes(await api.start_file_upload(alice, version_id, len(VALID))) == [
        ("versionId", "TOO_MANY_FILES")
    ]
    # and another version has its own ten
    _, other = await draft(api, alice, "v2")
    assert (await api.start_file_upload(alice, other, len(VALID)))["userErrors"] == []


async def test_files_list_stays_within_its_bound_of_ten(api: Api) -> None:
    # given a draft whose owner started and deleted a few uploads, then filled its ten
    # live files (tombstones do not count against the ten)
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    for _ in range(3):
        started = await api.start_file_upload(alice, version_id, len(VALID))
        assert (await delete_file(api, alice, started["file"]["id"]))["userErrors"] == []
    for _ in range(10):
        assert (await api.start_file_upload(alice, version_id, len(VALID)))["userErrors"] == []
    # when she lists the version's files
    files = await files_of(api, version_id, alice)
    # then the list keeps the bound the schema promises ("at most 10") and the query
    # cost limit counts on (graph/schema/limits.py)
    assert len(files) <= MAX_FILES_PER_VERSION, [f["status"] for f in files]


# 6. Hashes -------------------------------------------------------------------------


async def test_hashes_and_size_are_those_of_the_bytes_sent(api: Api) -> None:
    # given a file whose metadata has no training-data keys
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    body = weights(seed=3)
    payload = await api.start_file_upload(alice, version_id, len(body))
    # when it is uploaded in 7-byte chunks (the header ends inside one of them)
    response = await api.http.put(payload["uploadUrl"], content=in_chunks(body, 7))
    # then the hashes are computed from exactly those bytes
    sha256 = hashlib.sha256(body).hexdigest()
    auto_v3 = hashlib.sha256(body[8 + header_length(body) :]).hexdigest()
    assert response.status_code == 200
    receipt = response.json()
    assert (receipt["sha256"], receipt["autoV3"], receipt["sizeBytes"]) == (
        sha256,
        auto_v3,
        len(body),
    )
    assert receipt["withheldKeys"] == []
    node = await file_node(api, payload["file"]["id"], alice)
    assert node is not None
    assert node["status"] == "AVAILABLE"
    assert node["sha256"] == sha256
    assert node["autoV2"] == sha256[:10]
    assert node["autoV3"] == auto_v3
    assert node["sizeBytes"] == len(body)
    assert node["uploadedAt"] is not None
    downloaded = await api.http.get(node["downloadUrl"])
    assert downloaded.content == body
    # and the public sees the same after publishing
    await api.publish(alice, version_id)
    public = await file_node(api, payload["file"]["id"], None)
    assert public is not None
    assert (public["sha256"], public["autoV2"], public["autoV3"], public["sizeBytes"]) == (
        sha256,
        sha256[:10],
        auto_v3,
        len(body),
    )


async def test_hashes_of_a_file_with_withheld_training_keys(api: Api) -> None:
    # given a file whose metadata holds the training data's tag counts
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    tags = json.dumps({"10_cats": {"cat": 12, "orange cat": 3}})
    body = make_safetensors({"ss_network_dim": "8", "ss_tag_frequency": tags})
    data_section = body[8 + header_length(body) :]
    file_id = await api.upload_file(alice, version_id, body)
    # then alice downloads exactly what she sent, advertised as her original
    query = "query($id: ID!) { node(id: $id) { ... on ModelFile { originalSha256 withheldKeys } } }"
    mine = (await api.gql(query, {"id": file_id}, alice.token))["node"]
    assert mine == {
        "originalSha256": hashlib.sha256(body).hexdigest(),
        "withheldKeys": ["ss_tag_frequency"],
    }
    own = await api.http.get(await download_url(api, file_id, alice))
    assert own.content == body
    assert own.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    # when the version is published
    await api.publish(alice, version_id)
    # then everybody else downloads the file without the key, and its advertised size
    # and hashes are those of what they download; the tensor data is the same
    public = await file_node(api, file_id, None)
    assert public is not None
    served = (await api.http.get(public["downloadUrl"])).content
    assert b"ss_tag_frequency" not in served and b"orange cat" not in served
    assert served[8 + header_length(served) :] == data_section
    assert public["sizeBytes"] == len(served)
    assert public["sha256"] == hashlib.sha256(served).hexdigest()
    assert public["autoV2"] == public["sha256"][:10]
    assert public["autoV3"] == hashlib.sha256(data_section).hexdigest()


# 7. Primary file -------------------------------------------------------------------


async def test_first_available_file_is_primary_and_primary_can_move(api: Api) -> None:
    # given a draft with a pending file, then two uploaded files a and b
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    pending = (await api.start_file_upload(alice, version_id, len(VALID)))["file"]["id"]
    a = await api.upload_file(alice, version_id, weights(1), "a.safetensors")
    b = await api.upload_file(alice, version_id, weights(2), "b.safetensors")
    # then the first available file is primary, not the older pending one; primary first
    listed = [(f["id"], f["primary"]) for f in await files_of(api, version_id, alice)]
    assert listed == [(a, True), (pending, False), (b, False)]
    # a pending file cannot become primary
    assert codes(await set_primary(api, alice, pending)) == [("fileId", "FILE_NOT_AVAILABLE")]
    # when b is made primary
    payload = await set_primary(api, alice, b)
    assert payload["userErrors"] == []
    assert payload["file"] == {"id": b, "status": "AVAILABLE", "primary": True}
    # then it is the only primary, listed first (the others oldest first)
    listed = [(f["id"], f["primary"]) for f in await files_of(api, version_id, alice)]
    assert listed == [(b, True), (pending, False), (a, False)]
    # making it primary again changes nothing
    assert (await set_primary(api, alice, b))["userErrors"] == []
    listed = [(f["id"], f["primary"]) for f in await files_of(api, version_id, alice)]
    assert listed == [(b, True), (pending, False), (a, False)]
    # when the primary file is deleted, the other available one is promoted
    deleted = await delete_file(api, alice, b)
    assert deleted["userErrors"] == []
    assert deleted["file"]["primary"] is False
    listed = [(f["id"], f["status"], f["primary"]) for f in await files_of(api, version_id, alice)]
    assert listed == [
        (a, "AVAILABLE", True),
        (pending, "PENDING_UPLOAD", False),
    ]
    # and a deleted draft file is gone: it cannot be primary again
    assert codes(await set_primary(api, alice, b)) == [("fileId", "NOT_FOUND")]


# 8. Visibility -------------------------------------------------------------------------


async def test_draft_files_are_the_owners_and_published_ones_everybodys(api: Api) -> None:
    # given alice's draft with an available file, a pending one and a deleted one (a
    # draft's file deleted by its owner leaves no record: it was never public)
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    _, version_id = await draft(api, alice)
    body = weights(5)
    available = await api.upload_file(alice, version_id, body)
    pending = (await api.start_file_upload(alice, version_id, len(VALID)))["file"]["id"]
    deleted = await api.upload_file(alice, version_id, weights(6))
    assert (await delete_file(api, alice, deleted))["userErrors"] == []
    # then alice sees the two left, with a download URL only for the available one
    mine = await files_of(api, version_id, alice)
    assert [(f["id"], f["status"]) for f in mine] == [
        (available, "AVAILABLE"),
        (pending, "PENDING_UPLOAD"),
    ]
    assert [f["downloadUrl"] is not None for f in mine] == [True, False]
    assert await file_node(api, deleted, alice) is None
    own = await file_node(api, available, alice)
    assert own is not None
    assert (own["id"], own["version"]) == (available, {"id": version_id})
    # and she can download her draft's file
    response = await api.http.get(own["downloadUrl"])
    assert (response.status_code, response.content) == (200, body)
    # and nobody else sees the draft or any of its files
    for who in (bob, None):
        assert await version_node(api, version_id, who) is None
        for file_id in (available, pending, deleted):
            assert await file_node(api, file_id, who) is None
    # when the pending file is deleted and the version published
    assert (await delete_file(api, alice, pending))["userErrors"] == []
    assert (await publish(api, alice, version_id))["userErrors"] == []
    # then everybody sees the available file, through the version and node(id), and
    # can download it
    for who in (bob, None):
        files = await files_of(api, version_id, who)
        assert [(f["id"], f["status"], f["primary"]) for f in files] == [
            (available, "AVAILABLE", True)
        ]
        node = await file_node(api, available, who)
        assert node is not None
        assert (node["id"], node["filename"], node["version"]) == (
            available,
            "lora.safetensors",
            {"id": version_id},
        )
        response = await api.http.get(node["downloadUrl"])
        assert response.status_code == 200
        assert response.content == body
        assert await file_node(api, deleted, who) is None
        assert await file_node(api, pending, who) is None
    assert [f["status"] for f in await files_of(api, version_id, alice)] == ["AVAILABLE"]


# 9. Deleting ---------------------------------------------------------------------------


async def test_deleting_a_draft_file_removes_its_bytes(api: Api, settings: Settings) -> None:
    # given a draft with two files, and a download URL for the second one
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    await api.upload_file(alice, version_id, weights(1))
    before = blob_files(settings.blob_dir)
    file_id = await api.upload_file(alice, version_id, weights(2))
    added = blob_files(settings.blob_dir) - before
    assert added
    url = await download_url(api, file_id, alice)
    # when alice deletes it
    payload = await delete_file(api, alice, file_id)
    # then its blobs are gone from disk, and the other file's stay
    assert payload["userErrors"] == []
    assert blob_files(settings.blob_dir) == before
    assert all(not path.exists() for path in added)
    # the answer shows it as deleted; no record is kept (a draft's file was never
    # public), and the old URL is dead
    assert payload["file"] == {
        "id": file_id,
        "status": "DELETED",
        "primary": False,
        "downloadUrl": None,
    }
    assert await file_node(api, file_id, alice) is None
    assert (await api.http.get(url)).status_code == 404
    # and deleting it again finds nothing and changes nothing
    again = await delete_file(api, alice, file_id)
    assert codes(again) == [("fileId", "NOT_FOUND")]
    assert blob_files(settings.blob_dir) == before


async def test_published_version_files_cannot_be_deleted(api: Api, settings: Settings) -> None:
    # given a published version's file
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    file_id = await api.upload_file(alice, version_id, VALID)
    await api.publish(alice, version_id)
    before = blob_files(settings.blob_dir)
    # when alice tries to delete it
    payload = await delete_file(api, alice, file_id)
    # then it is refused and the file is untouched
    assert [e["code"] for e in payload["userErrors"]] == ["VERSION_PUBLISHED"]
    assert payload["file"] is None
    assert blob_files(settings.blob_dir) == before
    node = await file_node(api, file_id, None)
    assert node is not None
    assert (node["status"], node["primary"]) == ("AVAILABLE", True)
    response = await api.http.get(node["downloadUrl"])
    assert response.content == VALID
    # and the error names a field of this mutation's input (it has only fileId), or none
    assert payload["userErrors"][0]["field"] in ("fileId", None)


async def test_deleting_a_version_deletes_its_file_blobs(api: Api, settings: Settings) -> None:
    # given a model with a published version of two files and another version kept
    alice = await api.sign_up("alice")
    model_id, version_id = await draft(api, alice)
    kept_version = await api.create_version(alice, model_id, "v2")
    kept = await api.upload_file(alice, kept_version, weights(9))
    before = blob_files(settings.blob_dir)
    first = await api.upload_file(alice, version_id, weights(1))
    second = await api.upload_file(alice, version_id, weights(2))
    await api.publish(alice, version_id)
    urls = [await download_url(api, file_id, None) for file_id in (first, second)]
    for url in urls:
        assert (await api.http.head(url)).status_code == 200
    # when the version is deleted
    payload = await mutation(
        api, DELETE_VERSION, "deleteModelVersion", {"versionId": version_id}, alice
    )
    # then every blob of its files is gone, the others stay, and the URLs are dead
    assert payload["userErrors"] == []
    assert blob_files(settings.blob_dir) == before
    for url in urls:
        assert (await api.http.get(url)).status_code == 404
    for file_id in (first, second):
        assert await file_node(api, file_id, None) is None
        node = await file_node(api, file_id, alice)
        assert node is not None and node["status"] == "DELETED"
    kept_node = await file_node(api, kept, alice)
    assert kept_node is not None and kept_node["status"] == "AVAILABLE"


async def test_deleting_a_model_deletes_every_file_blob(api: Api, settings: Settings) -> None:
    # given bob's file, then alice's model with a published and a draft version of files
    bob = await api.sign_up("bob")
    _, bobs_version = await draft(api, bob)
    await api.upload_file(bob, bobs_version, weights(7))
    before = blob_files(settings.blob_dir)
    alice = await api.sign_up("alice")
    model_id, published = await draft(api, alice)
    unpublished = await api.create_version(alice, model_id, "v2")
    files = [
        await api.upload_file(alice, published, weights(1)),
        await api.upload_file(alice, published, weights(2)),
        await api.upload_file(alice, unpublished, weights(3)),
    ]
    pending = await api.start_file_upload(alice, unpublished, len(VALID))
    await api.publish(alice, published)
    urls = [await download_url(api, file_id, alice) for file_id in files]
    # when the model is deleted
    payload = await mutation(api, DELETE_MODEL, "deleteModel", {"modelId": model_id}, alice)
    # then no blob of its files is left, bob's file stays, and every URL is dead
    assert payload["userErrors"] == []
    assert blob_files(settings.blob_dir) == before
    for url in urls:
        assert (await api.http.get(url)).status_code == 404
    # and the pending file's upload URL no longer takes bytes
    late = await api.put(pending["uploadUrl"], VALID)
    assert late.status_code == 404
    assert blob_files(settings.blob_dir) == before


async def test_deleting_a_file_while_its_bytes_arrive_keeps_nothing(
    api: Api, settings: Settings
) -> None:
    # given a file whose upload has started
    alice = await api.sign_up("alice")
    _, version_id = await draft(api, alice)
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    file_id = payload["file"]["id"]
    deleted: dict[str, Any] = {}

    async def body() -> AsyncIterator[bytes]:
        yield VALID[: len(VALID) // 2]
        # when alice deletes the file half-way through
        deleted.update(await delete_file(api, alice, file_id))
        yield VALID[len(VALID) // 2 :]

    response = await api.http.put(payload["uploadUrl"], content=body())
    # then the deletion wins: the upload is refused and none of its bytes are kept
    assert deleted["userErrors"] == []
    assert deleted["file"]["status"] == "DELETED"
    assert (response.status_code, response.json()["error"]) == (404, "NOT_FOUND")
    assert blob_files(settings.blob_dir) == set()
    assert temp_files(settings) == []
    assert await file_node(api, file_id, alice) is None


async def test_publishing_or_deleting_a_version_while_bytes_arrive(
    api: Api, settings: Settings
) -> None:
    # given a draft with an available file, and a second file being uploaded
    alice = await api.sign_up("alice")
    model_id, version_id = await draft(api, alice)
    await api.upload_file(alice, version_id, weights(1))
    payload = await api.start_file_upload(alice, version_id, len(VALID))
    during: dict[str, Any] = {}

    async def body(action: str) -> AsyncIterator[bytes]:
        yield VALID[:100]
        if action == "publish":
            during.update(await publish(api, alice, version_id))
        else:
            during.update(
                await mutation(
                    api, DELETE_VERSION, "deleteModelVersion", {"versionId": version_id}, alice
                )
            )
        yield VALID[100:]

    # when alice publishes half-way through
    response = await api.http.put(payload["uploadUrl"], content=body("publish"))
    # then publishing waits for the upload, which completes
    assert codes(during) == [("versionId", "UPLOAD_INCOMPLETE")]
    assert response.status_code == 200
    assert [f["status"] for f in await files_of(api, version_id, alice)] == ["AVAILABLE"] * 2
    # given a third file being uploaded
    third = await api.start_file_upload(alice, version_id, len(VALID))
    during.clear()
    # when the version is deleted half-way through
    response = await api.http.put(third["uploadUrl"], content=body("delete"))
    # then the upload is refused, and no byte of the version's files is left
    assert during["userErrors"] == []
    assert (response.status_code, response.json()["error"]) == (404, "NOT_FOUND")
    assert blob_files(settings.blob_dir) == set()  # every file was the version's
    assert temp_files(settings) == []
    assert (await api.gql(MODEL, {"id": model_id}, alice.token))["node"] is not None


# 10. Downloads and counts ----------------------------------------------------------------


async def published_file(api: Api, owner: Person, body: bytes) -> tuple[str, str, str]:
    """(model, version, file) IDs of a published version holding ``body``."""
    model_id, version_id = await draft(api, owner)
    file_id = await api.upload_file(owner, version_id, body)
    await api.publish(owner, version_id)
    return model_id, version_id, file_id


async def test_download_full_range_and_head(api: Api) -> None:
    # given a published file
    alice = await api.sign_up("alice")
    body = weights(4)
    _, _, file_id = await published_file(api, alice, body)
    url = await download_url(api, file_id, None)
    # when it is downloaded in full
    full = await api.http.get(url)
    # then the bytes are those uploaded
    assert full.status_code == 200
    assert full.content == body
    assert full.headers["content-length"] == str(len(body))
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert full.headers["content-disposition"] == "attachment; filename*=UTF-8''lora.safetensors"
    # a range gives that slice only (across the header and the data)
    part = await api.http.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == body[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(body)}"
    assert part.headers["content-length"] == "90"
    # a range across the end of the header joins header and data
    edge = 8 + header_length(body)
    across = await api.http.get(url, headers={"Range": f"bytes={edge - 5}-{edge + 4}"})
    assert across.status_code == 206
    assert across.content == body[edge - 5 : edge + 5]
    # If-Range: the range while the ETag matches, else the whole file
    etag = full.headers["etag"]
    same = await api.http.get(url, headers={"Range": "bytes=10-99", "If-Range": etag})
    assert (same.status_code, same.content) == (206, body[10:100])
    changed = await api.http.get(url, headers={"Range": "bytes=10-99", "If-Range": '"0000"'})
    assert (changed.status_code, changed.content) == (200, body)
    # a range that starts past the end cannot be satisfied
    beyond = await api.http.get(url, headers={"Range": f"bytes={len(body)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(body)}"
    # a range past the header reads the data section only
    start = 8 + header_length(body) + 5
    tail = await api.http.get(url, headers={"Range": f"bytes={start}-"})
    assert tail.status_code == 206
    assert tail.content == body[start:]
    # HEAD gives the headers without the body
    head = await api.http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(body))
    assert head.headers["etag"] == full.headers["etag"]


# Counting is tested here, as the signed-in and the uncached see it; how long anonymous
# answers may lag behind a count (LORASHELF_PUBLIC_CACHE) is tested in test_response_cache.
@pytest.mark.env(LORASHELF_PUBLIC_CACHE="0")
async def test_download_count_counts_full_downloads_once_per_link(api: Api) -> None:
    # given a published file nobody downloaded
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    body = weights(8)
    model_id, version_id, file_id = await published_file(api, alice, body)
    assert (await version_downloads(api, version_id), await model_downloads(api, model_id)) == (
        0,
        0,
    )
    url = await download_url(api, file_id, bob)
    # a HEAD and a range that stops before the last byte do not count
    assert (await api.http.head(url)).status_code == 200
    assert (await api.http.get(url, headers={"Range": "bytes=0-99"})).status_code == 206
    assert await version_downloads(api, version_id) == 0
    # when the rest is fetched through the same link (a resumed download)
    rest = await api.http.get(url, headers={"Range": "bytes=100-"})
    assert rest.content == body[100:]
    # then one download is counted, for the version and its model
    assert (await version_downloads(api, version_id), await model_downloads(api, model_id)) == (
        1,
        1,
    )
    # a full download and a ranged re-fetch through the same link count nothing more
    assert (await api.http.get(url)).content == body
    assert (await api.http.get(url, headers={"Range": "bytes=-10"})).content == body[-10:]
    assert await version_downloads(api, version_id) == 1
    # when a new download URL is used for a full download
    again = await api.http.get(await download_url(api, file_id, None))
    assert again.content == body
    # then it counts again
    assert (await version_downloads(api, version_id), await model_downloads(api, model_id)) == (
        2,
        2,
    )


# Counting is tested here, as the signed-in and the uncached see it; how long anonymous
# answers may lag behind a count (LORASHELF_PUBLIC_CACHE) is tested in test_response_cache.
@pytest.mark.env(LORASHELF_PUBLIC_CACHE="0")
async def test_a_partial_download_does_not_count(api: Api) -> None:
    # given a published file
    alice = await api.sign_up("alice")
    body = weights(2)
    _, version_id, file_id = await published_file(api, alice, body)
    # when ranges that never reach the last byte are fetched through new links
    for wanted in ("bytes=0-9", f"bytes=10-{len(body) - 2}", "bytes=0-0"):
        response = await api.http.get(
            await download_url(api, file_id, None), headers={"Range": wanted}
        )
        assert response.status_code == 206
    # then nothing is counted
    assert await version_downloads(api, version_id) == 0


# Counting is tested here, as the signed-in and the uncached see it; how long anonymous
# answers may lag behind a count (LORASHELF_PUBLIC_CACHE) is tested in test_response_cache.
@pytest.mark.env(LORASHELF_PUBLIC_CACHE="0")
async def test_model_download_count_sums_its_versions(api: Api) -> None:
    # given a model with two published versions
    alice = await api.sign_up("alice")
    model_id, first = await draft(api, alice)
    second = await api.create_version(alice, model_id, "v2")
    first_file = await api.upload_file(alice, first, weights(1))
    second_file = await api.upload_file(alice, second, weights(2))
    await api.publish(alice, first)
    await api.publish(alice, second)
    # when the first version's file is downloaded twice and the second's once
    for file_id in (first_file, first_file, second_file):
        response = await api.http.get(await download_url(api, file_id, None))
        assert response.status_code == 200
    # then each version counts its own, and the model their sum
    assert await version_downloads(api, first) == 2
    assert await version_downloads(api, second) == 1
    assert await model_downloads(api, model_id) == 3
    node = await version_node(api, second, None)
    assert node is not None and node["model"] == {"id": model_id, "downloadCount": 3}


# 11. Another user's file looks missing ----------------------------------------------------


async def test_another_users_file_answers_like_a_missing_one(api: Api) -> None:
    # given alice's published file (visible to bob) and her draft's file (not visible)
    alice = await api.sign_up("alice")
    bob = await api.sign_up("bob")
    _, _, published = await published_file(api, alice, weights(1))
    _, draft_version = await draft(api, alice)
    drafted = await api.upload_file(alice, draft_version, weights(2))
    missing = missing_id("ModelFile")
    for name, operation in (("deleteModelFile", delete_file), ("setPrimaryModelFile", set_primary)):
        # when bob names alice's files, and a file that does not exist
        expected = await operation(api, bob, missing)
        # then all three answers are the same not-found
        assert expected["file"] is None, name
        assert codes(expected) == [("fileId", "NOT_FOUND")], name
        assert await operation(api, bob, published) == expected, name
        assert await operation(api, bob, drafted) == expected, name
        # as do a malformed id and another kind's id
        assert await operation(api, bob, "not-an-id") == expected, name
        assert await operation(api, bob, missing_id("ModelVersion")) == expected, name
    # and alice's files are untouched
    for file_id in (published, drafted):
        node = await file_node(api, file_id, alice)
        assert node is not None
        assert (node["status"], node["primary"]) == ("AVAILABLE", True)
