"""Plain HTTP routes: upload (PUT), download (GET with Range), health."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from graph import ids
from graph.context import Services
from graph.transport import TooSlow, paced
from storage import (
    access,
    accounts,
    datasets,
    db,
    disk,
    downloads,
    files,
    headers,
    lookups,
    signing,
)
from storage.blobs import read_parts
from storage.clock import Clock
from storage.errors import TryAgain
from storage.models import DatasetStatus, Visibility
from storage.signing import BadToken, DownloadGrant
from storage.uploads import UploadRejected

log = logging.getLogger("lorashelf.routes")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def upload(request: Request) -> Response:
    """Take a dataset's or a weights file's bytes through a signed, single-use URL."""
    services = _services(request)
    try:
        grant = services.signer.read_upload_token(request.path_params["token"])
    except BadToken:
        return _error(403, "INVALID_UPLOAD_URL", "This upload URL is not valid.")
    rt, limits = services.runtime, services.settings.limits
    chunks = paced(request.stream(), min_rate=limits.upload_min_rate, grace=limits.upload_grace)
    try:
        if grant.kind == signing.FILE:
            file = await files.receive_file_upload(
                rt, file_id=grant.object_id, nonce=grant.nonce, chunks=chunks
            )
            body = {
                "id": ids.encode(lookups.FILE.name, file.public_id),
                "status": "AVAILABLE",
                "sizeBytes": file.size_bytes,
                "sha256": file.sha256,
                "autoV3": file.auto_v3,
                "withheldKeys": file.withheld_keys,
            }
        else:
            dataset = await datasets.receive_upload(
                rt, dataset_id=grant.object_id, nonce=grant.nonce, chunks=chunks
            )
            if dataset.visibility == Visibility.PUBLIC:
                # Uploads go to drafts, which anonymous viewers never see; a public
                # dataset's arrival is told all the same, in case it is shown.
                await services.generation.advance()
            body = {
                "id": ids.encode(lookups.DATASET.name, dataset.public_id),
                "status": "AVAILABLE",
                "sizeBytes": dataset.size_bytes,
                "sha256": dataset.sha256,
            }
    except UploadRejected as exc:
        return _error(exc.status, exc.code, exc.message)
    except TooSlow as exc:
        return _error(408, "UPLOAD_TOO_SLOW", str(exc))
    except Exception as exc:
        if disk.is_full(exc):
            return _error(507, "STORAGE_FULL", disk.StorageFull().message)
        if not db.is_busy(exc):
            raise
        return _error(503, "TRY_AGAIN", TryAgain().message)
    services.metrics.uploaded.labels(_kind(grant.kind)).inc(body["sizeBytes"])
    return JSONResponse(body)


def _kind(kind: str) -> str:
    """A grant's kind as a metrics label: ``dataset`` or ``file``."""
    return "file" if kind == signing.FILE else "dataset"


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
        await headers.erase(rt, file.id, now=now)  # the first to see the window over erases
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
    services = _services(request)
    rt = services.runtime
    now = rt.clock.now()
    not_found = _error(404, "NOT_FOUND", "No such download.")
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
    body = _counted(_stream(served, start, end, rt.clock), services, _kind(grant.kind))
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


async def readyz(request: Request) -> Response:
    """Whether this process can serve: the database and the object store answer, Redis
    too when configured, and the disk has room for uploads. 503 (with what is wrong)
    when not: deletions still go on."""
    services = _services(request)
    settings = services.settings
    free = await asyncio.to_thread(disk.free_bytes, settings.data_dir)
    checks = {
        "database": "ok" if await db.ping() else "unavailable",
        "disk": "ok" if free >= settings.min_free_bytes else "full",
        "objectStore": "ok" if await services.runtime.blobs.ping() else "unavailable",
    }
    if services.queue is not None:
        checks["redis"] = "ok" if await services.queue.ping() else "unavailable"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks, "freeBytes": free}
    return JSONResponse(body, status_code=200 if ready else 503)


async def home(request: Request) -> Response:
    """``/``: a browser is sent to GraphiQL (307 to /graphql); anything else learns where
    the API is."""
    settings = _services(request).settings
    graphql = settings.public_url + "/graphql"
    if settings.graphiql and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(graphql, status_code=307)
    return _error(404, "NOT_FOUND", f"Nothing here: the GraphQL API is at {graphql}.")


async def healthz(request: Request) -> Response:
    if await db.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)
