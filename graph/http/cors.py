"""Cross-origin access for a web app on another origin (LORASHELF_CORS_ORIGINS).

Configured, the allowed origins may call the API with a bearer token and read the
download headers (:data:`EXPOSED`). A preflight from an origin that is not allowed
answers a JSON body that says so and names the variable that allows it, rather than a
bare error a front-end developer has to guess about; the answer is the same whether
origins are configured or not, and never lists them (:func:`not_allowed`).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

METHODS = ("GET", "POST", "PUT")
HEADERS = ("authorization", "content-type", "range", "idempotency-key")
# What browser code may read besides the safelisted headers: a download's range, name,
# validator and length, why a token was refused, whether an answer is a replay of an
# idempotent request, and when to retry.
EXPOSED = (
    "Content-Range",
    "Content-Disposition",
    "ETag",
    "Accept-Ranges",
    "Content-Length",
    "WWW-Authenticate",
    "Idempotent-Replayed",
    "Retry-After",
)
VARIABLE = "LORASHELF_CORS_ORIGINS"


def is_preflight(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "OPTIONS":
        return False
    headers = Headers(scope=scope)
    return "origin" in headers and "access-control-request-method" in headers


def _refusal(message: str) -> JSONResponse:
    return JSONResponse({"error": "CORS_REFUSED", "message": message}, status_code=403)


def not_allowed(origin: str) -> JSONResponse:
    """The one answer to a preflight from an origin that may not call the API: it says
    what to set, and nothing of what is set (the allowed origins are the operator's)."""
    return _refusal(
        f"The origin {origin} may not call this API across origins: the server's "
        f"{VARIABLE} (comma-separated origins) must list it."
    )


class Cors(CORSMiddleware):
    """Starlette's CORS with the download headers exposed and refusals explained."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str]):
        super().__init__(
            app,
            allow_origins=list(origins),
            allow_methods=list(METHODS),
            allow_headers=list(HEADERS),
            expose_headers=list(EXPOSED),
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin):
            return not_allowed(origin)
        method = request_headers["access-control-request-method"]
        if method not in METHODS:
            return _refusal(f"{method} is not allowed across origins (only {', '.join(METHODS)}).")
        return _refusal(
            "A requested header is not allowed across origins (only "
            f"{', '.join(HEADERS)} besides the safelisted ones)."
        )


class NoCors:
    """No origin configured: same-origin only, and a preflight says how to allow one."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_preflight(scope):
            await self.app(scope, receive, send)
            return
        await not_allowed(Headers(scope=scope)["origin"])(scope, receive, send)
