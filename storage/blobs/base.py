"""Blob stores: what every store promises (the protocols) and what works on any store.

Two layers. A *raw* store (:class:`RawStore`: a directory, :mod:`storage.blobs.local`,
or an S3 bucket, :mod:`storage.blobs.s3`) keeps opaque bytes under keys; the *sealed*
store over it (:class:`BlobStore`, :mod:`storage.blobs.sealed`) is what the services
use: it takes and gives plaintext and keeps only ciphertext, each blob under its own
data key. Keys are generated, never derived from user input (:data:`BLOB_KEY` is their
form). Writes go to a temporary file and are moved into place (renamed, or uploaded)
only when committed; deletes are idempotent and remove every stored version.
``LORASHELF_BLOB_URL`` picks the raw store (:mod:`storage.blobs.store`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 256 * 1024  # bytes read at a time
BLOB_KEY = re.compile(r"^[0-9a-f]{32}$")  # the form of every blob key

log = logging.getLogger("lorashelf.blobs")


class StoreUnavailable(Exception):
    """The store does not answer now (unreachable, timing out, or answering 5xx): a
    wait can cure it, unlike a ``ConfigError``."""


async def skipped_while_away(what: str, step: Callable[[], Awaitable[int]]) -> int:
    """A step of periodic work that needs the store: skipped (0) while the store is
    away, logged, never ending the work around it (the next run does it)."""
    try:
        return await step()
    except StoreUnavailable as exc:
        log.warning("%s left for the next sweep (%s)", what, exc)
        return 0


class RawWriter(Protocol):
    """Bytes on their way into a raw store, in a temporary file until committed."""

    size: int

    def write_sync(self, data: bytes) -> None:
        """Append (called from a worker thread)."""
        ...

    @property
    def temp_path(self) -> Path: ...

    async def seal(self) -> None:
        """Flush and close: the temporary file is complete."""
        ...

    async def commit(self) -> None:
        """Move the sealed bytes into place under the writer's key."""
        ...

    async def abort(self) -> None: ...


class RawStore(Protocol):
    """Opaque bytes under keys: a directory or a bucket."""

    async def connect(self) -> None:
        """Make sure the store is usable (at start-up); raises ``ConfigError`` if it
        cannot be (no credentials, no bucket), :class:`StoreUnavailable` if it does not
        answer now."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown); the store connects again if used."""
        ...

    async def ping(self) -> bool:
        """A cheap check that the store answers now (for ``/readyz``); never raises."""
        ...

    def writer(self, key: str) -> RawWriter: ...

    async def size(self, key: str) -> int | None: ...

    def read(
        self, key: str, start: int = 0, end: int | None = None, *, piece: int = CHUNK
    ) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (inclusive), in pieces of about ``piece`` bytes."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob, every stored version of it included."""
        ...

    async def delete_many(
        self, keys: Sequence[str], gone: Callable[[str], None]
    ) -> dict[str, Exception]:
        """:meth:`delete` for many blobs at once (one thread hop for files, a bounded
        number of requests at a time for a bucket): ``gone(key)`` as each one went,
        the failures by key (never raised: the caller retries those)."""
        ...

    async def abort_uploads(self, key: str) -> int:
        """Abort what a failed commit of ``key`` left in progress (an S3 multipart
        upload whose abort the store did not take); how many."""
        ...

    async def exists(self, key: str) -> bool: ...

    def keys_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        """Keys of blobs last written before ``cutoff``, in batches."""
        ...

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int: ...


class BlobWriter(Protocol):
    """A blob being written, in plaintext as the services see it."""

    size: int  # plaintext bytes written

    async def write(self, chunk: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    async def seal(self) -> None:
        """Flush and close: the blob is complete and may be inspected (:meth:`plaintext`)."""
        ...

    def plaintext(self) -> BinaryIO:
        """A seekable reader of the sealed blob's plaintext (for the archive check; run it
        in a worker thread)."""
        ...

    async def commit(self) -> str:
        """Move the sealed bytes into place and return their new key."""
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    """What the services use: plaintext in and out, only ciphertext kept."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    def writer(self) -> BlobWriter: ...

    async def size(self, key: str) -> int | None: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None:
        """Destroy the blob's key, then remove every stored version of it."""
        ...

    async def remove_bytes(self, key: str) -> None:
        """Remove every stored version of a blob whose key was destroyed already."""
        ...

    async def remove_stored(
        self, keys: Sequence[str], gone: Callable[[str], None]
    ) -> dict[str, Exception]:
        """:meth:`remove_bytes` for many blobs whose keys were destroyed
        (:meth:`RawStore.delete_many`): the bytes only; the caller then calls
        :meth:`forget_plaintext` once for those that went."""
        ...

    async def forget_plaintext(self, keys: Sequence[str]) -> None:
        """Forget that these blobs (removed) were stored in plaintext, in one statement."""
        ...

    async def abort_uploads(self, key: str) -> int: ...

    async def exists(self, key: str) -> bool: ...

    def keys_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]: ...

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
