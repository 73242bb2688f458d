"""HTTP-level protections, as small ASGI middlewares.

- ``GraphQLRequestGuard``: on ``/graphql``, operations come only as ``application/json``
  POST bodies (no form or text/plain "simple requests", so no CSRF) of bounded size,
  refused before any parsing; GET query strings are bounded the same way.
- ``SecurityHeaders``: the same protective headers on every response.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    def __init__(self, app: ASGIApp, *, path: str, max_body_bytes: int):
        self.app = app
        self.path = path
        self.max_body_bytes = max_body_bytes

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
        # Read the (small) body here, never more than the limit plus one chunk.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(
                    send, 413, f"The request body is larger than {self.max_body_bytes} bytes."
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
                extra.append((b"content-security-policy", csp))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, with_headers)
