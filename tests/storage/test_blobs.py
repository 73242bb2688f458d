"""The blob-store contract (storage/blobs/base.py) as the services see it: the sealed store
(storage/blobs/sealed.py) over both raw stores, the local directory (``file://``) and the
S3-compatible bucket (``s3://``, against moto's server). Plaintext in and out; only
ciphertext at rest, spool included; a chunk changed, moved, cut or added stops a read."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.blobs.base import RawStore, put, read_all, read_parts
from storage.blobs.s3 import S3BlobStore
from storage.blobs.sealed import KeyGone, SealedBlobStore
from storage.blobs.store import open_blob_store
from storage.config.settings import Settings, load_settings
from storage.crypto import keystore
from storage.crypto.chunks import CHUNK, SEALED_CHUNK, TAG, TamperedBlob
from storage.crypto.master import MasterKeys
from storage.db import connection as db
from storage.system.clock import SteadyClock
from tests import postgres
from tests.processes import S3Server

CHUNKS = 2 * CHUNK + 1000  # two whole chunks and a short last one


@pytest.fixture(params=["file", "s3"])
def blob_settings(
    request: pytest.FixtureRequest, tmp_path: Path, test_database: postgres.LazyDatabase | None
) -> Settings:
    """A deployment of each kind of store (the test's own database)."""
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    if test_database is not None:
        env["LORASHELF_DATABASE_URL"] = test_database.url()
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        env["LORASHELF_BLOB_URL"] = f"s3://{s3.new_bucket()}/blobs"
    return load_settings(env)


@pytest.fixture
async def raw(blob_settings: Settings) -> AsyncIterator[RawStore]:
    blobs = open_blob_store(blob_settings)
    await blobs.connect()
    yield blobs
    await blobs.close()


@pytest.fixture
async def store(blob_settings: Settings, raw: RawStore) -> AsyncIterator[SealedBlobStore]:
    """The store a deployment's services use: sealed, over the raw one."""
    await db.migrate(blob_settings.database_url)
    await db.connect(blob_settings.database_url)
    sealed = SealedBlobStore(raw, MasterKeys(blob_settings), SteadyClock())
    await sealed.connect()
    yield sealed
    await db.disconnect()


def now() -> datetime:
    return datetime.now(UTC)


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def stored(raw: RawStore, key: str) -> bytes:
    """The bytes as the raw store keeps them."""
    return await collect(raw.read(key))


async def overwrite(raw: RawStore, key: str, data: bytes) -> None:
    """Replace what the raw store keeps under ``key`` (as somebody with access to it)."""
    await raw.delete(key)
    writer = raw.writer(key)
    writer.write_sync(data)
    await writer.commit()


async def all_keys(store: SealedBlobStore) -> set[str]:
    return {
        key async for batch in store.keys_older_than(now() + timedelta(hours=1)) for key in batch
    }


def noise(size: int) -> bytes:
    return os.urandom(size)


async def test_a_blob_streamed_through_a_writer_reads_back_whole(
    store: SealedBlobStore, raw: RawStore
) -> None:
    # given a writer fed in uneven pieces, more than two chunks' worth
    data = noise(CHUNKS)
    writer = store.writer()
    for start in range(0, len(data), 100_000):
        await writer.write(data[start : start + 100_000])

    # when it is sealed, the checks can read its plaintext back, seeking as they like
    await writer.seal()
    with writer.plaintext() as handle:
        assert handle.read() == data
        handle.seek(CHUNK - 5)
        assert handle.read(10) == data[CHUNK - 5 : CHUNK + 5]
    assert writer.size == len(data)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()

    # and when it is committed, the blob is there under a new key
    key = await writer.commit()
    assert await store.exists(key)
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data
    # stored as three chunks, each with its tag, none of it the plaintext
    kept = await stored(raw, key)
    assert len(kept) == len(data) + 3 * TAG
    assert data[:64] not in kept and data[CHUNK : CHUNK + 64] not in kept


async def test_the_spool_holds_ciphertext_only(store: SealedBlobStore) -> None:
    # given an upload half-way (a chunk and a bit written, the rest still to come)
    data = noise(CHUNK + 5000)
    writer = store.writer()
    await writer.write(data)
    spool = writer.spool  # the file on disk is what is checked
    # then what reaches the disk (a chunk is encrypted and written while the next bytes
    # arrive) is a sealed chunk, never a plaintext byte run
    for _ in range(200):
        if spool.stat().st_size:
            break
        await asyncio.sleep(0.01)
    on_disk = spool.read_bytes()
    assert len(on_disk) == SEALED_CHUNK
    assert data[:32] not in on_disk and data[CHUNK - 32 : CHUNK] not in on_disk
    # and sealed, the last chunk joins it, sealed too
    await writer.seal()
    on_disk = spool.read_bytes()
    assert len(on_disk) == len(data) + 2 * TAG and data[-32:] not in on_disk
    await writer.abort()


async def test_a_blob_of_exactly_whole_chunks_and_an_empty_one(store: SealedBlobStore) -> None:
    for data in (noise(2 * CHUNK), b""):
        key = await put(store, data)
        assert await store.size(key) == len(data)
        assert await read_all(store, key) == data


async def test_keys_are_new_each_time_never_chosen_by_the_caller(store: SealedBlobStore) -> None:
    # when the same bytes are stored twice
    first, second = await put(store, b"same"), await put(store, b"same")

    # then they get two different 32-hex-digit keys (and different ciphertexts)
    assert first != second
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in (first, second))
    assert await stored(store.raw, first) != await stored(store.raw, second)


async def test_ranged_reads_are_byte_exact_at_chunk_edges(store: SealedBlobStore) -> None:
    # given a blob of two chunks and a bit
    data = noise(CHUNKS)
    key = await put(store, data)
    edges = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, CHUNKS - 1]

    # then every range between chunk edges gives exactly those bytes
    for start in edges:
        for end in edges:
            if start <= end:
                assert await collect(store.read(key, start, end)) == data[start : end + 1]
    # an open range reads to the end, and one starting past the end reads nothing
    assert await collect(store.read(key, CHUNK + 7)) == data[CHUNK + 7 :]
    assert await collect(store.read(key, CHUNKS)) == b""
    # and blobs laid end to end (a header then its data) read as one
    tail = await put(store, b"KLMNOP")
    parts = [(key, len(data)), (tail, 6)]
    assert await collect(read_parts(store, parts, CHUNKS - 2, CHUNKS + 2)) == data[-2:] + b"KLM"


async def test_a_range_decrypts_only_the_chunks_it_touches(
    store: SealedBlobStore, raw: RawStore
) -> None:
    # given a blob whose first chunk was damaged in the store
    data = noise(CHUNKS)
    key = await put(store, data)
    kept = bytearray(await stored(raw, key))
    kept[10] ^= 1
    await overwrite(raw, key, bytes(kept))
    # then a range in the last chunk still reads (it never touches the first)
    assert (
        await collect(store.read(key, 2 * CHUNK + 5, 2 * CHUNK + 9))
        == data[2 * CHUNK + 5 : 2 * CHUNK + 10]
    )


async def _tampered(store: SealedBlobStore, raw: RawStore, change: str) -> None:
    data = noise(CHUNKS)
    key = await put(store, data)
    kept = await stored(raw, key)
    first, second, last = (
        kept[:SEALED_CHUNK],
        kept[SEALED_CHUNK : 2 * SEALED_CHUNK],
        kept[2 * SEALED_CHUNK :],
    )
    other = await stored(raw, await put(store, data))  # the same bytes, another blob
    changed = {
        "a bit flipped": first[:100] + bytes([first[100] ^ 1]) + first[101:] + second + last,
        "two chunks swapped": second + first + last,
        "cut at a chunk edge": first + second,
        "cut mid-chunk": kept[:-100],
        "a chunk added": kept + last,
        "a chunk from another blob": other[:SEALED_CHUNK] + second + last,
    }[change]
    await overwrite(raw, key, changed)
    # when it is read, what comes out before the bad chunk is only what authenticated
    received = b""
    with pytest.raises(TamperedBlob) as stopped:
        async for piece in store.read(key):
            received += piece
    assert stopped.value.object_id == key
    assert data.startswith(received)


@pytest.mark.parametrize(
    "change",
    [
        "a bit flipped",
        "two chunks swapped",
        "cut at a chunk edge",
        "cut mid-chunk",
        "a chunk added",
        "a chunk from another blob",
    ],
)
async def test_a_tampered_blob_stops_the_read(
    store: SealedBlobStore, raw: RawStore, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _tampered(store, raw, change)
    # and the log names the blob
    assert any("failed authentication" in r.getMessage() for r in caplog.records)


async def test_delete_destroys_the_key_and_every_byte(
    store: SealedBlobStore, raw: RawStore
) -> None:
    # given a blob, and a copy of its stored bytes taken before (a backup)
    key = await put(store, b"private bytes" * 1000)
    backup = await stored(raw, key)

    # when it is deleted, twice
    await store.delete(key)
    await store.delete(key)

    # then nothing of it is left, and its key is gone: the backup can never be read
    assert not await store.exists(key)
    assert await store.size(key) is None
    assert key not in await all_keys(store)
    assert await keystore.load(store.master, key) is None
    with pytest.raises(FileNotFoundError):
        await read_all(store, key)
    await overwrite(raw, key, backup)  # the backup restored into the store
    with pytest.raises(KeyGone):
        await read_all(store, key)


async def test_an_aborted_writer_leaves_nothing(store: SealedBlobStore) -> None:
    # given a writer that received bytes
    writer = store.writer()
    await writer.write(b"half an upload")
    spool = writer.spool

    # when it is aborted
    await writer.abort()

    # then neither its temporary file nor a blob nor a key is left
    assert not spool.exists()
    assert await all_keys(store) == set()
    assert await keystore.load(store.master, writer.object_id) is None


async def test_keys_older_than_lists_blobs_written_before_the_cutoff(
    store: SealedBlobStore,
) -> None:
    keys = {await put(store, b"one"), await put(store, b"two")}
    assert await all_keys(store) == keys
    past = [batch async for batch in store.keys_older_than(now() - timedelta(hours=1))]
    assert past == []


async def test_stale_temp_files_are_removed_and_live_ones_kept(store: SealedBlobStore) -> None:
    writer = store.writer()
    await writer.write(b"arriving")
    spool = writer.spool
    assert await store.remove_stale_temp_files(older_than=now() - timedelta(hours=1)) == 0
    assert spool.exists()
    assert await store.remove_stale_temp_files(older_than=now() + timedelta(hours=1)) == 1
    assert not spool.exists()
    await writer.abort()


async def test_a_malformed_key_is_refused(store: SealedBlobStore, raw: RawStore) -> None:
    with pytest.raises(ValueError):
        await raw.delete("../../etc/passwd")
    with pytest.raises(ValueError):
        raw.writer("../x")
    with pytest.raises(ValueError):
        await collect(raw.read("x" * 32))


async def test_a_versioned_bucket_keeps_no_version_of_a_deleted_blob(
    tmp_path: Path, s3: S3Server, test_database: postgres.LazyDatabase | None
) -> None:
    # given a bucket that keeps versions, whose blob was overwritten once (two versions)
    bucket = s3.new_bucket(versioning="Enabled")
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_BLOB_URL": f"s3://{bucket}/b"}
    if test_database is not None:
        env["LORASHELF_DATABASE_URL"] = test_database.url()
    settings = load_settings(env)
    raw = open_blob_store(settings)
    assert isinstance(raw, S3BlobStore)
    await db.migrate(settings.database_url)
    await db.connect(settings.database_url)
    try:
        store = SealedBlobStore(raw, MasterKeys(settings), SteadyClock())
        await store.connect()
        key = await put(store, b"first")
        # (written again, deleted without versions, written again: as a crash mid-way or
        # a replication tool might leave it)
        client, name = s3.client(), raw.name_of(key)
        sealed = await stored(raw, key)
        client.put_object(Bucket=bucket, Key=name, Body=sealed)
        client.delete_object(Bucket=bucket, Key=name)
        client.put_object(Bucket=bucket, Key=name, Body=sealed)
        assert len(s3.everything_in(bucket)) == 4  # three versions and a delete marker
        # when it is deleted
        await store.delete(key)
        # then not one version or delete marker of it is left
        assert s3.everything_in(bucket) == []
        await raw.close()
    finally:
        await db.disconnect()
