"""Error answers outside GraphQL: every refusal is coded JSON (``{"error": CODE,
"message": ...}``), never plain text, and an unexpected failure carries a request id."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graph.http.logs import current_request_id
from storage.system import disk

log = logging.getLogger("lorashelf")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A refusal with its HTTP status, its stable code and a short reason."""
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    """Every HTTP-level refusal (no such route, method not allowed) as coded JSON."""
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return JSONResponse(
        {"error": codes.get(exc.status_code, "HTTP_ERROR"), "message": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure outside GraphQL: coded JSON with a request id (the traceback
    is logged under it), never a plain-text 500."""
    request_id = current_request_id()
    log.error("request %s: unexpected error", request_id, exc_info=exc)
    if disk.is_full(exc):
        body = {"error": "STORAGE_FULL", "message": disk.StorageFull().message}
        return JSONResponse({**body, "requestId": request_id}, status_code=507)
    body = {"error": "INTERNAL_ERROR", "message": "Unexpected error.", "requestId": request_id}
    return JSONResponse(body, status_code=500)


UNAUTHENTICATED_MESSAGE = (
    "The bearer token is not valid (unknown, expired or revoked): sign in again."
)


def unauthenticated_response() -> JSONResponse:
    """401 for a token that no longer works, so a client can ask its user to sign in
    again (RFC 6750's ``invalid_token``), in the shape of any other GraphQL error."""
    error = {"message": UNAUTHENTICATED_MESSAGE, "extensions": {"code": "UNAUTHENTICATED"}}
    return JSONResponse(
        {"errors": [error]},
        status_code=401,
        headers={"www-authenticate": 'Bearer error="invalid_token"'},
    )
