"""Plain HTTP routes: upload (PUT), download (GET with Range), health."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from graph import ids
from graph.context import Services
from storage import datasets, db, lookups
from storage.clock import Clock
from storage.signing import BadToken

log = logging.getLogger("lorashelf.routes")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def upload(request: Request) -> Response:
    """Take a dataset's bytes through a signed, single-use upload URL."""
    services = _services(request)
    try:
        dataset_id, nonce = services.signer.read_upload_token(request.path_params["token"])
    except BadToken:
        return _error(403, "INVALID_UPLOAD_URL", "This upload URL is not valid.")
    try:
        dataset = await datasets.receive_upload(
            services.runtime, dataset_id=dataset_id, nonce=nonce, chunks=request.stream()
        )
    except datasets.UploadRejected as exc:
        return _error(exc.status, exc.code, exc.message)
    return JSONResponse(
        {
            "id": ids.encode(lookups.DATASET.name, dataset.id),
            "status": "AVAILABLE",
            "sizeBytes": dataset.size_bytes,
            "sha256": dataset.sha256,
        }
    )


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


async def download(request: Request) -> Response:
    """Stream a dataset through a signed URL; the rule is checked again right now."""
    services = _services(request)
    rt = services.runtime
    now = rt.clock.now()
    not_found = _error(404, "NOT_FOUND", "No such download.")
    try:
        grant = services.signer.read_download_token(request.path_params["token"], now=now)
    except BadToken:
        return not_found
    dataset = await datasets.downloadable(grant.viewer, grant.dataset_id, now)
    if dataset is None:
        return not_found
    assert dataset.blob_key is not None
    size = dataset.size_bytes
    wanted = parse_range(request.headers.get("range"), size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(dataset.filename)}",
        "Cache-Control": "private, no-store",
        "ETag": f'"{dataset.sha256}"',
    }
    if wanted == "bad":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = wanted if isinstance(wanted, tuple) else (0, size - 1)
    if start == 0 and request.method == "GET":
        await datasets.record_download(
            dataset.id, by_owner=grant.viewer == dataset.owner_id, now=now
        )
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    body = _until(rt.blobs.read(dataset.blob_key, start, end), dataset.expires_at, rt.clock)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/zip")
    return StreamingResponse(
        body, status_code=status, headers=headers, media_type="application/zip"
    )


async def _until(
    chunks: AsyncIterator[bytes], expires_at: datetime | None, clock: Clock
) -> AsyncIterator[bytes]:
    """Stream a private dataset only until its window ends: a download that started
    before ``expires_at`` is cut at that instant, not finished at leisure."""
    async for chunk in chunks:
        if expires_at is not None and clock.now() >= expires_at:
            log.info("download cut at the end of the dataset's window")
            return
        yield chunk


async def healthz(request: Request) -> Response:
    if await db.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)
