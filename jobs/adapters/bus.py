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
  if Redis is down or hangs the signal pokes this process's hub only, and once a
  publish has failed none waits on Redis until it is heard again (by the listener in
  ``serve``, by a pinger in ``lorashelf worker``, every ``HEALTH_EVERY``). The listener
  pings Redis on its connection every ``HEALTH_EVERY`` seconds: a Redis that answers
  nothing for ``HEALTH_TIMEOUT`` (a hung one: stopped, or overloaded, accepting
  connections and answering nothing) is a lost one, as a closed connection is. While
  it is lost, every local subscriber is poked every ``AWAY_POLL`` seconds to re-read
  from the database what the signals it cannot hear would have told; when the listener
  (re)connects, once more. So what is written while Redis is down or hung reaches live
  subscribers within seconds, and nothing written then is missed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

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
CONNECT_TIMEOUT = 2.0  # seconds (re)subscribing may take
HEALTH_EVERY = 1.0  # seconds between the listener's pings
HEALTH_TIMEOUT = 3.0  # seconds without a word from Redis (message or pong): it hangs
AWAY_POLL = 2.0  # seconds between re-reads by every subscriber while Redis is lost

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


def topics(*, users: Sequence[int] = (), datasets: Sequence[int] = ()) -> list[Topic]:
    """The signals for ``users`` (a notification each) and ``datasets`` (changed), each
    once."""
    return list(dict.fromkeys([*((USER, u) for u in users), *((DATASET, d) for d in datasets)]))


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

    async def signal(self, *, users: Sequence[int] = (), datasets: Sequence[int] = ()) -> None:
        for topic in topics(users=users, datasets=datasets):
            self.hub.poke(*topic)

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
        self._poller: asyncio.Task[None] | None = None
        # Whether Redis is lost (down or hung): publishing then does not wait on it. Set
        # by a failure; cleared when the listener (serve) or the pinger (worker) hears it.
        self.lost = False
        self.connected = asyncio.Event()  # set while the listener is subscribed

    async def notification_added(self, user_id: int) -> None:
        await self._publish([(USER, user_id)])

    async def dataset_changed(self, dataset_id: int) -> None:
        await self._publish([(DATASET, dataset_id)])

    async def signal(self, *, users: Sequence[int] = (), datasets: Sequence[int] = ()) -> None:
        await self._publish(topics(users=users, datasets=datasets))

    async def _publish(self, signals: list[Topic]) -> None:
        """Publish each signal (one message each, in one round trip)."""
        if not signals:
            return
        try:
            if self.lost:
                raise ConnectionError("Redis is lost")  # nobody waits on it meanwhile
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                async with self._client.pipeline(transaction=False) as pipe:
                    for kind, key in signals:
                        pipe.publish(CHANNEL, encode(kind, key))
                    await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - a lost signal must not fail the change
            if not self.lost:
                kind, key = signals[0]
                more = f" and {len(signals) - 1} more" if len(signals) > 1 else ""
                log.warning(
                    "could not publish %s %s%s to Redis (%s); local subscribers only (the "
                    "other processes' re-read while their listeners cannot hear)",
                    kind,
                    key,
                    more,
                    _describe(exc),
                )
                self.lost = True  # until the listener or the pinger hears Redis again
            if self.hub is not None:
                for kind, key in signals:
                    self.hub.poke(kind, key)

    def start(self) -> None:
        if self._listener is not None:
            return
        if self.hub is None:  # publishing only: a pinger finds a hang before a publish waits
            self._listener = asyncio.create_task(self._ping(), name="lorashelf-bus-ping")
            return
        self._listener = asyncio.create_task(self._listen(self.hub), name="lorashelf-bus")
        self._poller = asyncio.create_task(
            self._poll_while_away(self.hub), name="lorashelf-bus-away"
        )

    async def _ping(self) -> None:
        """Whether Redis answers, every ``HEALTH_EVERY`` seconds (``lost`` otherwise)."""
        while True:
            try:
                async with asyncio.timeout(HEALTH_TIMEOUT):
                    await self._client.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away or hung
                if not self.lost:
                    log.warning("live updates: lost Redis (%s)", _describe(exc))
                self.lost = True
            else:
                self.lost = False
            await asyncio.sleep(HEALTH_EVERY)

    async def _listen(self, hub: Hub) -> None:
        delay = RECONNECT_FIRST
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await pubsub.subscribe(CHANNEL)
                    await pubsub.ping()
                    while (await pubsub.get_message(timeout=CONNECT_TIMEOUT)) is None:
                        pass  # until the pong: subscribed, and Redis answers
                if not self.connected.is_set():
                    log.info("live updates: listening on Redis")
                self.connected.set()
                self.lost = False
                delay = RECONNECT_FIRST
                hub.poke_all()  # whatever was signalled while not subscribed: re-read
                await self._hear(pubsub, hub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away or hung: listen again later
                if self.connected.is_set():
                    log.warning("live updates: lost Redis (%s); reconnecting", _describe(exc))
                self.connected.clear()
                self.lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _hear(self, pubsub: PubSub, hub: Hub) -> None:
        """Poke ``hub`` with every signal, pinging Redis when it is quiet; raises
        ``TimeoutError`` when it has said nothing (no signal, no pong) for too long."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = heard
        while True:
            now = loop.time()
            if now - heard >= HEALTH_TIMEOUT:
                raise TimeoutError(f"Redis answered nothing for {now - heard:.1f}s (hung)")
            if now - pinged >= HEALTH_EVERY:
                async with asyncio.timeout(CONNECT_TIMEOUT):  # a write: the kernel takes it
                    await pubsub.ping()
                pinged = now
            async with asyncio.timeout(HEALTH_EVERY + CONNECT_TIMEOUT):
                message = await pubsub.get_message(timeout=HEALTH_EVERY)
            if message is None:
                continue
            heard = loop.time()
            self.lost = False  # Redis answers (a publish that failed meanwhile: a blip)
            if message.get("type") != "message":
                continue  # a pong
            topic = decode(message["data"])
            if topic is not None:
                hub.poke(*topic)

    async def _poll_while_away(self, hub: Hub) -> None:
        """While the listener is not listening (Redis down, hung, or not yet reached),
        every subscriber re-reads every ``AWAY_POLL`` seconds: no signal reaches it."""
        while True:
            await asyncio.sleep(AWAY_POLL)
            if not self.connected.is_set():
                hub.poke_all()

    async def close(self) -> None:
        for task in (self._listener, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = self._poller = None
        with contextlib.suppress(Exception):
            await self._client.aclose()


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def open_bus(settings: Settings, hub: Hub | None) -> LocalBus | RedisBus | None:
    """The bus for this configuration: Redis pub/sub when ``LORASHELF_REDIS_URL`` is set,
    else the hub itself; None when there is neither Redis nor a hub (nobody to tell)."""
    if settings.redis_url:
        return RedisBus(settings.redis_url, hub)
    if hub is not None:
        return LocalBus(hub)
    return None
