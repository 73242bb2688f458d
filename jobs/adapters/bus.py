"""The live-update bus: "something changed" signals for GraphQL subscriptions.

A service tells the runtime's bus (``storage.runtime.Bus``) after a change commits:
a notification was stored for user *n*, dataset *n* changed. A signal carries only
that id; a subscriber that hears it re-reads what it shows through the normal
lookups, as its own viewer, so nothing can leak through the bus.

- :class:`Hub`: the subscribers of one process, each waiting on an
  :class:`asyncio.Event` for the topics it watches. A poke coalesces: however many
  signals arrive, the subscriber reads once.
- :class:`LocalBus`: without ``LORASHELF_REDIS_URL``, one process does everything, and
  a signal pokes the hub directly.
- :class:`RedisBus`: with Redis, a signal is published on one pub/sub channel; every
  ``serve`` listens and pokes its own hub, so a reminder written by ``lorashelf
  worker`` reaches a subscriber connected to any ``serve``. Publishing never raises:
  if Redis is down the signal pokes this process's hub only (the subscriptions of
  other processes catch up at their next signal). When its listener (re)connects,
  every local subscriber is poked once to re-read what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

import redis.asyncio as aioredis

from storage.config.settings import Settings
from storage.errors import ServiceError

log = logging.getLogger("lorashelf.bus")

CHANNEL = "lorashelf:live"
USER = "user"  # a notification was stored for this user
DATASET = "dataset"  # this dataset changed (status, window, deletion)
TOPICS = (USER, DATASET)
PUBLISH_TIMEOUT = 2.0  # seconds a publish may wait on Redis before giving up
RECONNECT_FIRST = 0.5  # seconds before the listener tries Redis again, doubling ...
RECONNECT_MAX = 10.0  # ... up to this

Topic = tuple[str, int]


class Hub:
    """This process's subscribers, by topic."""

    def __init__(self) -> None:
        self._waiting: dict[Topic, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def listen(self, *topics: Topic) -> Iterator[asyncio.Event]:
        """An event set whenever one of ``topics`` is poked (clear it, then re-read)."""
        event = asyncio.Event()
        for topic in topics:
            self._waiting.setdefault(topic, set()).add(event)
        try:
            yield event
        finally:
            for topic in topics:
                waiting = self._waiting.get(topic)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiting[topic]

    def poke(self, kind: str, key: int) -> None:
        for event in self._waiting.get((kind, key), ()):
            event.set()

    def poke_all(self) -> None:
        for waiting in self._waiting.values():
            for event in waiting:
                event.set()

    @property
    def listening(self) -> int:
        """How many subscriber registrations are open (for tests and logs)."""
        return sum(len(waiting) for waiting in self._waiting.values())


class TooManySubscriptions(ServiceError):
    code = "TOO_MANY_SUBSCRIPTIONS"


class Subscribers:
    """How many subscriptions each user holds open on this process, bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[int] = Counter()

    @contextlib.contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        if self.open[user_id] >= self.limit:
            raise TooManySubscriptions(
                f"You have {self.limit} live subscriptions open already; close one first."
            )
        self.open[user_id] += 1
        try:
            yield
        finally:
            self.open[user_id] -= 1
            if self.open[user_id] <= 0:
                del self.open[user_id]


def encode(kind: str, key: int) -> str:
    return f"{kind}:{key}"


def decode(message: bytes | str) -> Topic | None:
    """A signal from the channel, or None for anything malformed."""
    text = message.decode() if isinstance(message, bytes) else message
    kind, _, key = text.partition(":")
    if kind not in TOPICS or not key.isdigit():
        return None
    return kind, int(key)


class LocalBus:
    """One process: a signal pokes the hub directly."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def notification_added(self, user_id: int) -> None:
        self.hub.poke(USER, user_id)

    async def dataset_changed(self, dataset_id: int) -> None:
        self.hub.poke(DATASET, dataset_id)

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisBus:
    """Signals through Redis pub/sub. With a ``hub`` (``serve``) it also listens and
    pokes it; without one (``lorashelf worker``) it only publishes."""

    def __init__(self, url: str, hub: Hub | None) -> None:
        self.hub = hub
        self._client: aioredis.Redis = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        self._listener: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while the listener is subscribed

    async def notification_added(self, user_id: int) -> None:
        await self._publish(USER, user_id)

    async def dataset_changed(self, dataset_id: int) -> None:
        await self._publish(DATASET, dataset_id)

    async def _publish(self, kind: str, key: int) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._client.publish(CHANNEL, encode(kind, key))
        except Exception as exc:  # noqa: BLE001 - a lost signal must not fail the change
            log.warning(
                "could not publish %s %s to Redis (%s); local subscribers only", kind, key, exc
            )
            if self.hub is not None:
                self.hub.poke(kind, key)

    def start(self) -> None:
        if self.hub is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(self.hub), name="lorashelf-bus")

    async def _listen(self, hub: Hub) -> None:
        delay = RECONNECT_FIRST
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected.set()
                delay = RECONNECT_FIRST
                hub.poke_all()  # whatever was signalled while not subscribed: re-read
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    topic = decode(message["data"])
                    if topic is not None:
                        hub.poke(*topic)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: listen again later
                if self.connected.is_set():
                    log.warning("live updates: lost Redis (%s); reconnecting", exc)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        with contextlib.suppress(Exception):
            await self._client.aclose()


def open_bus(settings: Settings, hub: Hub | None) -> LocalBus | RedisBus | None:
    """The bus for this configuration: Redis pub/sub when ``LORASHELF_REDIS_URL`` is set,
    else the hub itself; None when there is neither Redis nor a hub (nobody to tell)."""
    if settings.redis_url:
        return RedisBus(settings.redis_url, hub)
    if hub is not None:
        return LocalBus(hub)
    return None
