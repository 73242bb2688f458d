"""Bounds on connections themselves, below the app: every connection has a deadline
unless the app is reading its request or writing its answer (and those have theirs:
:mod:`graph.http.transport`, :mod:`graph.http.streaming`), and one client address holds
a bounded number of them.

- A request's head (its line and headers) is due within ``LORASHELF_HEAD_TIMEOUT`` of
  the connection's opening, or of its first byte on a kept-alive connection (408, then
  closed; a connection that sent nothing is just closed).
- The rest of a body the server answered early (a refusal) is due within the same time.
- An idle kept-alive connection is closed after ``LORASHELF_KEEP_ALIVE``.
- An answer that waits on a client reading none of it, and a closed connection whose
  last bytes are never read, are dropped after ``LORASHELF_SEND_TIMEOUT``.
- One address (an IPv6 /64 counts as one) holds at most
  ``LORASHELF_MAX_CONNECTIONS_PER_ADDRESS`` open connections, WebSockets included,
  until each is gone (429 beyond). A reverse proxy named in
  ``LORASHELF_TRUSTED_PROXIES`` is exempt: every client arrives through it, and it
  bounds its own.

Without them a connection that sends nothing, a head a byte at a time, or a reader that
never reads holds a file descriptor for ever, and enough of them leave the server none
for its own files. uvicorn's protocols are extended, not replaced: h11's state says
what the connection owes (a head, the rest of a body) or whether the app has it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

REAP_EVERY = 1.0  # seconds between looks for closed connections whose bytes linger
REFUSED_LINGER = 2.0  # seconds a refused connection is read (and dropped) before closing


def _answer(status: str, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


HEAD_TOO_SLOW = _answer("408 Request Timeout", "The request's head did not arrive in time.")
TOO_MANY = _answer("429 Too Many Requests", "Too many connections from this address at once.")


def client_of(address: str) -> str:
    """What one client is, for the bounds per address: its address, or its /64 for IPv6
    (one subscriber's network hands out a /64 or more)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Deadlines:
    head: float  # LORASHELF_HEAD_TIMEOUT
    keep_alive: float  # LORASHELF_KEEP_ALIVE
    send: float  # LORASHELF_SEND_TIMEOUT


class Connections:
    """The open connections of one server: counted by client address until each is
    gone, and closed ones dropped when their last bytes are not read in time."""

    def __init__(self, *, per_address: int, trusted_proxies: Iterable[str], linger: float):
        self.per_address = per_address
        self.linger = linger
        self.anyone_trusted = False
        self.trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in trusted_proxies:  # validated by the configuration
            if entry == "*":
                self.anyone_trusted = True
            else:
                self.trusted.append(ipaddress.ip_network(entry, strict=False))
        self.counted: dict[str, set[asyncio.Transport]] = {}
        self.address_of: dict[asyncio.Transport, str | None] = {}  # None: not counted
        self.closing_since: dict[asyncio.Transport, float] = {}
        self._reaper: asyncio.TimerHandle | None = None

    @staticmethod
    def key(address: str) -> str:
        return client_of(address)

    def exempt(self, address: str) -> bool:
        if self.anyone_trusted:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def admit(self, address: str, transport: asyncio.Transport) -> bool:
        """Count ``transport`` as one of ``address``'s, unless that would pass the bound.
        Every transport is watched until it is gone, counted or not."""
        self._start_reaper()
        if self.exempt(address):
            self.address_of[transport] = None
            return True
        key = self.key(address)
        held = self.counted.setdefault(key, set())
        if len(held) >= self.per_address:
            self.address_of[transport] = None
            return False
        held.add(transport)
        self.address_of[transport] = key
        return True

    def release(self, transport: asyncio.Transport) -> None:
        """``transport`` is gone (its connection lost, whatever protocol served it last)."""
        key = self.address_of.pop(transport, None)
        self.closing_since.pop(transport, None)
        if key is not None:
            held = self.counted.get(key)
            if held is not None:
                held.discard(transport)
                if not held:
                    del self.counted[key]

    def reap(self, now: float) -> None:
        """Drop the connections closed more than ``linger`` seconds ago whose last bytes
        the client has not read (the socket is kept until it does)."""
        for transport in list(self.address_of):
            if not transport.is_closing():
                continue
            since = self.closing_since.setdefault(transport, now)
            if now - since >= self.linger:
                transport.abort()  # connection_lost follows, and releases it

    def _start_reaper(self) -> None:
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(REAP_EVERY, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reap(time.monotonic())
        self._reaper = loop.call_later(REAP_EVERY, self._tick, loop) if self.address_of else None


def bounded_protocols(
    *, deadlines: Deadlines, connections: Connections
) -> tuple[type[H11Protocol], type[asyncio.Protocol]]:
    """uvicorn's HTTP and WebSocket protocols with these bounds (the classes to pass as
    ``uvicorn.run(http=..., ws=...)``)."""
    assert AutoWebSocketsProtocol is not None, "uvicorn needs wsproto or websockets"

    class BoundedHttp(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None
            self._owed: str | None = None  # what the armed timer is for
            self._served = 0  # answers completed on this connection
            self._stalled = False  # the transport's buffer is full: the client reads nothing
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else "unknown"
            if not connections.admit(address, transport):
                self._refused = True
                transport.write(TOO_MANY)
                if transport.can_write_eof():
                    transport.write_eof()  # the answer, then the end: a client closes
                # what it sent meanwhile is read and dropped (closing with it unread
                # would reset the connection and could lose the answer)
                self._timer = self.loop.call_later(REFUSED_LINGER, transport.abort)
                return
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            connections.release(self.transport)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            self._watch()

        def eof_received(self) -> bool | None:  # type: ignore[override]
            """The client sent all it ever will (``shutdown(SHUT_WR)``: ``nc -N``, some
            health checkers). With a whole request in and its answer owed, the
            connection stays open to write the answer, then closes (no request can
            follow); uvicorn closed it at once and the answer was lost. Otherwise it
            closes now: nothing that could be answered is still to come."""
            cycle = self.cycle
            if self._refused or cycle is None or cycle.response_complete:
                return None
            if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE):  # still sending
                return None
            cycle.keep_alive = False  # closed once the answer is written
            return True

        def on_response_complete(self) -> None:
            self._served += 1
            super().on_response_complete()
            self._watch()

        def pause_writing(self) -> None:
            super().pause_writing()
            self._stalled = True
            self._watch()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._stalled = False
            self._watch()

        def _head_begun(self) -> bool:
            """Bytes of a request's head are in, and not all of it."""
            return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

        def _owing(self) -> tuple[str, float] | None:
            """What the connection owes now, and in how long; None while the app has it
            (reading the request or writing the answer: its own deadlines apply)."""
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return None  # closing (the reaper's), or upgraded to a WebSocket
            if self._stalled:
                return "a reader", deadlines.send
            theirs, ours = self.conn.their_state, self.conn.our_state
            if theirs is h11.IDLE:
                if self._head_begun() or self._served == 0:
                    return "a head", deadlines.head
                return "idle", deadlines.keep_alive
            if theirs is h11.SEND_BODY and ours in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                return "the rest of an answered body", deadlines.head
            return None

        def _watch(self) -> None:
            if self._refused:
                return  # its own end is set: REFUSED_LINGER
            owing = self._owing()
            if owing is None:
                self._disarm()
            elif self._timer is None or owing[0] != self._owed:
                self._disarm()
                self._owed = owing[0]  # not moved by further bytes of the same thing
                self._timer = self.loop.call_later(owing[1], self._late)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._owed = None

        def _late(self) -> None:
            owed, self._timer = self._owed, None
            owing = self._owing()
            if owing is None or owing[0] != owed:
                self._watch()
                return
            if owed == "a reader":
                self.transport.abort()  # its queued bytes would keep the socket
            elif owed == "a head" and self._head_begun():
                self.transport.write(HEAD_TOO_SLOW)
                self.transport.close()
            else:
                self.transport.close()

    class BoundedWebSocket(AutoWebSocketsProtocol):  # type: ignore[misc, valid-type]
        """A WebSocket counts against its address until it is gone (it took over an
        HTTP connection's transport)."""

        def connection_lost(self, exc: Exception | None) -> None:
            connections.release(self.transport)
            super().connection_lost(exc)

    return BoundedHttp, BoundedWebSocket
