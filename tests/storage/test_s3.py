"""What only the S3 raw store does (storage/blobs/s3.py), against moto's S3 server:
multipart uploads, ranged GETs, deletes that leave no version (a versioned bucket
accepted, with a note), stale multipart uploads aborted, and the bucket checked before
`lorashelf serve` starts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.blobs.base import StoreUnavailable
from storage.blobs.s3 import PART, S3BlobStore, S3Location
from storage.blobs.s3_client import CONTACT
from storage.config.parse import ConfigError
from storage.config.settings import load_settings
from tests.processes import S3Server, free_port


def s3_store(tmp_path: Path, bucket: str, prefix: str = "blobs") -> S3BlobStore:
    return S3BlobStore(S3Location.parse(f"s3://{bucket}/{prefix}"), spool_dir=tmp_path / "spool")


@pytest.fixture
async def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture
async def store(tmp_path: Path, bucket: str) -> AsyncIterator[S3BlobStore]:
    blobs = s3_store(tmp_path, bucket)
    await blobs.connect()
    yield blobs
    await blobs.close()


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def now() -> datetime:
    return datetime.now(UTC)


async def put(store: S3BlobStore, data: bytes) -> str:
    """Store raw bytes under a new key (what the sealed store does with ciphertext)."""
    writer = store.writer(secrets.token_hex(16))
    writer.write_sync(data)
    await writer.commit()
    return writer.key


async def read_all(store: S3BlobStore, key: str) -> bytes:
    return await collect(store.read(key))


async def test_an_object_over_one_part_is_sent_as_a_multipart_upload(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given more than one part's worth of bytes, streamed through a writer
    data = hashlib.sha256(b"seed").digest() * ((PART + 100_000) // 32)
    assert len(data) > PART
    writer = store.writer(secrets.token_hex(16))
    for start in range(0, len(data), 1 << 20):
        writer.write_sync(data[start : start + (1 << 20)])

    # when it is committed
    await writer.commit()
    key = writer.key

    # then the object was assembled from two parts (a multipart ETag ends in -<parts>)
    head = s3.client().head_object(Bucket=bucket, Key=f"blobs/{key}")
    assert head["ETag"].strip('"').endswith("-2")
    assert head["ContentLength"] == len(data)
    # no multipart upload is left open, and the bytes read back whole and across the seam
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert await read_all(store, key) == data
    assert await collect(store.read(key, PART - 3, PART + 3)) == data[PART - 3 : PART + 4]


async def test_a_multipart_upload_that_fails_is_aborted(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given a sealed writer of more than one part whose spool file is gone before commit
    writer = store.writer(secrets.token_hex(16))
    writer.write_sync(b"x" * (PART + 1))
    await writer.seal()
    writer.temp_path.unlink()

    # when it is committed, it fails
    with pytest.raises(FileNotFoundError):
        await writer.commit()

    # then the multipart upload it had started is aborted: no upload, no object is left
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.everything_in(bucket) == []


async def test_a_small_object_is_one_put_under_the_prefix(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # when a small blob is stored
    key = await put(store, b"a header")

    # then it is one object named <prefix><key>, nothing else in the bucket
    listed = s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"blobs/{key}"]
    assert "-" not in listed[0]["ETag"]


async def test_a_ranged_read_asks_the_store_for_that_range_only(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given a blob
    data = bytes(range(256)) * 64
    key = await put(store, data)

    # then a range comes back exactly, in one ranged GET (never the whole object)
    assert await collect(store.read(key, 1000, 1999)) == data[1000:2000]
    ranged = s3.client().get_object(Bucket=bucket, Key=f"blobs/{key}", Range="bytes=1000-1999")
    assert ranged["ContentRange"] == f"bytes 1000-1999/{len(data)}"


async def test_a_read_in_progress_is_not_cut_by_the_bound_on_its_first_contact(
    store: S3BlobStore,
) -> None:
    # given a blob of several pieces, read by a reader slower than the bound on a call
    data = secrets.token_bytes(3 * 256 * 1024)
    key = await put(store, data)
    received = []
    async for chunk in store.read(key, piece=256 * 1024):
        received.append(chunk)
        if len(received) == 1:
            await asyncio.sleep(CONTACT + 1)  # the transfer in progress waits on its reader
    # then every byte arrives: only the answer and its first chunk are bounded as a whole
    assert b"".join(received) == data


async def test_delete_leaves_no_version_and_no_marker(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given a blob
    key = await put(store, b"private")

    # when it is deleted twice, and a key never stored is deleted
    await store.delete(key)
    await store.delete(key)
    await store.delete("0" * 32)

    # then the bucket holds nothing at all: no version, no delete marker
    assert s3.everything_in(bucket) == []


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
async def test_a_bucket_that_keeps_versions_is_accepted_with_a_note(
    tmp_path: Path, s3: S3Server, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    # given a bucket whose versioning is on (or suspended: old versions may still be kept)
    versioned = s3.new_bucket(versioning=status)
    store = s3_store(tmp_path, versioned)

    # when the store starts, it says that deleted blobs lose every version too
    with caplog.at_level(logging.INFO, logger="lorashelf.blobs"):
        await store.connect()
    notes = [r.getMessage() for r in caplog.records if r.name == "lorashelf.blobs"]
    assert any(status in n and "every version and delete marker" in n for n in notes), notes
    # and a blob written twice (two versions), then deleted, leaves nothing at all
    key = await put(store, b"ciphertext")
    s3.client().put_object(Bucket=versioned, Key=f"blobs/{key}", Body=b"ciphertext again")
    await store.delete(key)
    assert s3.everything_in(versioned) == []
    await store.close()


async def test_a_missing_bucket_is_refused(tmp_path: Path, s3: S3Server) -> None:
    store = s3_store(tmp_path, "lorashelf-no-such-bucket")
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        await store.connect()


async def test_an_endpoint_that_does_not_answer_is_unavailable_not_misconfigured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an endpoint where nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = s3_store(tmp_path, "lorashelf-anything")

    # then connecting fails as "unavailable" (a start waits for it), naming where it looked
    with pytest.raises(StoreUnavailable, match="does not answer at http://127.0.0.1:"):
        await store.connect()


async def test_stale_multipart_uploads_under_the_prefix_are_aborted(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given multipart uploads a dead writer left: one under the store's prefix, one not
    client = s3.client()
    ours = client.create_multipart_upload(Bucket=bucket, Key=f"blobs/{'a' * 32}")
    client.upload_part(
        Bucket=bucket, Key=f"blobs/{'a' * 32}", UploadId=ours["UploadId"], PartNumber=1, Body=b"x"
    )
    client.create_multipart_upload(Bucket=bucket, Key="elsewhere/file")

    # when stale uploads are removed (moto reports one fixed, long-past start time for
    # every upload, so the "recent one is kept" side is not observable against it)
    removed = await store.remove_stale_temp_files(older_than=now() + timedelta(minutes=1))

    # then ours is aborted (its parts with it), and the one outside the prefix is kept
    assert removed == 1
    left = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [upload["Key"] for upload in left] == ["elsewhere/file"]


async def test_the_client_is_made_again_after_close(store: S3BlobStore) -> None:
    # given a store used, then closed (as at shutdown)
    key = await put(store, b"bytes")
    await store.close()

    # then using it again connects again
    assert await read_all(store, key) == b"bytes"


def test_s3_urls_are_parsed_and_bad_ones_refused(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path)}
    settings = load_settings({**env, "LORASHELF_BLOB_URL": "s3://my-bucket/some/prefix/"})
    assert settings.blob_url == "s3://my-bucket/some/prefix"
    assert S3Location.parse(settings.blob_url) == S3Location("my-bucket", "some/prefix/")
    assert S3Location.parse("s3://my-bucket") == S3Location("my-bucket", "")
    for bad in ("s3://My_Bucket/x", "s3://ab", "s3://bucket/a//b", "gs://bucket"):
        with pytest.raises(ConfigError, match="LORASHELF_BLOB_URL"):
            load_settings({**env, "LORASHELF_BLOB_URL": bad})
