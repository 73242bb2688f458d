"""The sealed store: every blob encrypted under a key of its own, over a raw store.

What the services use as ``runtime.blobs``: plaintext in and out, only ciphertext kept.
A writer draws a new blob key and data key, encrypts the bytes as they arrive
(:mod:`storage.crypto.chunks`: AES-256-GCM over 1 MiB chunks, one ``AESGCM`` call each)
and spools ciphertext only; at commit the data key goes into the key store, wrapped by
the master key (:mod:`storage.crypto.keystore`), then the blob into place. A read
fetches and unwraps the key, then decrypts only the chunks its range touches; a chunk
that fails authentication stops the read (:class:`~storage.crypto.chunks.TamperedBlob`,
logged with the blob's key) and is never given out as data.

Deleting a blob destroys its key first, then removes every stored version of it: a
copy of the bytes kept anywhere (a backup, an object version, a replica) is unreadable
from then on. Blobs stored before sealing (listed by the migration that brought it,
``plaintext_blobs``) are read as they are until ``lorashelf encrypt-existing`` seals them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from storage.blobs.base import RawStore, RawWriter, StoreUnavailable
from storage.crypto import keystore
from storage.crypto.chunks import (
    CHUNK,
    SEALED_CHUNK,
    ChunkCipher,
    Span,
    TamperedBlob,
    new_data_key,
    plain_size,
    span,
)
from storage.crypto.master import MasterKeys
from storage.system.clock import Clock

log = logging.getLogger("lorashelf.blobs")

# Decrypts the next chunk of a spool being checked while the check reads this one.
_READ_AHEAD = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lorashelf-decrypt")


class KeyGone(FileNotFoundError):
    """The blob has no key (destroyed): its bytes can never be read again."""


class SealedFile(io.RawIOBase):
    """A seekable reader of a sealed file's plaintext (the spool, for the archive check),
    decrypting one chunk at a time; the last one read is kept, and the next one is
    decrypted ahead in another thread while the caller works on this one."""

    def __init__(self, path: Path, cipher: ChunkCipher):
        self._fd = os.open(path, os.O_RDONLY)
        stored = os.fstat(self._fd).st_size
        self._chunks = -(-stored // SEALED_CHUNK)
        self._size = plain_size(stored)
        self._position = 0
        self._cipher = cipher
        self._cached: tuple[int, bytes] | None = None
        self._ahead: tuple[int, Future[bytes]] | None = None

    def _decrypt(self, index: int) -> bytes:
        sealed = os.pread(self._fd, SEALED_CHUNK, index * SEALED_CHUNK)
        return self._cipher.open(index, sealed, final=index == self._chunks - 1)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def _chunk(self, index: int) -> bytes:
        if self._cached is None or self._cached[0] != index:
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead[0] == index:
                plain = ahead[1].result()
            else:
                if ahead is not None:
                    ahead[1].result()  # done with the file before it is read again
                plain = self._decrypt(index)
            self._cached = (index, plain)
            if index + 1 < self._chunks:
                self._ahead = (index + 1, _READ_AHEAD.submit(self._decrypt, index + 1))
        return self._cached[1]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1), one copy out of the chunks."""
        left = self._size - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        pieces = []
        while wanted > 0:
            index, skip = divmod(self._position, CHUNK)
            plain = memoryview(self._chunk(index))
            piece = plain[skip : skip + wanted]
            pieces.append(piece)
            self._position += len(piece)
            wanted -= len(piece)
        if len(pieces) == 1:
            return bytes(pieces[0])
        return b"".join(pieces)

    def close(self) -> None:
        if self._ahead is not None:
            with contextlib.suppress(Exception):
                self._ahead[1].result()
            self._ahead = None
        if not self.closed:
            os.close(self._fd)
        super().close()


class SealedWriter:
    """Encrypts a blob as it is written; only ciphertext reaches the spool."""

    def __init__(self, store: SealedBlobStore, raw: RawWriter, object_id: str):
        self._store = store
        self._raw = raw
        self.object_id = object_id
        self._key = new_data_key()
        self._cipher = ChunkCipher(self._key, object_id)
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self._flushing: asyncio.Future[None] | None = None
        self._index = 0
        self._sealed = False
        self._sent_maybe = False
        self._store_away = False  # the commit failed for want of the store
        self.size = 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    @property
    def spool(self) -> Path:
        """The temporary file on disk (ciphertext only)."""
        return self._raw.temp_path

    def _flush(self, data: bytes | bytearray, *, final: bool) -> None:
        """Encrypt ``data`` and spool it (run in a worker thread): whole chunks, or with
        ``final`` the last chunk (at most one chunk, maybe empty)."""
        view = memoryview(data)
        if final:
            self._raw.write_sync(self._cipher.seal(self._index, view, final=True))
            self._index += 1
            return
        for start in range(0, len(view), CHUNK):
            self._raw.write_sync(
                self._cipher.seal(self._index, view[start : start + CHUNK], final=False)
            )
            self._index += 1

    async def _flushed(self) -> None:
        """Wait for the chunks being encrypted and spooled (their error, if any, is this
        call's)."""
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            await flushing

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        self._pending += chunk
        if len(self._pending) > CHUNK:
            # whole chunks go; the last one stays (it may turn out to be the final one)
            whole = (len(self._pending) - 1) // CHUNK * CHUNK
            ready = self._pending[:whole]
            del self._pending[:whole]
            # One flush at a time, in a worker thread, while the next bytes arrive: the
            # encryption (which releases the GIL) overlaps the receiving and hashing.
            await self._flushed()
            self._flushing = asyncio.ensure_future(
                asyncio.to_thread(self._flush, ready, final=False)
            )

    async def seal(self) -> None:
        if self._sealed:
            return
        await self._flushed()
        pending, self._pending = bytes(self._pending), bytearray()
        await asyncio.to_thread(self._flush, pending, final=True)
        await self._raw.seal()
        self._sealed = True

    def plaintext(self) -> BinaryIO:
        assert self._sealed, "seal first"
        return SealedFile(self._raw.temp_path, self._cipher)  # type: ignore[return-value]

    async def commit(self) -> str:
        """Seal, keep the data key (wrapped), then move the ciphertext into place."""
        await self.seal()
        await self._store.ready()
        await keystore.store(
            self._store.master, self.object_id, self._key, now=self._store.clock.now()
        )
        try:
            await self._raw.commit()
        except BaseException as exc:
            self._sent_maybe = True
            self._store_away = isinstance(exc, StoreUnavailable)
            await keystore.destroy([self.object_id])
            raise
        return self.object_id

    async def abort(self) -> None:
        with contextlib.suppress(Exception):
            await self._flushed()
        await self._raw.abort()
        if self._sent_maybe:
            # a commit that failed may have left the object in the store (an answer lost
            # after the bytes arrived): it goes now, or its removal is owed
            from storage.blobs import removals

            # (owed first; the answer does not wait on a store that did not answer)
            wait = 0.0 if self._store_away else removals.REMOVE_NOW
            await removals.remove(self._store, self.object_id, clock=self._store.clock, wait=wait)


class SealedBlobStore:
    """The blob store the services use (the :class:`~storage.blobs.base.BlobStore`
    protocol) over a raw store."""

    def __init__(self, raw: RawStore, master: MasterKeys, clock: Clock):
        self.raw = raw
        self.master = master
        self.clock = clock

    async def ready(self) -> None:
        """Load the master keys (on first use; the key file made on a first start)."""
        await keystore.ready(self.master)

    async def connect(self) -> None:
        await self.raw.connect()
        await self.ready()

    async def close(self) -> None:
        await self.raw.close()

    async def ping(self) -> bool:
        return await self.raw.ping()

    def writer(self) -> SealedWriter:
        key = secrets.token_hex(16)
        return SealedWriter(self, self.raw.writer(key), key)

    async def _data_key(self, key: str) -> bytes | None:
        """The blob's data key; None for a blob still stored in plaintext."""
        await self.ready()
        data_key = await keystore.load(self.master, key)
        if data_key is None and not await keystore.is_plaintext(key):
            raise KeyGone(f"blob {key} has no key")
        return data_key

    async def size(self, key: str) -> int | None:
        stored = await self.raw.size(key)
        if stored is None or await keystore.is_plaintext(key):
            return stored
        return plain_size(stored)

    async def exists(self, key: str) -> bool:
        return await self.raw.exists(key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Plaintext bytes ``start`` .. ``end`` (inclusive): only the chunks they touch
        are fetched and decrypted."""
        data_key = await self._data_key(key)
        if data_key is None:  # stored before sealing
            async for piece in self.raw.read(key, start, end):
                yield piece
            return
        stored = await self.raw.size(key)
        if stored is None:
            raise FileNotFoundError(f"no blob {key}")
        total = plain_size(stored)
        end = total - 1 if end is None else min(end, total - 1)
        if start > end:
            return
        where = span(start, end, stored)
        cipher = ChunkCipher(data_key, key)
        last_index = -(-stored // SEALED_CHUNK) - 1

        def opened(index: int, sealed: bytes) -> bytes:
            plain = cipher.open(index, sealed, final=index == last_index)
            if index == where.last:
                plain = plain[: end - index * CHUNK + 1]
            if index == where.first and where.skip:
                plain = plain[where.skip :]
            return plain

        # Decrypted in the event loop as it arrives (AES-GCM runs at GB/s; a handoff to a
        # thread per chunk measured slower on a busy machine than the call itself).
        index = where.first
        try:
            async for sealed in self._sealed_chunks(key, where):
                yield opened(index, sealed)
                index += 1
            if index <= where.last:
                raise TamperedBlob(key, index)  # shorter than its size said
        except TamperedBlob as exc:
            log.error(
                "blob %s: chunk %s failed authentication; the read stops (nothing of the "
                "chunk is given out)",
                key,
                exc.index,
            )
            raise

    async def _sealed_chunks(self, key: str, where: Span) -> AsyncIterator[bytes]:
        """The stored chunks a span covers, whole, in order (the last may be short)."""
        buffer = bytearray()
        async for piece in self.raw.read(
            key, where.stored_start, where.stored_end, piece=SEALED_CHUNK
        ):
            if not buffer and len(piece) == SEALED_CHUNK:
                yield piece
                continue
            buffer += piece
            while len(buffer) >= SEALED_CHUNK:
                whole = bytes(buffer[:SEALED_CHUNK])
                del buffer[:SEALED_CHUNK]
                yield whole
        if buffer:
            yield bytes(buffer)

    async def delete(self, key: str) -> None:
        """Destroy the blob's key, then remove every stored version of its bytes."""
        if await keystore.destroy([key]):
            await keystore.settle()
        await self.remove_bytes(key)

    async def remove_bytes(self, key: str) -> None:
        await self.raw.delete(key)
        await self.forget_plaintext([key])

    async def remove_stored(
        self, keys: Sequence[str], gone: Callable[[str], None]
    ) -> dict[str, Exception]:
        return await self.raw.delete_many(keys, gone)

    async def forget_plaintext(self, keys: Sequence[str]) -> None:
        await keystore.sealed(keys)  # a blob stored in plaintext is gone too

    async def abort_uploads(self, key: str) -> int:
        return await self.raw.abort_uploads(key)

    def keys_older_than(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        return self.raw.keys_older_than(cutoff)

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        return await self.raw.remove_stale_temp_files(older_than=older_than)
