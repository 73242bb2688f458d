"""Upload abuse: zip bombs, too many entries, traversal names, non-zips, wrong sizes,
replayed URLs and bodies that do not stop. Every refusal leaves the dataset waiting
for its bytes and nothing stored."""

from __future__ import annotations

import functools
import io
import math
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage.config.settings import Settings
from tests.conftest import Api, Person, make_zip
from tests.graph.test_uploads import dataset_state, draft_version, files_under, zip_with_entry

ZEROS = 1_000_000  # uncompressed bytes in the ratio tests' archive


# Archives ---------------------------------------------------------------------------


def zeros_zip(count: int, *, padded_to: int | None = None) -> bytes:
    """One deflated entry of ``count`` zero bytes; an archive comment pads the archive
    to exactly ``padded_to`` bytes (the comment adds size but nothing to expand)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", bytes(count))
    body = buffer.getvalue()
    if padded_to is None:
        return body
    assert padded_to >= len(body), "the compressed archive is already larger"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", bytes(count))
        archive.comment = b"c" * (padded_to - len(body))
    body = buffer.getvalue()
    assert len(body) == padded_to
    return body


def crafted_zip(
    names: list[bytes], *, file_size: int = 0, declared_entries: int | None = None
) -> bytes:
    """A zip written by hand: one local entry (``file_size`` zeros, deflated) and a
    central directory with one header per name, all pointing at that entry (the
    overlapping-entries bomb's shape). ``declared_entries`` makes the end record lie
    about the count."""
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = data.compress(bytes(file_size)) + data.flush()
    crc = zlib.crc32(bytes(file_size))
    local = (
        struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 0x21, crc, len(packed), file_size, 1, 0
        )
        + b"x"
        + packed
    )
    directory = b"".join(
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            0,
            8,
            0,
            0x21,
            crc,
            len(packed),
            file_size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
        for name in names
    )
    entries = len(names) if declared_entries is None else declared_entries
    entries = min(entries, 0xFFFF)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, len(directory), len(local), 0
    )
    return local + directory + end


@functools.cache
def zip_with_entries(count: int) -> bytes:
    """A real archive (zipfile, zip64 end records past 65,535 entries) of empty files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(count):
            archive.writestr(f"f{n}", b"")
    return buffer.getvalue()


class Body:
    """A request body that sends ``payload`` then ``extra``, and fails the test if the
    server asks for anything after that."""

    def __init__(self, payload: bytes, extra: bytes = b"!", chunk: int = 4096):
        self.payload, self.extra, self.chunk = payload, extra, chunk
        self.sent = 0
        self.asked_for_more = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.payload), self.chunk):
            piece = self.payload[start : start + self.chunk]
            self.sent += len(piece)
            yield piece
        self.sent += len(self.extra)
        yield self.extra
        self.asked_for_more = True
        raise AssertionError("the server read past the declared size + 1")


# Steps --------------------------------------------------------------------------------


async def pending(api: Api, owner: Person, size: int) -> dict[str, Any]:
    """Given a pending dataset of ``size`` declared bytes: its startDatasetUpload payload."""
    payload = await api.start_upload(owner, await draft_version(api, owner), size)
    assert payload["userErrors"] == []
    return payload


async def assert_refused_and_nothing_kept(
    api: Api, settings: Settings, owner: Person, payload: dict[str, Any], response: Any
) -> None:
    """The refused upload left nothing: neither bytes nor the dataset's record."""
    assert await dataset_state(api, owner, payload["dataset"]["id"]) is None, response.text
    assert files_under(settings.blob_dir) == []


# Zip bombs ------------------------------------------------------------------------------


async def test_zip_bomb_is_refused_without_storing_anything(api: Api, settings: Settings) -> None:
    # given a pending dataset for 10 MB of zeros deflated to about 10 KB (ratio ~1000)
    alice = await api.sign_up("alice")
    body = zeros_zip(10 * 1024 * 1024)
    assert len(body) < 20_000
    payload = await pending(api, alice, len(body))
    # when the bomb is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused as a zip bomb with a message saying why
    assert response.status_code == 422
    assert response.json()["error"] == "ZIP_BOMB"
    message = response.json()["message"]
    assert f"{10 * 1024 * 1024:,} bytes" in message
    assert "100 times" in message
    # and the dataset still waits, with no bytes kept anywhere under the blob store
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_overlapping_entries_bomb_is_refused(api: Api, settings: Settings) -> None:
    # given a hand-made archive whose 500 central-directory entries all point at one
    # deflated megabyte of zeros (small on disk, 500 MB once extracted)
    alice = await api.sign_up("alice")
    body = crafted_zip([f"copy{n}.bin".encode() for n in range(500)], file_size=1_000_000)
    assert len(body) < 50_000
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then the declared total gives it away
    assert response.status_code == 422
    assert response.json()["error"] == "ZIP_BOMB"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


@pytest.mark.env(LORASHELF_ZIP_MAX_RATIO="20")
@pytest.mark.parametrize(
    ("size_delta", "status"),
    [
        pytest.param(+1, 200, id="just-under-the-ratio"),
        pytest.param(0, 200, id="exactly-the-ratio"),
        pytest.param(-1, 422, id="just-over-the-ratio"),
    ],
)
async def test_configured_ratio_is_the_boundary(
    api: Api, settings: Settings, size_delta: int, status: int
) -> None:
    # given a server allowing 20x and an archive of 1,000,000 zeros padded to
    # 50,000 bytes (exactly 20x) plus size_delta
    assert settings.limits.zip_max_ratio == 20
    alice = await api.sign_up("alice")
    body = zeros_zip(ZEROS, padded_to=math.ceil(ZEROS / 20) + size_delta)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then a ratio up to 20 is accepted, and anything above is a zip bomb
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["error"] == "ZIP_BOMB"
        await assert_refused_and_nothing_kept(api, settings, alice, payload, response)
    else:
        state = await dataset_state(api, alice, payload["dataset"]["id"])
        assert state["status"] == "AVAILABLE"


async def test_default_ratio_is_100(api: Api, settings: Settings) -> None:
    # given the default configuration and archives of 1,000,000 zeros padded to
    # exactly 100x and to one byte less
    alice = await api.sign_up("alice")
    at_limit = zeros_zip(ZEROS, padded_to=ZEROS // 100)
    over = zeros_zip(ZEROS, padded_to=ZEROS // 100 - 1)
    first = await pending(api, alice, len(over))
    second = await pending(api, alice, len(at_limit))
    # when both are PUT
    refused = await api.put(first["uploadUrl"], over)
    accepted = await api.put(second["uploadUrl"], at_limit)
    # then only the one within 100x is kept
    assert refused.status_code == 422
    assert refused.json()["error"] == "ZIP_BOMB"
    assert accepted.status_code == 200
    assert len(files_under(settings.blob_dir)) == 1


# Entry counts --------------------------------------------------------------------------


async def test_more_than_100000_entries_is_refused(api: Api, settings: Settings) -> None:
    # given a real archive of 100,001 empty files (zip64 end records)
    alice = await api.sign_up("alice")
    body = zip_with_entries(100_001)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused for its entry count
    assert response.status_code == 422
    assert response.json()["error"] == "TOO_MANY_ENTRIES"
    assert "100,000" in response.json()["message"]
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_entry_count_is_walked_not_trusted(api: Api, settings: Settings) -> None:
    # given a hand-made archive with 100,001 directory headers whose end record claims one
    alice = await api.sign_up("alice")
    body = crafted_zip([f"{n:06d}".encode() for n in range(100_001)], declared_entries=1)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then the headers are counted and the lie is refused
    assert response.status_code == 422
    assert response.json()["error"] == "TOO_MANY_ENTRIES"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_exactly_100000_entries_is_accepted(api: Api) -> None:
    # given a real archive of exactly 100,000 empty files
    alice = await api.sign_up("alice")
    body = zip_with_entries(100_000)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is accepted
    assert response.status_code == 200, response.text


async def test_archive_with_comment_is_accepted(api: Api) -> None:
    # given an ordinary archive carrying a comment (the end record is then not last)
    alice = await api.sign_up("alice")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images/a.txt", b"a" * 300)
        archive.comment = b"made by hand"
    body = buffer.getvalue()
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then
    assert response.status_code == 200, response.text


# Entry names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "/etc/passwd", "C:\\x", "a/../../b", "..\\evil", "\\server\\share", "c:x"],
    ids=["dotdot", "absolute", "drive-letter", "dotdot-inside", "backslash-dotdot", "unc", "drive"],
)
async def test_traversal_names_are_unsafe(api: Api, settings: Settings, name: str) -> None:
    # given an archive with one entry named name
    alice = await api.sign_up("alice")
    body = zip_with_entry(name)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused as unsafe, and nothing is kept
    assert response.status_code == 422
    assert response.json()["error"] == "UNSAFE_ARCHIVE"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_traversal_hidden_behind_a_null_byte_is_unsafe(api: Api, settings: Settings) -> None:
    # given a hand-made entry name "ok.txt\0/../../x" (zipfile shows only "ok.txt")
    alice = await api.sign_up("alice")
    body = crafted_zip([b"ok.txt\x00/../../x"])
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then the full stored name is judged, and refused
    assert response.status_code == 422
    assert response.json()["error"] == "UNSAFE_ARCHIVE"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


@pytest.mark.parametrize(
    "name", ["images/..cat.txt", "a..b/c", "dir/", "spaces in name.txt", "ünïcode/ok.txt"]
)
async def test_harmless_names_are_accepted(api: Api, name: str) -> None:
    # given an archive whose entry name only looks unusual
    alice = await api.sign_up("alice")
    body = zip_with_entry(name)
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is accepted
    assert response.status_code == 200, response.text


# Not a zip, truncated, wrong size ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"this is not a zip archive",
        b"PK\x03\x04" + b"\x00" * 100,
        struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 5, 5, 1000, 0, 0),
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    ],
    ids=["text", "local-header-only", "end-record-pointing-nowhere", "png"],
)
async def test_non_zip_is_unsupported_media(api: Api, settings: Settings, body: bytes) -> None:
    # given a pending dataset declared at the body's size
    alice = await api.sign_up("alice")
    payload = await pending(api, alice, len(body))
    # when a body that is not a sound zip is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused as 415 NOT_A_ZIP
    assert response.status_code == 415
    assert response.json()["error"] == "NOT_A_ZIP"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_truncated_zip_is_unsupported_media(api: Api, settings: Settings) -> None:
    # given a valid zip with its last 10 bytes cut off, declared at the cut size
    alice = await api.sign_up("alice")
    body = make_zip()[:-10]
    payload = await pending(api, alice, len(body))
    # when it is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then its missing end record makes it not a zip
    assert response.status_code == 415
    assert response.json()["error"] == "NOT_A_ZIP"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


@pytest.mark.parametrize(
    ("declared_delta", "status"),
    [pytest.param(1, 400, id="shorter"), pytest.param(-1, 413, id="longer")],
)
async def test_wrong_size_is_refused(
    api: Api, settings: Settings, declared_delta: int, status: int
) -> None:
    # given a pending dataset declared one byte off the body's size
    alice = await api.sign_up("alice")
    body = make_zip()
    payload = await pending(api, alice, len(body) + declared_delta)
    # when the body is PUT
    response = await api.put(payload["uploadUrl"], body)
    # then it is refused as a size mismatch
    assert response.status_code == status
    assert response.json()["error"] == "SIZE_MISMATCH"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_body_is_not_read_past_declared_size_plus_one(api: Api, settings: Settings) -> None:
    # given a pending dataset and a body that sends the declared bytes plus one, then
    # fails if the server asks for more
    alice = await api.sign_up("alice")
    archive = make_zip({f"images/{n}.bin": bytes([n]) * 5000 for n in range(8)})
    payload = await pending(api, alice, len(archive))
    body = Body(archive)
    # when it is PUT
    response = await api.http.put(payload["uploadUrl"], content=body)
    # then the server stopped at the extra byte and answered 413
    assert response.status_code == 413
    assert response.json()["error"] == "SIZE_MISMATCH"
    assert body.sent == len(archive) + 1
    assert not body.asked_for_more
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_endless_body_stops_at_the_first_chunk_past_the_size(api: Api) -> None:
    # given a pending dataset of 1000 bytes and a body of 10 MB
    alice = await api.sign_up("alice")
    payload = await pending(api, alice, 1000)
    body = Body(bytes(10 * 1024 * 1024), chunk=512)
    # when it is PUT
    response = await api.http.put(payload["uploadUrl"], content=body)
    # then the server read just past 1000 bytes (one 512-byte chunk) and stopped
    assert response.status_code == 413
    assert body.sent == 1024
    assert not body.asked_for_more


# Replays -------------------------------------------------------------------------------


async def test_replayed_url_after_success_is_gone(api: Api, settings: Settings) -> None:
    # given a completed upload
    alice = await api.sign_up("alice")
    body = make_zip()
    payload = await pending(api, alice, len(body))
    assert (await api.put(payload["uploadUrl"], body)).status_code == 200
    stored = files_under(settings.blob_dir)
    # when the same request is replayed
    response = await api.put(payload["uploadUrl"], body)
    # then it is gone, and the stored bytes are untouched
    assert response.status_code == 410
    assert response.json()["error"] == "UPLOAD_URL_USED"
    assert files_under(settings.blob_dir) == stored


async def test_replayed_url_after_a_refused_bomb_is_gone(api: Api, settings: Settings) -> None:
    # given an upload URL already used for a refused zip bomb
    alice = await api.sign_up("alice")
    bomb = zeros_zip(10 * 1024 * 1024)
    payload = await pending(api, alice, len(bomb))
    assert (await api.put(payload["uploadUrl"], bomb)).status_code == 422
    # when it is replayed
    response = await api.put(payload["uploadUrl"], bomb)
    # then it finds nothing: each URL takes one attempt, and a refused one leaves nothing
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    await assert_refused_and_nothing_kept(api, settings, alice, payload, response)


async def test_url_is_bound_to_its_dataset(api: Api, settings: Settings) -> None:
    # given two pending datasets of the same size, and the first one's URL
    alice = await api.sign_up("alice")
    body = make_zip()
    first = await pending(api, alice, len(body))
    second = await pending(api, alice, len(body))
    # when the bytes are PUT to the first URL
    assert (await api.put(first["uploadUrl"], body)).status_code == 200
    # then only the first dataset has them; the second still waits
    assert (await dataset_state(api, alice, first["dataset"]["id"]))["status"] == "AVAILABLE"
    assert (await dataset_state(api, alice, second["dataset"]["id"]))["status"] == (
        "PENDING_UPLOAD"
    )
