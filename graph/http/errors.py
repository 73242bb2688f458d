"""Error answers outside GraphQL: every refusal is coded JSON (``{"error": CODE,
"message": ...}``), never plain text, and an unexpected failure carries a request id."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.http.logs import current_request_id
from graph.http.transport import strict_headers
from storage import changes
from storage.blobs.base import StoreUnavailable
from storage.changes import ResultUnavailable
from storage.errors import TryAgain, retryable
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
    is logged under it), never a plain-text 500. Starlette answers it from its outermost
    middleware, outside ``SecurityHeaders``: it carries their headers itself."""
    if retryable(exc):
        response = busy_response(exc)
        response.headers.update(strict_headers())
        return response
    request_id = current_request_id()
    log.error("request %s: unexpected error", request_id, exc_info=exc)
    headers = {**strict_headers(), "cache-control": "no-store"}
    if disk.is_full(exc):
        body = {"error": "STORAGE_FULL", "message": disk.StorageFull().message}
        return JSONResponse({**body, "requestId": request_id}, status_code=507, headers=headers)
    body = {"error": "INTERNAL_ERROR", "message": "Unexpected error.", "requestId": request_id}
    return JSONResponse(body, status_code=500, headers=headers)


# Seconds a client waits before retrying a request the database could not take.
RETRY_AFTER = "1"


def busy_response(exc: BaseException | None = None) -> JSONResponse:
    """503 ``TRY_AGAIN`` with ``Retry-After``: the database or the object store (or the
    server behind them) could not take the request now; nothing was changed and the same
    request can succeed soon."""
    what = "the object store" if isinstance(exc, StoreUnavailable) else "the database"
    log.warning("request %s: %s is busy or unreachable", current_request_id(), what)
    response = error_response(503, TryAgain.code, TryAgain().message)
    response.headers["retry-after"] = RETRY_AFTER
    return response


def busy_graphql_response() -> JSONResponse:
    """The same refusal on ``/graphql`` before anything ran (e.g. signing in with a token
    while the database restarts), in the shape of any other GraphQL error."""
    log.warning("request %s: the database is busy or unreachable", current_request_id())
    error = {"message": TryAgain().message, "extensions": {"code": TryAgain.code}}
    return JSONResponse({"errors": [error]}, status_code=503, headers={"retry-after": RETRY_AFTER})


def committed_graphql_response() -> JSONResponse:
    """A request whose change committed, then met a busy or unreachable database before
    its answer was made: never "try again" (that would make a client repeat a change
    that was made), but what the mutations answer in that case, RESULT_UNAVAILABLE."""
    unavailable = ResultUnavailable()
    log.warning(
        "request %s: the change committed, then the database failed before the answer",
        current_request_id(),
    )
    error = {"message": unavailable.message, "extensions": {"code": unavailable.code}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=200)


UNAUTHENTICATED_MESSAGE = (
    "The bearer token is not valid (unknown, expired or revoked): sign in again."
)


def unauthenticated_response() -> JSONResponse:
    """401 for a token that no longer works, so a client can ask its user to sign in
    again (RFC 6750's ``invalid_token``), in the shape of any other GraphQL error."""
    return _graphql_401(UNAUTHENTICATED_MESSAGE, code="UNAUTHENTICATED", error="invalid_token")


MALFORMED_AUTHORIZATION_MESSAGE = (
    "The Authorization header must be `Bearer <token>`, with the token from signUp or "
    "logIn (e.g. `Authorization: Bearer 3q2-...`); leave the header out to be anonymous."
)


def malformed_authorization_response() -> JSONResponse:
    """401 for an ``Authorization`` header that is not ``Bearer <token>`` (a token sent
    without its scheme, another scheme): never taken as anonymous, which would hide the
    mistake (RFC 6750's ``invalid_request``)."""
    return _graphql_401(
        MALFORMED_AUTHORIZATION_MESSAGE, code="INVALID_AUTHORIZATION", error="invalid_request"
    )


def _graphql_401(message: str, *, code: str, error: str) -> JSONResponse:
    body = {"message": message, "extensions": {"code": code}}
    return JSONResponse(
        {"errors": [body]},
        status_code=401,
        headers={"www-authenticate": f'Bearer error="{error}"'},
    )


class BusyAnswers:
    """Every route's answer when a dependency is in a passing state (the database busy
    or away, the object store not answering) before its answer started: 503
    ``TRY_AGAIN`` with ``Retry-After``, as an expected state, in one place. (Left to
    the last-resort handler, the client got the same answer, but Starlette re-raises
    after that handler, so each was logged as an ASGI exception with its traceback: 28
    in one PostgreSQL restart of the proof run, tests/proof_scenario.py.) Never after
    a change of the request committed: that is not "nothing was changed", but
    ``RESULT_UNAVAILABLE`` (:func:`committed_response`). Routes that answer such states
    themselves (GraphQL, the upload ``PUT``) never get here with them."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with changes.watch() as watched:
            try:
                await self.app(scope, receive, sending)
            except Exception as exc:
                if started or not retryable(exc):
                    raise
                answer = committed_response() if watched.committed else busy_response(exc)
                await answer(scope, receive, send)


def committed_response() -> JSONResponse:
    """A route's request whose change committed, then met a busy or unreachable
    dependency before its answer: never "try again" (the change was made), but
    ``RESULT_UNAVAILABLE``, as the mutations say it, with a request id."""
    unavailable = ResultUnavailable()
    request_id = current_request_id()
    log.warning("request %s: the change committed, then a dependency failed", request_id)
    body = {"error": unavailable.code, "message": unavailable.message, "requestId": request_id}
    return JSONResponse(body, status_code=500)
