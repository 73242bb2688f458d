"""A small graphql-transport-ws client for the subscription tests.

It speaks the protocol over any socket given two functions (send a text frame;
receive one within a timeout), so the same steps run against the in-process app
(Starlette's test client) and a real `lorashelf serve` (``websocket-client``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import websocket
from starlette.testclient import WebSocketTestSession

PROTOCOL = "graphql-transport-ws"

NOTIFICATION_ADDED = (
    "subscription { notificationAdded { id kind message createdAt dataset { id status } } }"
)
DATASET_CHANGED = (
    "subscription($id: ID!) { datasetChanged(id: $id) "
    "{ id status visibility expiresAt deletedAt deletionReason } }"
)


class Closed(AssertionError):
    """The server closed the socket."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"socket closed: {code} {reason}")
        self.code = code
        self.reason = reason


class Live:
    def __init__(self, send: Callable[[str], None], receive: Callable[[float], str]):
        self._send = send
        self._receive = receive
        self._by_id: dict[str, deque[tuple[datetime, dict[str, Any]]]] = defaultdict(deque)
        self._other: deque[dict[str, Any]] = deque()

    def send(self, message: dict[str, Any]) -> None:
        self._send(json.dumps(message))

    def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """connection_init; returns the server's answer (connection_ack)."""
        self.send({"type": "connection_init", "payload": payload or {}})
        while not self._other:
            self._pump(5)
        answer = self._other.popleft()
        assert answer["type"] == "connection_ack", answer
        return answer

    def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        self.send(
            {
                "id": op_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )

    def complete(self, op_id: str) -> None:
        self.send({"id": op_id, "type": "complete"})

    def _pump(self, timeout: float) -> None:
        message = json.loads(self._receive(timeout))
        arrived = datetime.now(UTC)
        if "id" in message:
            self._by_id[message["id"]].append((arrived, message))
        else:
            self._other.append(message)

    def message(self, op_id: str, timeout: float = 5) -> tuple[datetime, dict[str, Any]]:
        """The next message for an operation, with the moment it arrived."""
        deadline = time.monotonic() + timeout
        while not self._by_id[op_id]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message for {op_id} within {timeout}s")
            try:
                self._pump(left)
            except TimeoutError:
                raise TimeoutError(f"no message for {op_id} within {timeout}s") from None
        return self._by_id[op_id].popleft()

    def data(self, op_id: str, field: str, timeout: float = 5) -> tuple[datetime, dict[str, Any]]:
        """The next result of a subscription (it must have no errors): arrival, value."""
        arrived, message = self.message(op_id, timeout)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message["payload"]
        value: dict[str, Any] = message["payload"]["data"][field]
        return arrived, value

    def errors(self, op_id: str, timeout: float = 5) -> list[dict[str, Any]]:
        """The errors an operation ends with (a `next` with errors, or an `error`)."""
        _, message = self.message(op_id, timeout)
        if message["type"] == "error":
            errors: list[dict[str, Any]] = message["payload"]
            return errors
        assert message["type"] == "next" and message["payload"].get("errors"), message
        errors = message["payload"]["errors"]
        return errors

    def nothing_for(self, op_id: str, seconds: float) -> None:
        """No message for the operation within ``seconds``."""
        try:
            arrived, message = self.message(op_id, seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message for {op_id}: {message}")


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in errors]


def in_process(session: WebSocketTestSession) -> Live:
    """Over Starlette's test client (the app runs in its thread's event loop)."""

    def receive(timeout: float) -> str:
        async def get() -> Any:
            with anyio.fail_after(timeout):
                return await session._send_rx.receive()

        message = session.portal.call(get)
        if message["type"] == "websocket.close":
            raise Closed(message.get("code"), message.get("reason", ""))
        return str(message["text"])

    return Live(session.send_text, receive)


def over_network(url: str) -> tuple[Live, websocket.WebSocket]:
    """To a real server: ``url`` is its http://host:port; returns the client and socket."""
    sock = websocket.create_connection(
        url.replace("http://", "ws://") + "/graphql", subprotocols=[PROTOCOL], timeout=10
    )

    def receive(timeout: float) -> str:
        sock.settimeout(timeout)
        try:
            opcode, data = sock.recv_data()
        except websocket.WebSocketTimeoutException:
            raise TimeoutError from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise Closed(code, data[2:].decode(errors="replace"))
        return data.decode() if isinstance(data, bytes) else str(data)

    return Live(sock.send, receive), sock
