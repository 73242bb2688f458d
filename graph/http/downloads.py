"""``GET /downloads/<token>``: a dataset or a weights file through a signed link, with
``Range``; the privacy rule is checked again when the link is used, and a private
dataset's download is cut at the instant its window ends."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from graph.http.errors import error_response
from graph.http.metrics import kind_label
from graph.schema.context import Services, services_of
from storage import accounts, datasets, downloads, files, signing
from storage.blobs.base import read_parts
from storage.db.enums import DatasetStatus
from storage.privacy import access, lookups
from storage.retention import header_firewall
from storage.signing import BadToken, DownloadGrant
from storage.system.clock import Clock

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
    cut_at: datetime | None = None  # a private dataset's window: stop streaming then
    on_request: Callable[[int], Awaitable[None]] | None = None  # a GET from this byte on
    on_last_byte: Callable[[], Awaitable[None]] | None = None  # the final byte was sent


async def _dataset(
    services: Services, grant: DownloadGrant, now: datetime, address: str
) -> Served | None:
    rt = services.runtime
    dataset = await datasets.downloadable(rt, grant.viewer, grant.object_id, now)
    if dataset is None or dataset.blob_key is None or dataset.sha256 is None:
        return None
    key = dataset.blob_key

    async def recorded(start: int) -> None:
        first = await downloads.first_use(
            grant.link, kind=grant.kind, object_id=dataset.id, now=now, from_start=start == 0
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
        cut_at=dataset.expires_at,
        on_request=recorded,
    )


async def _file(
    services: Services, grant: DownloadGrant, now: datetime, address: str
) -> Served | None:
    rt = services.runtime
    file = await lookups.visible(lookups.FILE, grant.viewer, grant.object_id)
    if file is None or file.status != DatasetStatus.AVAILABLE:
        return None
    if file.header_expires_at is not None and file.header_expires_at <= now:
        await header_firewall.erase(rt, file.id, now=now)  # the first to see the window over erases
        file = await lookups.visible(lookups.FILE, grant.viewer, grant.object_id)
        if file is None:
            return None
    dataset = await files.dataset_of(file, viewer=grant.viewer)
    original = access.sees_withheld_keys(grant.viewer, file, dataset, now)
    parts = files.parts(file, original=original)
    etag = file.sha256 if original else file.public_sha256
    assert etag is not None

    async def started(start: int) -> None:
        await downloads.first_use(
            grant.link, kind=grant.kind, object_id=file.id, now=now, from_start=start == 0
        )

    async def counted() -> None:
        await downloads.completed(grant.link, file, by_owner=grant.viewer == file.owner_id)

    return Served(
        filename=file.filename,
        size=sum(size for _, size in parts),
        etag=etag,
        media_type="application/octet-stream",
        read=lambda start, end: read_parts(rt.blobs, parts, start, end),
        on_request=started,
        on_last_byte=counted,
    )


async def download(request: Request) -> Response:
    """Stream a dataset or a weights file through a signed URL; the rule is checked
    again right now."""
    services = services_of(request)
    rt = services.runtime
    now = rt.clock.now()
    not_found = error_response(404, "NOT_FOUND", "No such download.")
    try:
        grant = services.signer.read_download_token(request.path_params["token"], now=now)
    except BadToken:
        return not_found
    if grant.session is not None and not await accounts.session_alive(grant.session, now=now):
        return not_found  # minted for a sign-in that has ended (log-out, password change)
    serve = _file if grant.kind == signing.FILE else _dataset
    address = request.client.host if request.client else "unknown"
    served = await serve(services, grant, now, address)
    if served is None:
        return not_found
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
        return Response(status_code=status, headers=headers, media_type=served.media_type)
    if served.on_request is not None:
        await served.on_request(start)
    body = _counted(_stream(served, start, end, rt.clock), services, kind_label(grant.kind))
    return StreamingResponse(
        body, status_code=status, headers=headers, media_type=served.media_type
    )


async def _stream(served: Served, start: int, end: int, clock: Clock) -> AsyncIterator[bytes]:
    """Stream the range; a private dataset only until its window ends (a download that
    started before ``expires_at`` is cut at that instant, not finished at leisure)."""
    async for chunk in served.read(start, end):
        if served.cut_at is not None and clock.now() >= served.cut_at:
            log.info("download cut at the end of the dataset's window")
            return
        yield chunk
    if end == served.size - 1 and served.on_last_byte is not None:
        await served.on_last_byte()


async def _counted(
    body: AsyncIterator[bytes], services: Services, kind: str
) -> AsyncIterator[bytes]:
    """The body as sent, its bytes counted for ``/metrics`` as they go."""
    sent = services.metrics.downloaded.labels(kind)
    async for chunk in body:
        sent.inc(len(chunk))
        yield chunk
