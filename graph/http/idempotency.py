"""``Idempotency-Key`` on ``/graphql``: a mutation request sent with one is carried out
at most once; the same request with the same key, from the same viewer, within 24
hours gets the first answer again, byte for byte (with ``Idempotent-Replayed: true``),
and a different request under a used key is refused (422 ``IDEMPOTENCY_KEY_REUSED``).

The key belongs to the signed-in viewer, or for an anonymous request (``signUp``,
``logIn``) to the client's address. The bookkeeping (claims, sealed answers, the mark
in the change's own transaction) is :mod:`storage.idempotency`'s; this module reads the
request, runs it once through the GraphQL app, stores the answer before sending it,
and answers retries. Queries ignore the header (they change nothing).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.types import Message, Receive, Scope, Send

from graph.http.logs import current_request_id
from storage import idempotency
from storage.db.connection import is_busy
from storage.errors import TryAgain
from storage.system.clock import Clock

HEADER = b"idempotency-key"
RESPONSE_HEADER = b"idempotent-replayed"

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def key_of(scope: Scope) -> str | None:
    """The request's Idempotency-Key, if it sent one (a POST only: GET runs queries)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    for name, value in scope["headers"]:
        if name.lower() == HEADER:
            return str(value.decode("latin-1").strip())
    return None


async def _error(send: Send, status: int, code: str, message: str, **headers: str) -> None:
    """A refusal in the shape of any GraphQL error."""
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    await _send(
        send, status, body, [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    )


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"private, no-store"),
        (b"x-request-id", current_request_id().encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Captured:
    """A response held back until its answer is stored."""

    def __init__(self) -> None:
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def status(self) -> int:
        return int(self.start["status"]) if self.start is not None else 500

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def deliver(self, send: Send) -> None:
        if self.start is None:
            return
        await send(self.start)
        await send({"type": "http.response.body", "body": self.body})


class Idempotent:
    """Runs mutation requests that carry an ``Idempotency-Key`` at most once."""

    def __init__(self, *, secret: str, clock: Clock, max_tokens: int):
        self.keys = idempotency.Keys(secret)
        self.clock = clock
        self.max_tokens = max_tokens

    async def __call__(
        self,
        app: App,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        key: str,
        user_id: int | None,
    ) -> None:
        body = await _read(receive)
        replay = _replayer(body, receive)
        request = self._request(body, key=key, scope=scope, user_id=user_id)
        if request is None:  # not a mutation (or not a request at all): run it as it is
            await app(scope, replay, send)
            return
        if not idempotency.valid_key(key):
            await _error(
                send,
                400,
                "INVALID_IDEMPOTENCY_KEY",
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters "
                "(a UUID, say).",
            )
            return
        try:
            outcome = await idempotency.claim(request, now=self.clock.now())
        except Exception as exc:
            if not is_busy(exc):
                raise
            await _error(send, 503, "TRY_AGAIN", TryAgain().message, retry_after="1")
            return
        if isinstance(outcome, idempotency.Claim):
            await self._run_once(app, scope, replay, send, request, outcome)
        elif isinstance(outcome, idempotency.Replay):
            await _send(send, outcome.status, outcome.body, [(RESPONSE_HEADER, b"true")])
        elif isinstance(outcome, idempotency.Reused):
            await _error(
                send,
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used within the last 24 hours for another request "
                "(another document, variables or operation name): use a new key for a new "
                "request.",
            )
        elif isinstance(outcome, idempotency.Lost):
            await _error(
                send,
                409,
                "IDEMPOTENCY_ANSWER_LOST",
                "The request sent with this Idempotency-Key was carried out, but its answer "
                "was lost (the server stopped before sending it). Query the result instead "
                "of sending it again.",
            )
        else:
            await _error(
                send,
                409,
                "IDEMPOTENCY_KEY_IN_USE",
                "A request with this Idempotency-Key is still being answered: retry in a "
                "moment to get its answer.",
                retry_after="1",
            )

    async def _run_once(
        self,
        app: App,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: idempotency.Request,
        claim: idempotency.Claim,
    ) -> None:
        captured = Captured()
        token = idempotency.current.set(claim)
        try:
            await app(scope, receive, captured.send)
        except Exception:
            await asyncio.shield(idempotency.settle(request, claim, status=500, body=b""))
            raise
        finally:
            idempotency.current.reset(token)
        # Stored before it is sent: a client that got the answer finds it when it retries.
        status, body = captured.status, captured.body
        await asyncio.shield(idempotency.settle(request, claim, status=status, body=body))
        await captured.deliver(send)

    def _request(
        self, body: bytes, *, key: str, scope: Scope, user_id: int | None
    ) -> idempotency.Request | None:
        try:
            payload: Any = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict):
            return None
        document = payload.get("query")
        operation = payload.get("operationName")
        if isinstance(document, str):
            kind = operation_kind(
                document, operation if isinstance(operation, str) else None, self.max_tokens
            )
            if kind in (OperationType.QUERY, OperationType.SUBSCRIPTION):
                return None
        if user_id is not None:
            owner = f"user:{user_id}"
        else:
            client = scope.get("client")
            owner = f"address:{client[0] if client else 'unknown'}"
        canonical = idempotency.canonical_request(document, payload.get("variables"), operation)
        return idempotency.Request(self.keys, owner, user_id, key, canonical)


def operation_kind(
    document: str, operation_name: str | None, max_tokens: int
) -> OperationType | None:
    """The kind of the operation a request runs; None when the document does not parse
    or names no single operation (the GraphQL app says what is wrong)."""
    try:
        parsed = parse(document, max_tokens=max_tokens)
    except (GraphQLError, RecursionError):
        return None
    chosen = [
        d
        for d in parsed.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name is not None and d.name.value == operation_name))
    ]
    return chosen[0].operation if len(chosen) == 1 else None


async def _read(receive: Receive) -> bytes:
    """The whole (small, already bounded: graph.http.transport) request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replayer(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
