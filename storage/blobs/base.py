"""Blob store: where dataset bytes live.

Keys are generated here, never derived from user input. Writes go to a temporary
file and are moved into place (renamed, or uploaded: :mod:`storage.s3`) only when
committed; deletes are idempotent. ``LORASHELF_BLOB_URL`` picks the store by its scheme.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from storage.process import file_holder_gone, file_tag

if TYPE_CHECKING:
    from storage.config import Settings

CHUNK = 256 * 1024
_KEY = re.compile(r"^[0-9a-f]{32}$")


class BlobWriter(Protocol):
    size: int

    async def write(self, chunk: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    @property
    def temp_path(self) -> Path: ...

    async def seal(self) -> None:
        """Flush and close: the temporary file is complete and may be inspected."""
        ...

    async def commit(self) -> str:
        """Move the sealed bytes into place and return their new key."""
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    async def connect(self) -> None:
        """Make sure the store is usable (at start-up); raises ``ConfigError`` if not."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown); the store connects again if used."""
        ...

    async def ping(self) -> bool:
        """A cheap check that the store answers now (for ``/readyz``); never raises."""
        ...

    def writer(self) -> BlobWriter: ...

    async def size(self, key: str) -> int | None: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    def keys_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        """Keys of blobs last written before ``cutoff``, in batches."""
        ...

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int: ...


async def put(store: BlobStore, data: bytes) -> str:
    """Store a small blob in one go; returns its key."""
    writer = store.writer()
    try:
        await writer.write(data)
        return await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def read_all(store: BlobStore, key: str) -> bytes:
    """A small blob's bytes (a header): never call it for data."""
    return b"".join([chunk async for chunk in store.read(key)])


async def read_parts(
    store: BlobStore, parts: list[tuple[str, int]], start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes ``start`` .. ``end`` (inclusive) of blobs laid end to end: ``parts`` is a
    list of (key, size). A file served as a header followed by its data is read so."""
    offset = 0
    for key, size in parts:
        first, last = max(start, offset), min(end, offset + size - 1)
        if first <= last:
            async for chunk in store.read(key, first - offset, last - offset):
                yield chunk
        offset += size


class SpoolWriter:
    """Writes a blob to a temporary file in ``tmp_dir``, hashing on the way; a
    subclass's ``commit`` moves the sealed file into its store."""

    def __init__(self, tmp_dir: Path):
        # Named after the writing process: a partial file whose writer died is removed
        # at once (at the next start-up sweep), not an hour later.
        self._tmp = tmp_dir / f"{file_tag()}~{secrets.token_hex(16)}.part"
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def temp_path(self) -> Path:
        return self._tmp

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        await asyncio.to_thread(self._file.write, chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    async def seal(self) -> None:
        def _seal() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

        if not self._file.closed:
            await asyncio.to_thread(_seal)

    async def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def remove_stale_spool(tmp_dir: Path, older_than: datetime) -> int:
    """Remove temporary files in ``tmp_dir`` last written before ``older_than``, or
    whose writing process (on this host) is dead; how many were removed."""
    limit = older_than.timestamp()
    removed = 0
    for path in tmp_dir.iterdir():
        try:
            stale = path.stat().st_mtime < limit or file_holder_gone(path.name)
        except FileNotFoundError:
            continue
        if stale:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class LocalBlobWriter(SpoolWriter):
    def __init__(self, store: LocalBlobStore):
        super().__init__(store.tmp_dir)
        self._store = store

    async def commit(self) -> str:
        await self.seal()
        key = secrets.token_hex(16)
        target = self._store.path_for(key)

        def _move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, target)

        await asyncio.to_thread(_move)
        return key


class LocalBlobStore:
    """Blobs under one directory: ``<root>/ab/abcdef…`` plus ``<root>/.tmp``."""

    def __init__(self, root: Path):
        self.root = root
        self.tmp_dir = root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return await asyncio.to_thread(os.access, self.tmp_dir, os.W_OK | os.X_OK)

    def path_for(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("malformed blob key")
        return self.root / key[:2] / key

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    async def size(self, key: str) -> int | None:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        return self.path_for(key).exists()

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` .. ``end`` (inclusive) of a blob."""
        handle = await asyncio.to_thread(open, self.path_for(key), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, True)

    async def keys_older_than(self, cutoff: datetime, batch: int = 500) -> AsyncIterator[list[str]]:
        limit = cutoff.timestamp()

        def _scan() -> list[str]:
            found = []
            for shard in self.root.iterdir():
                if shard.name == ".tmp" or not shard.is_dir():
                    continue
                for path in shard.iterdir():
                    if _KEY.match(path.name) and path.stat().st_mtime < limit:
                        found.append(path.name)
            return found

        keys = await asyncio.to_thread(_scan)
        for start in range(0, len(keys), batch):
            yield keys[start : start + batch]

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Remove temporary files last written before ``older_than``, or whose writing
        process (on this host) is dead."""
        return await asyncio.to_thread(remove_stale_spool, self.tmp_dir, older_than)


def open_blob_store(settings: Settings) -> BlobStore:
    """The store ``LORASHELF_BLOB_URL`` names: a directory (``file://``) or an
    S3-compatible bucket (``s3://``, spooling uploads under the data dir)."""
    if settings.blob_url.startswith("s3://"):
        from storage.s3 import S3BlobStore

        return S3BlobStore.from_url(settings.blob_url, spool_dir=settings.data_dir / "spool")
    return LocalBlobStore(settings.blob_dir)
