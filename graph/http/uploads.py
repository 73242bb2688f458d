"""``PUT /uploads/<token>``: a dataset's or a weights file's bytes, through a signed,
single-use URL. The storage services check and keep the bytes; this route reads the
token, paces the body, and maps every refusal to its HTTP answer (:func:`refusal`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graph.http.errors import RETRY_AFTER, busy_response, error_response
from graph.http.metrics import kind_label
from graph.http.transport import TooSlow, paced
from graph.schema import ids
from graph.schema.context import Services, services_of
from storage import changes, datasets, files, hashes, signing
from storage.db.commit_outcome import CommitOutcomeUnknown
from storage.errors import retryable
from storage.privacy import access, lookups
from storage.signing import BadToken, UploadGrant
from storage.system import disk
from storage.uploads import UploadRejected


async def upload(request: Request) -> Response:
    """Take the bytes: read the grant, receive them through the service of their kind,
    answer with what was stored (or the refusal)."""
    services = services_of(request)
    try:
        grant = services.signer.read_upload_token(request.path_params["token"])
    except BadToken:
        return error_response(403, "INVALID_UPLOAD_URL", "This upload URL is not valid.")
    limits = services.settings.limits
    chunks = paced(request.stream(), min_rate=limits.upload_min_rate, grace=limits.upload_grace)
    receive = _receive_file if grant.kind == signing.FILE else _receive_dataset
    try:
        body = await receive(services, grant, chunks)
    except Exception as exc:
        return refusal(exc)
    services.metrics.uploads.labels(kind_label(grant.kind)).inc()  # never its size
    return JSONResponse(body)


def refusal(exc: Exception) -> JSONResponse:
    """Where the upload ``PUT`` maps its errors: a refusal of the bytes (its own status
    and code: 400/413 ``SIZE_MISMATCH``, 410 used or expired URL, 415/422 not
    safetensors or a bad archive, 404, 507 ...), a body too slow (408), a full disk
    (507), a busy database or an object store that does not answer (503 ``TRY_AGAIN``:
    the claim was given back, so the same URL works again). Anything else is raised
    again: the app masks it as ``INTERNAL_ERROR`` with a request id."""
    if isinstance(exc, UploadRejected):
        return error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, TooSlow):
        return error_response(408, "UPLOAD_TOO_SLOW", str(exc))
    if disk.is_full(exc):
        return error_response(507, "STORAGE_FULL", disk.StorageFull().message)
    if retryable(exc):
        return busy_response(exc)
    if isinstance(exc, CommitOutcomeUnknown):  # it may have been stored: 503, not "try again"
        response = error_response(503, exc.code, exc.message)
        response.headers["retry-after"] = RETRY_AFTER
        return response
    raise exc


async def _receive_file(
    services: Services, grant: UploadGrant, chunks: AsyncIterator[bytes]
) -> dict[str, Any]:
    file = await files.receive_file_upload(
        services.runtime, file_id=grant.object_id, nonce=grant.nonce, chunks=chunks
    )
    # As ModelFile shows it to its owner: the original (what the owner downloads), and
    # beside it the file as the public will download it.
    dataset = await files.dataset_of(file, viewer=file.owner_id)
    public_original = access.sees_withheld_keys(None, file, dataset, services.runtime.clock.now())
    return {
        "id": ids.encode(lookups.FILE.name, file.public_id),
        "status": "AVAILABLE",
        "sizeBytes": hashes.size_of(file, original=True),
        "sha256": hashes.sha256_of(file, original=True),
        "publicSizeBytes": hashes.size_of(file, original=public_original),
        "publicSha256": hashes.sha256_of(file, original=public_original),
        "autoV3": file.auto_v3,
        "withheldKeys": file.withheld_keys,
    }


async def _receive_dataset(
    services: Services, grant: UploadGrant, chunks: AsyncIterator[bytes]
) -> dict[str, Any]:
    # Uploads go to drafts, which anonymous viewers never see: the public generation
    # stays (a cache miss must not tell an observer that someone uploaded something),
    # unless the dataset is seen once it is here (storage/datasets.py); then this
    # process re-reads it before its next cached answer (only then: re-reading after
    # a private upload would make the next anonymous answer slower).
    with changes.watch() as watched:
        dataset = await datasets.receive_upload(
            services.runtime, dataset_id=grant.object_id, nonce=grant.nonce, chunks=chunks
        )
    if watched.public:
        services.generation.changed()
    return {
        "id": ids.encode(lookups.DATASET.name, dataset.public_id),
        "status": "AVAILABLE",
        "sizeBytes": dataset.size_bytes,
        "sha256": dataset.sha256,
    }
