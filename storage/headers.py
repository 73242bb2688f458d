"""A weights file's header: parsed without holding up the server, kept split, read back
without parsing.

Parsing (:func:`split`), at upload and when the withheld list changes: a header of at
most :data:`INLINE_HEADER_SIZE` bytes is parsed in the server process (a few
milliseconds at worst); a larger one in a child process (:mod:`storage.system.sandbox`)
under a memory ceiling of :data:`HEADER_MEMORY` and a CPU ceiling of
:data:`HEADER_CPU_SECONDS`, while the event loop only waits for the answer. At most
``Runtime.header_slots`` (one) child runs per process; others wait for their turn. An
upload's header bytes go straight to the original header's blob as they arrive
(:class:`HeaderUpload`), never into memory, so an upload that trickles its header in
holds nothing and blocks nobody; the turn covers only the child's run, and the server
holds at most one child's answer at a time (the public header and metadata: about
twice ``MAX_HEADER_SIZE`` at worst). A header that needs more memory or time than its
ceiling is refused as ``HEADER_TOO_LARGE``.

Storing (:func:`store`): the split header (:mod:`storage.formats.safetensors.parts`)
goes to three places: the public header (a blob, unless it is the original), the owner's
metadata (a blob, only when something is withheld: training data, erased with the
original header) and the public metadata (the database, :class:`ModelFileMetadata`,
apart from the file's row so that only a read of it loads it).

Reading (:func:`public_metadata`, :func:`owner_metadata`): what is stored, as stored,
one query for every file a request asks about; the API's per-request DataLoader asks
once per file however many times a document names it. What one request may read is
bounded (:class:`ReadBudget`, :data:`METADATA_BYTES_PER_REQUEST`): a document may name
many files, each with megabytes of metadata.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, cast

from tortoise.transactions import in_transaction

from storage.blobs import removals
from storage.blobs.base import BlobStore, put, read_all
from storage.db.models import ModelFile, ModelFileMetadata
from storage.errors import ServiceError
from storage.formats.safetensors import parts as header_parts
from storage.formats.safetensors.header import PREFIX_SIZE, SafetensorsError
from storage.formats.safetensors.keys import KeyMatcher
from storage.formats.safetensors.parts import HeaderParts
from storage.formats.safetensors.stream import SafetensorsStream
from storage.runtime import Runtime
from storage.system import sandbox

INLINE_HEADER_SIZE = 16 * 1024
"""Headers up to this size are parsed in the server process: the worst such header (a
few hundred empty tensors) takes a few milliseconds."""

HEADER_MEMORY = 512 * 1024 * 1024
"""The child's address-space ceiling: room for the largest accepted header of any
shape real tools write (every byte a tensor or metadata) several times over."""

HEADER_CPU_SECONDS = 30
"""The child's CPU ceiling (the largest accepted header takes a few seconds)."""

METADATA_BYTES_PER_REQUEST = 16 * 1024 * 1024
"""Most metadata one request may read (``headerMetadata`` fields, each counted)."""

_HASH_OFF_LOOP = 1024 * 1024  # hash larger public headers in a thread
_PIECE = 1024 * 1024  # a spooled header is sent to the child this much at a time
KEEPALIVE = 10  # seconds between keepalives while an upload waits for its turn


Keepalive = Callable[[], Awaitable[None]]


async def _turn(rt: Runtime, keepalive: Keepalive | None) -> None:
    """Wait for the process's turn to run a child, telling ``keepalive`` every few
    seconds meanwhile (an upload's claim stays fresh while it queues)."""
    while True:
        try:
            await asyncio.wait_for(rt.header_slots.acquire(), KEEPALIVE)
            return
        except TimeoutError:
            if keepalive is not None:
                await keepalive()


Text = bytes | bytearray | memoryview | BinaryIO


async def _pieces(
    request: bytes, text: Text, start: int, size: int
) -> AsyncIterator[bytes | memoryview]:
    yield request
    if not isinstance(text, bytes | bytearray | memoryview):
        await asyncio.to_thread(text.seek, start)
        while size > 0:
            piece = await asyncio.to_thread(text.read, min(size, _PIECE))
            if not piece:
                raise OSError("the spooled header ended early")
            size -= len(piece)
            yield piece
        return
    yield memoryview(text)


async def split(
    rt: Runtime,
    text: Text,
    *,
    data_size: int | None,
    matcher: KeyMatcher,
    keepalive: Keepalive | None = None,
    check_tensors: bool = True,
) -> HeaderParts:
    """Validate a header and split it for storage; raises :class:`SafetensorsError`.
    ``text`` is the JSON after the prefix, or a seekable reader of the prefix and the
    header (a spooled upload, decrypted as it is read: its bytes are never held in
    memory). Off the event loop unless the header is small, in the process's turn."""
    if isinstance(text, bytes | bytearray | memoryview):
        size, start = len(text), 0
    else:
        size = await asyncio.to_thread(text.seek, 0, io.SEEK_END) - PREFIX_SIZE
        start = PREFIX_SIZE
    if size <= INLINE_HEADER_SIZE:
        if isinstance(text, bytes | bytearray | memoryview):
            inline: bytes | bytearray | memoryview = text
        else:
            await asyncio.to_thread(text.seek, start)
            inline = await asyncio.to_thread(text.read, size)
        return header_parts.split(
            inline, data_size=data_size, matcher=matcher, check_tensors=check_tensors
        )
    request = header_parts.request(
        data_size=data_size, keys=matcher.keys, check_tensors=check_tensors
    )
    await _turn(rt, keepalive)
    try:
        answer = await sandbox.run(
            "safetensors.split",
            _pieces(request, text, start, size),
            memory_bytes=HEADER_MEMORY,
            cpu_seconds=HEADER_CPU_SECONDS,
        )
        return header_parts.decode(answer)
    except sandbox.Exhausted as exhausted:
        raise SafetensorsError(
            f"the header needs more {exhausted.resource} to read than lorashelf gives one",
            "HEADER_TOO_LARGE",
        ) from None
    finally:
        rt.header_slots.release()


async def public_hash(parts: HeaderParts) -> hashlib._Hash | None:
    """The hash of the public header, to be continued with the data (None when the
    public header is the original); a large one is hashed in a thread."""
    public = parts.public_header
    if public is None:
        return None
    if len(public) <= _HASH_OFF_LOOP:
        return hashlib.sha256(public)
    return await asyncio.to_thread(hashlib.sha256, public)


# --- Storing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredHeader:
    """Where a header went: the original, the public one (the same blob when nothing is
    withheld) and the owner's metadata (None when nothing is withheld)."""

    header_key: str | None
    public_header_key: str
    owner_metadata_key: str | None


async def store(rt: Runtime, parts: HeaderParts, *, header_key: str) -> StoredHeader:
    """Store the public header and the owner's metadata of a split header whose original
    is ``header_key``. Nothing is left behind if one fails."""
    stored: list[str] = []

    async def keep(data: bytes | memoryview) -> str:
        key = await put(rt.blobs, cast(bytes, data))  # any buffer writes; never copied
        stored.append(key)
        return key

    try:
        public_key = header_key
        if parts.public_header is not None:
            public_key = await keep(parts.public_header)
        owner_key = None
        if parts.owner_metadata is not None:
            owner_key = await keep(parts.owner_metadata)
    except BaseException:
        for key in stored:
            await rt.blobs.delete(key)
        raise
    return StoredHeader(header_key, public_key, owner_key)


def columns(parts: HeaderParts, stored: StoredHeader, *, fingerprint: str) -> dict[str, object]:
    """The file's columns that describe its stored header (hashes and sizes apart)."""
    owner = parts.owner_metadata if stored.owner_metadata_key is not None else None
    return {
        "public_header_key": stored.public_header_key,
        "owner_metadata_key": stored.owner_metadata_key,
        "owner_metadata_size": None if owner is None else len(owner),
        "withheld_keys": list(parts.withheld),
        "withheld_list": fingerprint,
    }


async def save_metadata(file_id: int, parts: HeaderParts) -> None:
    """Record (or replace) a file's public metadata: inside the caller's transaction."""
    entries = parts.public_metadata
    size = len(entries) if entries.isascii() else len(entries.encode("utf-8"))
    updated = await ModelFileMetadata.filter(file_id=file_id).update(entries=entries, size=size)
    if not updated:
        await ModelFileMetadata.create(file_id=file_id, entries=entries, size=size)


# --- At upload --------------------------------------------------------------------------


class HeaderUpload:
    """A weights file's header while its upload arrives: its bytes go straight to the
    original header's blob (never held in memory); once complete it is parsed (in a
    child beyond :data:`INLINE_HEADER_SIZE`, in the process's turn), split and stored,
    all before a data byte is taken. :meth:`abort` leaves nothing behind."""

    def __init__(
        self, rt: Runtime, file_id: int, *, matcher: KeyMatcher, keepalive: Keepalive
    ) -> None:
        self.matcher = matcher
        self._rt = rt
        self._file_id = file_id
        self._keepalive = keepalive
        self._writer = rt.blobs.writer()
        self._committed = False
        self.stored: StoredHeader | None = None

    async def feed(self, stream: SafetensorsStream, chunk: bytes) -> None:
        """Feed one chunk to ``stream``, its header bytes to the blob."""
        view = memoryview(chunk)
        if stream.header is None:
            if stream.header_size is None:  # the prefix first: it says where the header ends
                head = view[: max(0, PREFIX_SIZE - stream.received)]
                await self._writer.write(cast(bytes, head))
                stream.feed(head)
                view = view[len(head) :]
            if stream.header_size is not None:
                end = PREFIX_SIZE + stream.header_size
                await self._writer.write(cast(bytes, view[: max(0, end - stream.received)]))
        stream.feed(view)
        if stream.awaiting_header:
            await self._complete(stream)

    async def _complete(self, stream: SafetensorsStream) -> None:
        await self._writer.seal()
        with self._writer.plaintext() as spooled:  # decrypted a chunk at a time
            parts = await split(
                self._rt,
                spooled,
                data_size=None,  # the tensors' own extent: the stream compares it with the body
                matcher=stream.matcher,
                keepalive=self._keepalive,
            )
        stream.accept(parts, public_sha256=await public_hash(parts))
        header_key = await self._writer.commit()
        self._committed = True
        self.stored = StoredHeader(header_key, header_key, None)
        self.stored = await store(self._rt, parts, header_key=header_key)
        async with in_transaction():
            await save_metadata(self._file_id, parts)
        stream.forget_header()  # the public header and metadata: stored, not held

    async def abort(self) -> None:
        if not self._committed:
            await self._writer.abort()
        if self.stored is not None:
            stored = self.stored
            keys = {stored.header_key, stored.public_header_key, stored.owner_metadata_key}
            for key in keys - {None}:
                await removals.remove(self._rt.blobs, str(key), clock=self._rt.clock)


# --- Reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    """A file's metadata as stored, parsed once per request."""

    entries: dict[str, str]
    size: int  # the stored text's bytes: what reading it costs

    @classmethod
    def of(cls, text: str | bytes, size: int) -> Metadata:
        entries: dict[str, str] = json.loads(text)
        return cls(entries, size)


EMPTY = Metadata({}, 0)


class ReadBudget:
    """What one request may still read of header metadata (see the module docstring)."""

    def __init__(self, limit: int = METADATA_BYTES_PER_REQUEST) -> None:
        self.limit = self.left = limit

    def affords(self, size: int) -> bool:
        return size <= self.left

    def charge(self, size: int) -> None:
        if size > self.left:
            raise self.exceeded()
        self.left -= size

    def exceeded(self) -> ServiceError:
        return ServiceError(
            f"This request reads more header metadata than one request may "
            f"({self.limit // (1024 * 1024)} MiB): ask for fewer files' headerMetadata.",
            code="TOO_COSTLY",
        )


async def public_metadata(ids: Iterable[int], budget: ReadBudget) -> dict[int, Metadata | None]:
    """The public metadata of these files (empty for a file with none); None for those
    the budget cannot afford. Two queries: the sizes, then the texts within budget."""
    wanted = list(ids)
    sizes = dict(await ModelFileMetadata.filter(file_id__in=wanted).values_list("file_id", "size"))
    affordable, total = [], 0
    for file_id in wanted:
        size = sizes.get(file_id, 0)
        if size and budget.affords(total + size):
            affordable.append(file_id)
            total += size
    found: dict[int, Metadata | None] = {k: (None if sizes.get(k) else EMPTY) for k in wanted}
    if affordable:
        rows = ModelFileMetadata.filter(file_id__in=affordable).values_list("file_id", "entries")
        for file_id, text in await rows:
            found[file_id] = Metadata.of(text, sizes[file_id])
    return found


async def owner_metadata(blobs: BlobStore, file: ModelFile, budget: ReadBudget) -> Metadata | None:
    """All of a file's metadata, withheld keys included (the owner's view); None when it
    is gone (erased meanwhile). Raises ``TOO_COSTLY`` beyond the budget."""
    key, size = file.owner_metadata_key, file.owner_metadata_size
    if key is None or size is None:
        return None
    if not budget.affords(size):
        raise budget.exceeded()
    try:
        return Metadata.of(await read_all(blobs, key), size)
    except FileNotFoundError:
        return None
