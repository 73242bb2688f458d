"""What only the S3 store does (storage/s3.py), against moto's S3 server: multipart
uploads, ranged GETs, deletes that leave no version, versioned buckets refused, stale
multipart uploads aborted, and the bucket checked before `lorashelf serve` starts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.blobs.base import put, read_all
from storage.blobs.s3 import PART, S3BlobStore, S3Location
from storage.config.parse import ConfigError
from storage.config.settings import load_settings
from tests.processes import S3Server, free_port, lorashelf


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


async def test_an_object_over_one_part_is_sent_as_a_multipart_upload(
    store: S3BlobStore, s3: S3Server, bucket: str
) -> None:
    # given more than one part's worth of bytes, streamed through a writer
    data = hashlib.sha256(b"seed").digest() * ((PART + 100_000) // 32)
    assert len(data) > PART
    writer = store.writer()
    for start in range(0, len(data), 1 << 20):
        await writer.write(data[start : start + (1 << 20)])

    # when it is committed
    key = await writer.commit()

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
    writer = store.writer()
    await writer.write(b"x" * (PART + 1))
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
async def test_a_bucket_that_keeps_versions_is_refused(
    tmp_path: Path, s3: S3Server, status: str
) -> None:
    # given a bucket whose versioning is on (or suspended: old versions may still be kept)
    versioned = s3.new_bucket(versioning=status)
    store = s3_store(tmp_path, versioned)

    # then the store refuses to start, saying why
    with pytest.raises(ConfigError) as refused:
        await store.connect()
    message = str(refused.value)
    assert f"LORASHELF_BLOB_URL=s3://{versioned}/blobs" in message
    assert status in message and "noncurrent version" in message
    # and nothing was written to it on the way
    assert s3.everything_in(versioned) == []


async def test_a_missing_bucket_is_refused(tmp_path: Path, s3: S3Server) -> None:
    store = s3_store(tmp_path, "lorashelf-no-such-bucket")
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        await store.connect()


async def test_an_endpoint_that_does_not_answer_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an endpoint where nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = s3_store(tmp_path, "lorashelf-anything")

    # then connecting is a configuration error naming where it looked
    with pytest.raises(ConfigError, match="does not answer at http://127.0.0.1:"):
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


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_a_versioned_bucket(
    tmp_path: Path, s3: S3Server, command: str
) -> None:
    # given a deployment pointed at a versioned bucket
    versioned = s3.new_bucket(versioning="Enabled")
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_BLOB_URL": f"s3://{versioned}/blobs",
        "LORASHELF_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never reached
    }

    # when the process starts
    args = ["serve", "--port", str(free_port())] if command == "serve" else ["worker"]
    done = lorashelf(*args, env=env, cwd=tmp_path)

    # then it stops at once with a configuration error naming the reason, as its last line
    # (serve says nothing else; the worker has logged its start-up before)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("lorashelf: configuration error: LORASHELF_BLOB_URL=")
    assert "versioning is Enabled" in lines[-1] and "noncurrent version" in lines[-1]
    if command == "serve":
        assert len(lines) == 1
