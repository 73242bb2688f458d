"""HTTP-level protections, as small ASGI middlewares.

- ``GraphQLRequestGuard``: on ``/graphql``, operations come only as ``application/json``
  POST bodies (no form or text/plain "simple requests", so no CSRF) of bounded size,
  arriving within a deadline, refused before any parsing; GET query strings are
  bounded the same way.
- ``RequestsPerAddress``: a bound on the requests (and open WebSockets) one client
  address has in flight.
- ``paced``: upload bodies must keep up a minimum rate.
- ``SecurityHeaders``: the same protective headers on every response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.http.connections import client_of

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
# JSON, downloads and static files may never run as a page. GraphiQL's page (graph/
# graphiql.py) loads only same-origin files, runs no inline script and sets styles only
# through the DOM; its stylesheet embeds its fonts as data: URIs.
_CSP_STRICT = b"default-src 'none'; frame-ancestors 'none'"


def strict_headers() -> dict[str, str]:
    """The headers :class:`SecurityHeaders` gives a JSON answer, for an answer made
    outside it (Starlette's outermost error middleware: ``errors.unexpected_error``)."""
    pairs = [*_HEADERS, (b"content-security-policy", _CSP_STRICT)]
    return {name.decode(): value.decode() for name, value in pairs}


_CSP_GRAPHIQL = (
    b"default-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    b"base-uri 'none'; form-action 'none'; object-src 'none'; frame-ancestors 'none'"
)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"errors": [{"message": message}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GraphQLRequestGuard:
    def __init__(self, app: ASGIApp, *, path: str, max_body_bytes: int, body_timeout: float):
        self.app = app
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "GET":
            if len(scope.get("query_string", b"")) > self.max_body_bytes:
                await _refuse(send, 414, "The query string is too long.")
                return
            await self.app(scope, receive, send)
            return
        if method != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            await _refuse(
                send, 415, "Send GraphQL operations as a POST with Content-Type: application/json."
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(
                send, 413, f"The request body is larger than {self.max_body_bytes} bytes."
            )
            return
        # Read the (small) body here, never more than the limit plus one chunk, and
        # within the deadline: a body trickled in holds a connection for nothing.
        chunks: list[bytes] = []
        size = 0
        more = True
        try:
            async with asyncio.timeout(self.body_timeout):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        await _refuse(
                            send,
                            413,
                            f"The request body is larger than {self.max_body_bytes} bytes.",
                        )
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            await _refuse(
                send, 408, f"The request body did not arrive within {self.body_timeout:g} seconds."
            )
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestsPerAddress:
    """At most ``limit`` requests in flight from one client address (an IPv6 /64 counts as
    one: :func:`graph.http.connections.client_of`; 429 beyond): one
    address cannot hold every connection, whatever it sends. Behind a reverse proxy,
    trust its forwarded addresses (LORASHELF_TRUSTED_PROXIES) or every client shares
    the proxy's."""

    def __init__(self, app: ASGIApp, *, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client_of(client[0]) if client else "unknown"
        if self.in_flight.get(address, 0) >= self.limit:
            if scope["type"] == "websocket":  # an open socket counts for as long as it lives
                await send({"type": "websocket.close", "code": 1013})
            else:
                await _refuse(send, 429, "Too many requests from this address at once.")
            return
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.in_flight[address] - 1
            if left:
                self.in_flight[address] = left
            else:
                del self.in_flight[address]


class TooSlow(Exception):
    """An upload body arrived slower than the minimum rate."""


async def paced(
    chunks: AsyncIterator[bytes], *, min_rate: int, grace: float
) -> AsyncIterator[bytes]:
    """An upload body that must keep arriving: after ``grace`` seconds it must average at
    least ``min_rate`` bytes a second, and a stalled body is cut as soon as it falls
    behind (each chunk is awaited only until then), so a trickle cannot hold a
    connection, a file descriptor and a temp file for ever."""
    start = time.monotonic()
    received = 0
    stream = aiter(chunks)
    while True:
        allowed = grace + received / min_rate - (time.monotonic() - start)
        try:
            async with asyncio.timeout(max(allowed, 0.0)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise TooSlow(
                f"The body arrived slower than {min_rate} bytes a second; send it again "
                "through a new upload URL."
            ) from None
        received += len(chunk)
        yield chunk


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, graphiql_path: str | None):
        self.app = app
        self.graphiql_path = graphiql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        page = scope["method"] == "GET" and scope["path"] == self.graphiql_path

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                is_html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                extra = [h for h in _HEADERS if h[0] not in present]
                csp = _CSP_GRAPHIQL if page and is_html else _CSP_STRICT
                if b"content-security-policy" not in present:  # a page's own (graph/http/webapp.py)
                    extra.append((b"content-security-policy", csp))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, with_headers)
