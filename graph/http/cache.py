"""Free repeats: anonymous answers reused while nothing they show has changed.

``AnonymousCache`` (an ASGI middleware on ``/graphql``) keeps the answers to anonymous
queries (no ``Authorization`` header at all), keyed by document, operation name and
variables, and tagged with the *public generation* they were computed under
(storage/public_generation.py): a counter every write that can change what anonymous viewers
see moves on. An answer is served again only under the same generation and within
``LORASHELF_PUBLIC_CACHE`` seconds (the most a download count may lag). Each process
re-reads the generation from the database at most every ``REFRESH`` seconds, so a
write through another process ends reuse here within that time; a write through this
process ends it at once.

Nothing a signed-in viewer's answer depends on is ever stored: requests carrying
``Authorization`` bypass the cache and are answered ``Cache-Control: private,
no-store``. Documents that hand out signed links (``downloadUrl``, ``uploadUrl``),
mutations, subscriptions and answers with errors are never stored either.

HTTP caches can do the same in front of lorashelf: anonymous answers carry ``ETag``,
``Cache-Control: public, max-age`` (what is left of the window) and ``Vary:
Authorization``, and ``If-None-Match`` gets a 304. Queries may come as ``GET`` with
automatic persisted queries (``extensions={"persistedQuery": {"version": 1,
"sha256Hash": ...}}``): a known hash needs no document, so the URL is short and
cacheable; an unknown one answers ``PERSISTED_QUERY_NOT_FOUND`` and the client sends
the document once with its hash. Persisted documents are kept per process (bounded).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from graphql.language import Visitor, visit
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.db import public_generation
from storage.system.clock import Clock

REFRESH = timedelta(seconds=0.25)  # between re-reads of the generation from the database
MAX_ENTRIES = 1000
MAX_ENTRY_BYTES = 1024 * 1024
MAX_PERSISTED = 2000
# Documents longer than this are not cached (ordinary pages are well under it): the
# cache parses what it may keep, and must not add a second parse of an abusive document.
MAX_CACHED_DOCUMENT = 8 * 1024
# Fields whose values are signed links with their own lifetime: not shared, not reused.
LINK_FIELDS = frozenset({"downloadUrl", "uploadUrl"})


class Generation:
    """This process's view of the public generation, re-read at most every ``REFRESH``
    of its clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.value = -1
        self.read_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.read_at is not None and self.clock.now() - self.read_at < REFRESH

    async def current(self) -> int:
        if self._fresh():
            return self.value
        async with self._lock:  # one read for every request waiting on it
            if not self._fresh():
                read_at = self.clock.now()
                self.value = await public_generation.current()
                self.read_at = read_at
        return self.value

    async def advance(self) -> None:
        """A public change has committed: no answer computed before it is reused."""
        self.value = await public_generation.advance()
        self.read_at = self.clock.now()


@dataclass(frozen=True)
class Entry:
    generation: int
    stored_at: datetime
    body: bytes
    etag: bytes


class _Bounded(OrderedDict[str, Any]):
    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@lru_cache(maxsize=512)
def shape(
    document: str, operation_name: str | None, max_tokens: int
) -> tuple[OperationType | None, bool]:
    """The kind of the operation run (None when the document does not parse or names no
    single operation: the GraphQL app says what is wrong) and whether it asks for a
    signed link."""
    try:
        parsed = parse(document, max_tokens=max_tokens)
    except (GraphQLError, RecursionError):
        return None, False
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name is not None and o.name.value == operation_name)
    ]
    if len(chosen) != 1:
        return None, False
    links = False

    class Links(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> Any:
            nonlocal links
            if node.name.value in LINK_FIELDS:
                links = True
                return Visitor.BREAK
            return None

    visit(parsed, Links())
    return chosen[0].operation, links


def _error_body(message: str, code: str) -> bytes:
    return json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _with_header(name: bytes, value: bytes, send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != name]
            message["headers"] = [*headers, (name, value)]
        await send(message)

    return sending


class _Request:
    """The GraphQL request as sent (GET query string or POST JSON object)."""

    def __init__(self, method: str, params: dict[str, Any]):
        self.method = method
        self.params = params

    @classmethod
    async def read(cls, scope: Scope, receive: Receive) -> tuple[_Request | None, bytes]:
        if scope["method"] == "GET":
            pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            params: dict[str, Any] = dict(pairs)
            for name in ("variables", "extensions"):
                if name in params:
                    try:
                        params[name] = json.loads(params[name])
                    except ValueError:
                        return None, b""
            return cls("GET", params), b""
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            value = json.loads(body)  # as the GraphQL app reads it
        except (ValueError, RecursionError):
            return None, body
        return (cls("POST", value) if isinstance(value, dict) else None), body

    @property
    def query(self) -> str | None:
        value = self.params.get("query")
        return value if isinstance(value, str) else None

    @property
    def operation_name(self) -> str | None:
        value = self.params.get("operationName")
        return value if isinstance(value, str) and value else None

    @property
    def persisted_hash(self) -> str | None:
        extensions = self.params.get("extensions")
        if not isinstance(extensions, dict):
            return None
        persisted = extensions.get("persistedQuery")
        if not isinstance(persisted, dict):
            return None
        value = persisted.get("sha256Hash")
        return value.lower() if isinstance(value, str) else ""

    def key(self) -> str:
        parts = [self.query, self.operation_name, self.params.get("variables") or {}]
        try:
            text = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # integers beyond 64 bits
            text = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()

    def forward(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """The scope and body the GraphQL app sees (with the document filled in)."""
        if self.method == "GET":
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.params.items()}
            return {**scope, "query_string": urlencode(params).encode()}, receive
        return scope, _replay(json.dumps(self.params).encode(), receive)


class AnonymousCache:
    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        seconds: int,
        generation: Generation,
        clock: Clock,
        max_tokens: int,
    ):
        self.app = app
        self.clock = clock
        self.max_tokens = max_tokens
        self.path = path
        self.seconds = seconds
        self.generation = generation
        self.entries: _Bounded = _Bounded(MAX_ENTRIES)
        self.persisted: _Bounded = _Bounded(MAX_PERSISTED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] not in ("GET", "POST")
        ):
            await self.app(scope, receive, send)
            return
        request, body = await _Request.read(scope, receive)
        if request is None:  # not JSON: the GraphQL app says what is wrong
            await self.app(scope, _replay(body, receive), send)
            return
        digest = request.persisted_hash
        if digest is None:
            receive = _replay(body, receive)
        else:
            refused = self._persisted(request, digest)
            if refused is not None:
                status, message, code = refused
                await _respond(
                    send,
                    status,
                    [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                    _error_body(message, code),
                )
                return
            scope, receive = request.forward(scope, receive)
        query = request.query
        signed_in = b"authorization" in dict(scope["headers"])
        kind, links = None, False
        if (
            query is not None
            and len(query) <= MAX_CACHED_DOCUMENT
            and (request.method == "GET" or not signed_in)
        ):
            kind, links = shape(query, request.operation_name, self.max_tokens)
        if request.method == "GET" and kind not in (None, OperationType.QUERY):
            await _respond(
                send,
                405,
                [(b"content-type", b"application/json"), (b"allow", b"POST")],
                _error_body("Only queries may be sent with GET; use POST.", "METHOD_NOT_ALLOWED"),
            )
            return
        if signed_in:
            await self.app(
                scope, receive, _with_header(b"cache-control", b"private, no-store", send)
            )
            return
        if not self.seconds or kind != OperationType.QUERY or links:
            await self.app(scope, receive, _with_header(b"cache-control", b"no-store", send))
            return
        if_none_match = dict(scope["headers"]).get(b"if-none-match")
        await self._cached(request.key(), if_none_match, scope, receive, send)

    def _persisted(self, request: _Request, digest: str) -> tuple[int, str, str] | None:
        query = request.query
        if query is None:
            known = self.persisted.get(digest)
            if known is None:
                return 200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"
            self.persisted.move_to_end(digest)
            request.params["query"] = known
        elif hashlib.sha256(query.encode()).hexdigest() != digest:
            return 400, "The sha256Hash does not match the query.", "PERSISTED_QUERY_HASH_MISMATCH"
        else:
            self.persisted.put(digest, query)
        request.params.pop("extensions", None)
        return None

    async def _cached(
        self, key: str, if_none_match: bytes | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        generation = await self.generation.current()
        entry: Entry | None = self.entries.get(key)
        now = self.clock.now()
        if entry is None or entry.generation != generation or _age(entry, now) >= self.seconds:
            status, headers, body = await _capture(self.app, scope, receive)
            if status != 200 or len(body) > MAX_ENTRY_BYTES or _has_errors(body):
                await _respond(
                    send, status, [*_without(headers), (b"cache-control", b"no-store")], body
                )
                return
            entry = Entry(
                generation, now, body, b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
            )
            self.entries.put(key, entry)
        else:
            self.entries.move_to_end(key)
        left = max(0, math.floor(self.seconds - _age(entry, now)))
        caching = [
            (b"etag", entry.etag),
            (b"cache-control", f"public, max-age={left}".encode()),
            (b"vary", b"Authorization"),
        ]
        if if_none_match is not None and entry.etag in {
            t.strip() for t in if_none_match.split(b",")
        }:
            await _respond(send, 304, caching, b"")
            return
        await _respond(send, 200, [(b"content-type", b"application/json"), *caching], entry.body)


def _age(entry: Entry, now: datetime) -> float:
    """Seconds since an answer was stored."""
    return (now - entry.stored_at).total_seconds()


def _without(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"cache-control")]


def _has_errors(body: bytes) -> bool:
    try:
        value = orjson.loads(body)
    except ValueError:
        return True
    return not isinstance(value, dict) or bool(value.get("errors")) or "data" not in value


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _capture(
    app: ASGIApp, scope: Scope, receive: Receive
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return status, headers, b"".join(chunks)
