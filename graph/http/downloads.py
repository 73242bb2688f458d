"""``GET /downloads/<token>``: a dataset, a weights file or a data export through a
signed link, with ``Range``. The link's access is checked when it is used
(``storage.downloads.allowed``) and again while the bytes stream
(graph/http/streaming.py): any end of access stops the stream within a second, a
private dataset's (or an export's) at the instant its window ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from graph.http.errors import busy_response, error_response
from graph.http.metrics import kind_label
from graph.http.streaming import Watch, WatchedBody
from graph.schema.context import Services, services_of
from jobs.adapters.bus import DATASET
from storage import datasets, downloads, signing
from storage.blobs.base import read_parts
from storage.crypto.chunks import TamperedBlob
from storage.downloads import Allowed
from storage.errors import retryable
from storage.privacy import lookups
from storage.signing import BadToken, DownloadGrant

log = logging.getLogger("lorashelf.routes")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """A single ``bytes=`` range as (start, end inclusive); None: whole file; "bad": 416."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d{0,19})-(\d{0,19})\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        return None  # unsupported forms (e.g. several ranges) get the whole file
    first, last = match.group(1), match.group(2)
    if not first:
        length = int(last)
        if length == 0:
            return "bad"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "bad"
    return start, end


@dataclass
class Served:
    """What a download link serves, whatever the kind of object."""

    filename: str
    size: int
    etag: str
    media_type: str
    read: Callable[[int, int], AsyncIterator[bytes]]  # bytes start..end inclusive
    parts: list[tuple[str, int]]  # the blobs laid end to end: (key, size)
    subject: str  # what it is, for the log: "dataset 12" (never a name or a user)
    cut_at: datetime | None = None  # a private dataset's window: stop streaming then
    on_request: Callable[[int], Awaitable[None]] | None = None  # a GET from this byte on
    on_sent: Callable[[int, int], Awaitable[None]] | None = None  # bytes [start, end) sent
    dataset_id: int | None = None  # whose changes (the live-update bus) re-check the access
    public: bool = False  # bytes anybody may download: counted in /metrics, others not


async def _anybodys(kind: lookups.Kind[Any], grant: DownloadGrant) -> bool:
    """Whether anybody (an anonymous viewer) may download this object too."""
    if grant.viewer is None:
        return True
    return await lookups.visible(kind, None, grant.object_id) is not None


async def _dataset(
    services: Services, grant: DownloadGrant, allowed: Allowed, now: datetime, address: str
) -> Served:
    rt = services.runtime
    dataset = allowed.dataset
    assert dataset is not None and dataset.blob_key is not None and dataset.sha256 is not None
    key = dataset.blob_key

    async def recorded(start: int) -> None:
        first = await downloads.first_use(
            grant.link, kind=grant.kind, object_id=dataset.id, now=now
        )
        if first:  # one history entry per link, however many requests it serves
            await datasets.record_download(
                dataset.id, by_owner=grant.viewer == dataset.owner_id, address=address, now=now
            )

    return Served(
        filename=dataset.filename,
        size=dataset.size_bytes,
        etag=dataset.sha256,
        media_type="application/zip",
        read=lambda start, end: rt.blobs.read(key, start, end),
        parts=[(key, dataset.size_bytes)],
        subject=f"dataset {dataset.id}",
        cut_at=dataset.expires_at,
        on_request=recorded,
        dataset_id=dataset.id,
        public=await _anybodys(lookups.DATASET, grant),
    )


async def _file(
    services: Services, grant: DownloadGrant, allowed: Allowed, now: datetime, address: str
) -> Served:
    rt = services.runtime
    file, original = allowed.file, allowed.original
    assert file is not None
    parts = file.parts(original=original)
    size = sum(part_size for _, part_size in parts)
    etag = file.sha256 if original else file.public_sha256
    assert etag is not None

    async def started(start: int) -> None:
        await downloads.first_use(grant.link, kind=grant.kind, object_id=file.id, now=now)

    async def sent(start: int, end: int) -> None:
        await downloads.served(
            grant.link,
            file,
            size=size,
            start=start,
            end=end,
            by_owner=grant.viewer == file.owner_id,
        )

    return Served(
        filename=file.filename,
        size=size,
        etag=etag,
        media_type="application/octet-stream",
        read=lambda start, end: read_parts(rt.blobs, parts, start, end),
        parts=parts,
        subject=f"file {file.id}",
        on_request=started,
        on_sent=sent,
        dataset_id=allowed.dataset.id if allowed.dataset is not None else None,
        public=not original and await _anybodys(lookups.FILE, grant),
    )


async def _export(
    services: Services, grant: DownloadGrant, allowed: Allowed, now: datetime, address: str
) -> Served:
    """A data export: its owner's alone, while its window is open (cut at its end)."""
    rt = services.runtime
    export = allowed.export
    assert export is not None and export.blob_key is not None
    key = export.blob_key
    assert export.size_bytes is not None and export.ready_at is not None
    return Served(
        filename=f"lorashelf-export-{export.ready_at:%Y-%m-%d}.zip",
        size=export.size_bytes,
        etag=f"export-{export.public_id}",
        media_type="application/zip",
        read=lambda start, end: rt.blobs.read(key, start, end),
        parts=[(key, export.size_bytes)],
        subject=f"data export {export.id}",
        cut_at=export.expires_at,
    )


SERVED_BY = {signing.DATASET: _dataset, signing.FILE: _file, signing.EXPORT: _export}


async def download(request: Request) -> Response | WatchedBody:
    """Stream a dataset or a weights file through a signed URL; the rule is checked
    again right now, and while the bytes go. (The database or the store busy or away
    before the status is sent: 503 ``TRY_AGAIN``, graph/http/errors.py ``BusyAnswers``.)"""
    services = services_of(request)
    rt = services.runtime
    now = rt.clock.now()
    not_found = error_response(404, "NOT_FOUND", "No such download.")
    try:
        grant = services.signer.read_download_token(request.path_params["token"], now=now)
    except BadToken:
        return not_found
    allowed = await downloads.allowed(rt, grant, now)
    if allowed is None:
        return not_found
    address = request.client.host if request.client else "unknown"
    served = await SERVED_BY[grant.kind](services, grant, allowed, now, address)
    size = served.size
    wanted = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != f'"{served.etag}"':
        wanted = None  # the bytes changed since (RFC 9110 13.1.5): the whole file, 200
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(served.filename)}",
        "Cache-Control": "private, no-store",
        "ETag": f'"{served.etag}"',
    }
    if wanted == "bad":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        # what a GET would answer: the blob the range starts in is asked for (one HEAD
        # of the object), so a store away is 503 TRY_AGAIN here too, a blob gone 404
        try:
            await _present(services, served, start)
        except Exception as exc:
            return _unserved(exc, not_found)
        return Response(status_code=status, headers=headers, media_type=served.media_type)
    # The object store answers before the status is sent: a store away is 503 TRY_AGAIN
    # (nothing recorded), never a 200 whose body is cut at its first byte.
    chunks = _logged(served, start, end)
    try:
        first = await anext(chunks, b"")
    except Exception as exc:
        await chunks.aclose()
        return _unserved(exc, not_found)
    if served.on_request is not None:
        await served.on_request(start)
    return _watched(services, grant, allowed, served, _then(first, chunks), start, status, headers)


async def _present(services: Services, served: Served, start: int) -> None:
    """The blob holding byte ``start`` is in the store (``FileNotFoundError`` if not)."""
    offset = 0
    for key, size in served.parts:
        if start < offset + size:
            if await services.runtime.blobs.size(key) is None:
                raise FileNotFoundError(f"no blob {key}")
            return
        offset += size


def _unserved(exc: Exception, not_found: Response) -> Response:
    """The answer when the bytes' first read (or a HEAD's check) failed; nothing was
    sent or recorded."""
    if isinstance(exc, FileNotFoundError):  # deleted between the check and the read
        return not_found
    if isinstance(exc, TamperedBlob):  # logged by _logged, naming the blob and the chunk
        return error_response(
            500, "DAMAGED", "The stored file failed its integrity check; nothing was sent."
        )
    if retryable(exc):
        return busy_response(exc)
    raise exc


async def _then(first: bytes, rest: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then the rest of the chunks."""
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


def _watched(
    services: Services,
    grant: DownloadGrant,
    allowed: Allowed,
    served: Served,
    body: AsyncIterator[bytes],
    start: int,
    status: int,
    headers: dict[str, str],
) -> WatchedBody:
    """The body, watched for the end of access, counted as it goes."""
    rt = services.runtime
    limits = services.settings.limits
    kind = kind_label(grant.kind)

    def changes() -> AbstractContextManager[asyncio.Event | None]:
        if served.dataset_id is None:
            return contextlib.nullcontext()
        return services.hub.listen((DATASET, served.dataset_id))

    async def still_allowed(now: datetime) -> bool:
        return await downloads.still_allowed(rt, grant, allowed, now)

    async def ended(sent: int, complete: bool) -> None:
        if served.public:
            services.metrics.downloaded.labels(kind).inc(sent)
        if served.on_sent is not None:
            await served.on_sent(start, start + sent)

    if not served.public:  # private bytes: counted as a download, never by their size
        services.metrics.private_downloads.labels(kind).inc()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", served.media_type.encode()))
    return WatchedBody(
        body,
        status=status,
        headers=raw,
        watch=Watch(
            still_allowed=still_allowed,
            clock=rt.clock,
            cut_at=served.cut_at,
            changes=changes,
            min_rate=limits.download_min_rate,
            grace=limits.download_grace,
        ),
        on_end=ended,
    )


async def _logged(served: Served, start: int, end: int) -> AsyncGenerator[bytes]:
    """The range's bytes; a chunk that fails authentication is never served as data:
    the response stops short, and the log names the blob and the chunk."""
    try:
        async for chunk in served.read(start, end):
            yield chunk
    except TamperedBlob as exc:
        log.error(
            "download of %s stopped: blob %s, chunk %s, failed authentication",
            served.subject,
            exc.object_id,
            exc.index,
        )
        raise
