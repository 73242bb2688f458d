"""Bounds on connections themselves, before a request reaches the app. A request's head
(its line and headers) must arrive within ``LORASHELF_HEAD_TIMEOUT`` of the connection's
opening, or of its first byte on a kept-alive connection; and one client address holds
at most ``LORASHELF_MAX_CONNECTIONS_PER_ADDRESS`` connections open at once (a reverse
proxy named in ``LORASHELF_TRUSTED_PROXIES`` is exempt: every client arrives through
it, and it bounds its own clients). Without them a connection that sends nothing, or a
head a byte at a time, holds a file descriptor for ever, and enough of them leave the
server no descriptor for its own files. (Bodies have their own deadline:
:mod:`graph.http.transport`.)

uvicorn's HTTP protocol is extended, not replaced: h11's state says whether a head is
owed, begun or whole."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

PRUNE_EVERY = 1024  # admissions between two sweeps of addresses with no open connection


def _answer(status: str, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


HEAD_TOO_SLOW = _answer("408 Request Timeout", "The request's head did not arrive in time.")
TOO_MANY = _answer("429 Too Many Requests", "Too many connections from this address at once.")


class Connections:
    """The open connections of one server, by client address."""

    def __init__(self, *, per_address: int, trusted_proxies: Iterable[str]):
        self.per_address = per_address
        self.anyone_trusted = False
        self.trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.trusted_names: set[str] = set()
        for entry in trusted_proxies:
            if entry == "*":
                self.anyone_trusted = True
                continue
            try:
                self.trusted_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.trusted_names.add(entry)
        self.open: dict[str, list[asyncio.BaseTransport]] = {}
        self.admitted = 0

    def exempt(self, address: str) -> bool:
        if self.anyone_trusted or address in self.trusted_names:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_networks)

    def admit(self, address: str, transport: asyncio.BaseTransport) -> bool:
        """Count ``transport`` as one of ``address``'s, unless it already holds its
        bound. A connection counts until its transport closes, whatever protocol then
        serves it (a WebSocket included)."""
        if self.exempt(address):
            return True
        self.admitted += 1
        if self.admitted % PRUNE_EVERY == 0:
            self.open = {a: ts for a, ts in self.open.items() if self._held(ts)}
        held = self._held(self.open.get(address, []))
        if len(held) >= self.per_address:
            self.open[address] = held
            return False
        held.append(transport)
        self.open[address] = held
        return True

    def release(self, address: str, transport: asyncio.BaseTransport) -> None:
        held = [t for t in self._held(self.open.get(address, [])) if t is not transport]
        if held:
            self.open[address] = held
        else:
            self.open.pop(address, None)

    @staticmethod
    def _held(transports: list[asyncio.BaseTransport]) -> list[asyncio.BaseTransport]:
        return [t for t in transports if not t.is_closing()]


def bounded_protocol(*, head_timeout: float, connections: Connections) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on each request's head and the
    connections per address bounded (the class to pass as ``uvicorn.run(http=...)``)."""

    class Bounded(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._address = "unknown"

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._address = self.client[0] if self.client else "unknown"
            if not connections.admit(self._address, transport):
                transport.write(TOO_MANY)
                transport.close()
                return
            self._arm()  # a new connection owes its first head at once

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            connections.release(self._address, self.transport)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_head()  # a pipelined head may have begun meanwhile

        def _head_begun(self) -> bool:
            """Bytes of a request's head are in, and not all of it."""
            return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

        def _watch_head(self) -> None:
            # h11 says where the client is: IDLE until a request's head is whole (the
            # bytes so far wait in its buffer), then in its body or done
            if self.transport.get_protocol() is not self or self.transport.is_closing():
                self._disarm()  # upgraded (a WebSocket) or closing: no head is owed
            elif self.conn.their_state is not h11.IDLE:
                self._disarm()  # the head is whole
            elif self._head_begun() and self._head_timer is None:
                self._arm()  # the head is owed from its first byte

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self._head_begun():
                self.transport.write(HEAD_TOO_SLOW)
            self.transport.close()

    return Bounded
