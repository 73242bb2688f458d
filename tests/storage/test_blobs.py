"""The blob-store contract (storage/blobs/base.py), held by both stores: the local directory
(``file://``) and the S3-compatible bucket (``s3://``, against moto's server)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.blobs.base import BlobStore, put, read_all, read_parts
from storage.blobs.store import open_blob_store
from storage.config.settings import load_settings
from tests.processes import S3Server


@pytest.fixture(params=["file", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """The store a deployment gets from LORASHELF_BLOB_URL, of each kind."""
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        env["LORASHELF_BLOB_URL"] = f"s3://{s3.new_bucket()}/blobs"
    blobs = open_blob_store(load_settings(env))
    await blobs.connect()
    yield blobs
    await blobs.close()


def now() -> datetime:
    return datetime.now(UTC)


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def all_keys(store: BlobStore) -> set[str]:
    return {
        key async for batch in store.keys_older_than(now() + timedelta(hours=1)) for key in batch
    }


async def test_a_blob_streamed_through_a_writer_reads_back_whole(store: BlobStore) -> None:
    # given a writer fed in chunks
    data = bytes(range(256)) * 4000
    writer = store.writer()
    for start in range(0, len(data), 100_000):
        await writer.write(data[start : start + 100_000])

    # when it is sealed, its temporary file holds the bytes for the checks to inspect
    await writer.seal()
    assert writer.temp_path.read_bytes() == data
    assert writer.size == len(data)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()

    # and when it is committed, the blob is there under a new key and the temp file is gone
    key = await writer.commit()
    assert not writer.temp_path.exists()
    assert await store.exists(key)
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data


async def test_keys_are_new_each_time_never_chosen_by_the_caller(store: BlobStore) -> None:
    # when the same bytes are stored twice
    first, second = await put(store, b"same"), await put(store, b"same")

    # then they get two different 32-hex-digit keys
    assert first != second
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in (first, second))


async def test_ranged_reads_give_exactly_the_bytes_asked_for(store: BlobStore) -> None:
    # given a blob
    data = b"0123456789abcdefghij"
    key = await put(store, data)

    # then a range start..end (inclusive) gives those bytes
    assert await collect(store.read(key, 3, 10)) == data[3:11]
    assert await collect(store.read(key, 0, 0)) == data[:1]
    assert await collect(store.read(key, 19, 19)) == data[19:]
    # an open range reads to the end, and one starting past the end reads nothing
    assert await collect(store.read(key, 15)) == data[15:]
    assert await collect(store.read(key, 20)) == b""
    # and blobs laid end to end (a header then its data) read as one
    tail = await put(store, b"KLMNOP")
    parts = [(key, len(data)), (tail, 6)]
    assert await collect(read_parts(store, parts, 18, 22)) == b"ijKLM"


async def test_delete_is_idempotent_and_the_blob_is_gone(store: BlobStore) -> None:
    # given a blob
    key = await put(store, b"private bytes")

    # when it is deleted, twice
    await store.delete(key)
    await store.delete(key)

    # then nothing of it is left
    assert not await store.exists(key)
    assert await store.size(key) is None
    assert key not in await all_keys(store)
    with pytest.raises(FileNotFoundError):
        await read_all(store, key)


async def test_an_aborted_writer_leaves_nothing(store: BlobStore) -> None:
    # given a writer that received bytes
    writer = store.writer()
    await writer.write(b"half an upload")

    # when it is aborted
    await writer.abort()

    # then neither its temporary file nor a blob is left
    assert not writer.temp_path.exists()
    assert await all_keys(store) == set()


async def test_keys_older_than_lists_blobs_written_before_the_cutoff(store: BlobStore) -> None:
    # given two blobs written now
    keys = {await put(store, b"one"), await put(store, b"two")}

    # then a cutoff in the future lists both, one in the past neither
    assert await all_keys(store) == keys
    past = [batch async for batch in store.keys_older_than(now() - timedelta(hours=1))]
    assert past == []


async def test_stale_temp_files_are_removed_and_live_ones_kept(store: BlobStore) -> None:
    # given an upload in progress in this (live) process
    writer = store.writer()
    await writer.write(b"arriving")

    # then a recent upload is kept
    assert await store.remove_stale_temp_files(older_than=now() - timedelta(hours=1)) == 0
    assert writer.temp_path.exists()

    # and one older than the cutoff is removed
    assert await store.remove_stale_temp_files(older_than=now() + timedelta(hours=1)) == 1
    assert not writer.temp_path.exists()
    await writer.abort()


async def test_a_malformed_key_is_refused(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        await store.delete("../../etc/passwd")
    with pytest.raises(ValueError):
        await read_all(store, "x" * 32)
