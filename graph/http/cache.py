"""Free repeats: anonymous answers reused while nothing they show has changed.

``AnonymousCache`` (an ASGI middleware on ``/graphql``) keeps the answers to anonymous
queries (no ``Authorization`` header at all), keyed by document, operation name and
variables, and tagged with the *public generation* they were computed under
(storage/db/public_generation.py): a counter every write that can change what anonymous
viewers see moves on, in its own transaction (storage/changes.py); on PostgreSQL a value
read while such a write is in flight is one of this process's own, never read again.
An answer is served again only under the same generation and within
``LORASHELF_PUBLIC_CACHE`` seconds (the most a download count may lag). Each process
re-reads the generation from the database at most every ``REFRESH`` seconds, so a
write through another process ends reuse here within that time; a write through this
process ends it at once.

Nothing a signed-in viewer's answer depends on is ever stored: requests carrying
``Authorization`` are answered as the viewer, ``Cache-Control: private, no-store``,
unless the anonymous answer is provably theirs too (graph/http/sharing.py: the
document asks nothing that depends on who asks, the viewer owns nothing only they
see); then they get it from here, still ``private, no-store``. Documents that hand out
signed links (``downloadUrl``, ``uploadUrl``), mutations, subscriptions and answers
with errors are never stored.

A miss is computed once per process: requests missing the same answer while it is
being computed wait for it (``lorashelf_response_cache_answers_total`` counts hits,
computations and coalesced misses), so an entry expiring under load costs one run.

HTTP caches can do the same in front of lorashelf: anonymous answers carry ``ETag``,
``Cache-Control: public, max-age`` (what is left of the window) and ``Vary:
Authorization``, and ``If-None-Match`` gets a 304; but only the catalogue may be kept
by a shared cache (``SHAREABLE_FIELDS`` in graph/schema/documents.py, an allow-list):
any other answer (a training dataset, a weights file and its header, a lookup by id
or hash) is ``Cache-Control: private, max-age``, so that no CDN serves it on after the
owner makes the dataset private; this cache, whose reuse ends at that instant, and the
asker's own browser still keep it.

Queries may come as ``GET`` with automatic persisted queries
(``extensions={"persistedQuery": {"version": 1, "sha256Hash": ...}}``): a known hash
needs no document, so the URL is short and cacheable; an unknown one answers
``PERSISTED_QUERY_NOT_FOUND`` and the client sends the document once with its hash. A
document is persisted only if it validates, in its normal form
(graph/schema/documents.py: printed without comments or whitespace), so the same page
registered under a thousand comments is one small document a thousand times at most.

Memory, whatever anonymous clients send: answers at most
``LORASHELF_PUBLIC_CACHE_BYTES`` (32 MiB; an answer over ``MAX_ENTRY_BYTES`` is not
kept), persisted documents at most ``LORASHELF_PERSISTED_QUERIES_BYTES`` (4 MiB), both
counted in bytes (text, key and bookkeeping), least recently used out. Answers are
keyed on the document's normal form, so texts that differ by a comment or a space
share one entry.

The request itself is read by graph/http/graphql_request.py (text that is not Unicode
is refused there).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

import orjson
from graphql import OperationType
from starlette.types import ASGIApp, Receive, Scope, Send

from graph.http.coalescing import Flights
from graph.http.graphql_request import GraphQLRequest, Refused
from graph.http.messages import (
    Captured,
    capture,
    error_body,
    replay,
    respond,
    with_header,
    without,
)
from graph.schema.documents import Documents
from graph.schema.sharing import UNKNOWN, Classifier
from storage.db import public_generation
from storage.db.connection import is_busy
from storage.system.clock import Clock

if TYPE_CHECKING:
    from graph.http.metrics import ApiMetrics
    from graph.http.sharing import Sharing

REFRESH = timedelta(seconds=0.25)  # between re-reads of the generation from the database
MAX_ENTRY_BYTES = 1024 * 1024  # an answer larger than this is not kept
ENTRY_BYTES = 400  # what an entry costs beyond its text: objects, its place in the order


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

    def changed(self) -> None:
        """A change committed through this process (it moved the generation in its own
        transaction if it was public): read the generation again before the next reuse,
        so that no answer computed before the change is served after it."""
        self.read_at = None


@dataclass(frozen=True)
class Entry:
    generation: int
    stored_at: datetime
    body: bytes
    etag: bytes


V = TypeVar("V")


class Budget(Generic[V]):
    """Values by key, least recently used out, within ``max_bytes``: each value costs
    what it is put with, plus its key and ``ENTRY_BYTES``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def get(self, key: str) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: str, value: V, cost: int) -> None:
        cost += sys.getsizeof(key) + ENTRY_BYTES
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]
        if cost > self.max_bytes:
            return
        self._items[key] = (value, cost)
        self.size += cost
        while self.size > self.max_bytes:
            _, (_, freed) = self._items.popitem(last=False)
            self.size -= freed

    def __len__(self) -> int:
        return len(self._items)


class AnonymousCache:
    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        seconds: int,
        generation: Generation,
        clock: Clock,
        documents: Documents,
        classifier: Classifier,
        answers_bytes: int,
        persisted_bytes: int,
        sharing: Sharing | None = None,
        metrics: ApiMetrics | None = None,
    ):
        self.app = app
        self.classifier = classifier
        self.sharing = sharing
        self.metrics = metrics
        # The misses being computed, by key and generation.
        self.flights: Flights[tuple[str, int], tuple[Entry | None, Captured]] = Flights()
        self.clock = clock
        self.path = path
        self.seconds = seconds
        self.generation = generation
        self.documents = documents
        self.entries: Budget[Entry] = Budget(answers_bytes)
        self.persisted: Budget[str] = Budget(persisted_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] not in ("GET", "POST")
        ):
            await self.app(scope, receive, send)
            return
        try:
            request, body = await GraphQLRequest.read(scope, receive)
            if request is not None and request.persisted_hash is not None:
                self._persisted(request, request.persisted_hash)
        except Refused as refused:
            await respond(
                send,
                refused.status,
                [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                error_body(refused.message, refused.code),
            )
            return
        if request is None:  # not JSON: the GraphQL app says what is wrong
            await self.app(scope, replay(body, receive), send)
            return
        if request.persisted_hash is None:
            receive = replay(body, receive)
        else:
            scope, receive = request.forward(scope, receive)
        query = request.query
        signed_in = b"authorization" in dict(scope["headers"])
        sharing = self.sharing if self.seconds else None
        found, shareable, normal = UNKNOWN, False, None
        if query is not None and (request.method == "GET" or not signed_in or sharing is not None):
            # the parse the GraphQL app will reuse (graph/schema/documents.py)
            found = self.classifier.shape(query, request.operation_name)
            shareable = self.documents.shareable(self.documents.entry(query))
            if found.kind == OperationType.QUERY:
                normal = self.documents.normal(query)
        kind, links = found.kind, found.links
        if request.method == "GET" and kind not in (None, OperationType.QUERY):
            await respond(
                send,
                405,
                [(b"content-type", b"application/json"), (b"allow", b"POST")],
                error_body("Only queries may be sent with GET; use POST.", "METHOD_NOT_ALLOWED"),
            )
            return
        if signed_in:
            # Answered as the viewer (private), unless the anonymous answer is theirs too
            # (graph/http/sharing.py): then as an anonymous query, still private.
            send = with_header(b"cache-control", b"private, no-store", send)
            if sharing is None or normal is None or links:
                await self.app(scope, receive, send)
                return
            decision = await sharing.decide(scope, found.shared)
            scope = decision.scope
            if not decision.shared:
                await self.app(scope, receive, send)
                return
        elif not self.seconds or normal is None or links:
            await self.app(scope, receive, with_header(b"cache-control", b"no-store", send))
            return
        if_none_match = dict(scope["headers"]).get(b"if-none-match")
        shared = b"public" if shareable else b"private"
        await self._cached(request.key(normal), shared, if_none_match, scope, receive, send)

    def _persisted(self, request: GraphQLRequest, digest: str) -> None:
        """Automatic persisted queries: the document of a known hash; or the document
        sent with its hash, kept (in its normal form) if it is the hash's and it
        validates. Raises :class:`Refused` for an unknown hash or a wrong one."""
        query = request.query
        if query is None:
            known = self.persisted.get(digest)
            if known is None:
                raise Refused(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            request.params["query"] = known
        elif hashlib.sha256(query.encode()).hexdigest() != digest:
            raise Refused(
                400, "The sha256Hash does not match the query.", "PERSISTED_QUERY_HASH_MISMATCH"
            )
        elif not self.documents.errors(query):  # else not kept: the app says what is wrong
            normal = self.documents.normal(query)
            assert normal is not None
            self.persisted.put(digest, normal, sys.getsizeof(normal))
        request.params.pop("extensions", None)

    async def _cached(
        self,
        key: str,
        shared: bytes,
        if_none_match: bytes | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve from the cache or compute and keep; ``shared``: ``public`` (HTTP caches
        may keep the answer too) or ``private`` (only the asker's own browser may)."""
        try:
            generation = await self.generation.current()
        except Exception as exc:
            if not is_busy(exc):
                raise
            # The generation cannot be read now (the database restarts): answer uncached;
            # the app maps a busy database to TRY_AGAIN itself, or answers if it can.
            await self.app(scope, receive, with_header(b"cache-control", b"no-store", send))
            return
        entry = self.entries.get(key)
        now = self.clock.now()
        if entry is None or entry.generation != generation or _age(entry, now) >= self.seconds:
            entry, answer = await self._computed(key, generation, now, scope, receive)
            if entry is None:
                status, headers, body = answer
                await respond(
                    send, status, [*without(headers), (b"cache-control", b"no-store")], body
                )
                return
        else:
            self._count("hit")
        left = max(0, math.floor(self.seconds - _age(entry, now)))
        caching = [
            (b"etag", entry.etag),
            (b"cache-control", shared + f", max-age={left}".encode()),
            (b"vary", b"Authorization"),
        ]
        if if_none_match is not None and entry.etag in {
            t.strip() for t in if_none_match.split(b",")
        }:
            await respond(send, 304, caching, b"")
            return
        await respond(send, 200, [(b"content-type", b"application/json"), *caching], entry.body)

    async def _computed(
        self, key: str, generation: int, now: datetime, scope: Scope, receive: Receive
    ) -> tuple[Entry | None, Captured]:
        """A miss: computed once per key and generation at a time (graph/http/coalescing.py);
        a miss that waited gets that answer, or computes its own if it was not kept."""
        (entry, answer), waited = await self.flights.run(
            (key, generation), lambda: self._compute(key, generation, now, scope, receive)
        )
        if waited and entry is None:
            return await self._compute(key, generation, now, scope, receive)
        if waited:
            self._count("coalesced")
        return entry, answer

    async def _compute(
        self, key: str, generation: int, now: datetime, scope: Scope, receive: Receive
    ) -> tuple[Entry | None, Captured]:
        answer = await capture(self.app, scope, receive)
        status, _, body = answer
        if status != 200 or len(body) > MAX_ENTRY_BYTES or _has_errors(body):
            self._count("uncacheable")
            return None, answer
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        entry = Entry(generation, now, body, etag)
        self.entries.put(key, entry, sys.getsizeof(body) + sys.getsizeof(etag))
        self._count("computed")
        return entry, answer

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.cache(outcome)


def _age(entry: Entry, now: datetime) -> float:
    """Seconds since an answer was stored."""
    return (now - entry.stored_at).total_seconds()


def _has_errors(body: bytes) -> bool:
    try:
        value = orjson.loads(body)
    except ValueError:
        return True
    return not isinstance(value, dict) or bool(value.get("errors")) or "data" not in value
