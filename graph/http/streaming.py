"""A download's body as it is sent, watched: the one place a download in flight is ended.

:class:`WatchedBody` sends a range of bytes and stops as soon as any of these holds:

- **access ended**: the grant's re-check (``storage.downloads.still_allowed``: the
  sign-in the link was minted for, and the privacy rule for its viewer) no longer
  allows these bytes. It runs every ``RECHECK`` seconds of the stream, and at once
  when the live-update bus says the object's dataset changed. So any end of access
  the rule knows stops every stream within ``RECHECK`` plus one database read
  (<= 1 s): a window's end, deletion, a dataset made private, a version or model
  deleted, a sign-out, and whatever end of access is added to the rule later;
- **the window's end**: a private dataset's ``expiresAt`` on the clock, exactly;
- **a reader too slow**: after ``LORASHELF_DOWNLOAD_GRACE`` a stream must average
  ``LORASHELF_DOWNLOAD_MIN_RATE``; a send that has waited past that is abandoned, so a
  reader that stops reading cannot hold the stream (and its access) open;
- **the client went**.

A stream stopped early closes the connection short of its ``Content-Length``, so the
client knows it did not get the whole range. Whatever happened, the bytes actually sent
are told to ``on_end`` afterwards, in a task of its own that a disconnect cannot
cancel (``storage.downloads.served`` counts a download there, in one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from graph.http import logs
from storage.system.clock import Clock

log = logging.getLogger("lorashelf.downloads")

RECHECK = 0.5  # seconds between a stream's re-checks of its access (a database read)

_ending: set[asyncio.Task[None]] = set()  # on_end tasks running: kept from the collector


@dataclass
class Watch:
    """What ends a stream besides its last byte."""

    still_allowed: Callable[[datetime], Awaitable[bool]]  # the grant, re-checked now
    clock: Clock
    cut_at: datetime | None  # a private dataset's window end
    # While the stream runs: an event the live-update bus sets when the object changes.
    changes: Callable[[], AbstractContextManager[asyncio.Event | None]]
    min_rate: int  # bytes a second, after the grace
    grace: float
    changed: asyncio.Event | None = None


class WatchedBody:
    """An ASGI response: the status and headers, then ``chunks`` until they end or the
    :class:`Watch` ends the stream; ``on_end(bytes_sent, complete)`` afterwards."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        status: int,
        headers: list[tuple[bytes, bytes]],
        watch: Watch,
        on_end: Callable[[int, bool], Awaitable[None]] | None = None,
    ):
        self.chunks = chunks
        self.status = status
        self.headers = headers
        self.watch = watch
        self.on_end = on_end
        self.ended: asyncio.Event = asyncio.Event()
        self.reason = ""

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent, complete = 0, False
        with self.watch.changes() as changed:
            self.watch.changed = changed
            watching = asyncio.create_task(self._watch())
            listening = asyncio.create_task(self._listen(receive))
            try:
                await send(
                    {"type": "http.response.start", "status": self.status, "headers": self.headers}
                )
                sent, complete = await self._send_all(send)
            finally:
                for task in (watching, listening):
                    task.cancel()
                await asyncio.gather(watching, listening, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.chunks.aclose()  # type: ignore[attr-defined]
                if self.on_end is not None:
                    # A task of its own: a disconnect, or shutdown, cannot cut it in half.
                    task = asyncio.create_task(self._told(self.on_end, sent, complete))
                    _ending.add(task)
                    task.add_done_callback(_ending.discard)
                    await asyncio.shield(task)
        if not complete:
            logs.ended_on_purpose()  # uvicorn then closes the connection without a word
            if self.reason != "the client went":
                log.info("download cut: %s (%d bytes sent)", self.reason, sent)

    @staticmethod
    async def _told(
        on_end: Callable[[int, bool], Awaitable[None]], sent: int, complete: bool
    ) -> None:
        try:
            await on_end(sent, complete)
        except Exception:  # noqa: BLE001 - the bytes are sent; what follows cannot fail them
            log.exception("download: what was sent could not be recorded")

    async def _send_all(self, send: Send) -> tuple[int, bool]:
        """Send every chunk while nothing ends the stream: (bytes sent, complete)."""
        watch = self.watch
        started = time.monotonic()
        sent = 0
        async for chunk in self.chunks:
            if watch.cut_at is not None and watch.clock.now() >= watch.cut_at:
                self.end("the dataset's window ended")
            if self.ended.is_set():
                return sent, False
            allowance = watch.grace + sent / watch.min_rate - (time.monotonic() - started)
            sending = asyncio.ensure_future(
                send({"type": "http.response.body", "body": chunk, "more_body": True})
            )
            ending = asyncio.ensure_future(self.ended.wait())
            done, _ = await asyncio.wait(
                {sending, ending}, timeout=max(allowance, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
            ending.cancel()
            if sending not in done:  # access ended meanwhile, or the reader is too slow
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                self.end(f"its reader fell below {watch.min_rate} bytes a second")
                return sent, False
            sending.result()
            await asyncio.sleep(0)  # a disconnect already seen makes that send a no-op
            if self.reason == "the client went":
                return sent, False
            sent += len(chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return sent, True

    async def _watch(self) -> None:
        """Until the stream ends: wake every ``RECHECK``, at the window's end, and when
        the object changes; then ask again whether the grant still allows the bytes."""
        watch = self.watch
        while True:
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.sleep(RECHECK))]
            if watch.cut_at is not None:
                left = (watch.cut_at - watch.clock.now()).total_seconds()
                waits.append(asyncio.ensure_future(watch.clock.sleep(max(left, 0.0))))
            if watch.changed is not None:
                waits.append(asyncio.ensure_future(watch.changed.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if watch.changed is not None:
                watch.changed.clear()
            now = watch.clock.now()
            if watch.cut_at is not None and now >= watch.cut_at:
                self.end("the dataset's window ended")
                return
            try:
                allowed = await watch.still_allowed(now)
            except Exception:  # noqa: BLE001 - a failed re-check ends the stream: fail closed
                log.exception("download: access could not be re-checked; the stream ends")
                allowed = False
            if not allowed:
                self.end("access ended")
                return

    async def _listen(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.end("the client went")
                return
