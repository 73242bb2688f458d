"""Rate limits for the account mutations, reports and e-mail (the ``limits`` library).

Log-in attempts are counted per client address and per (username, address): one
address cannot guess much, and what it does cannot lock anybody out. A client is its
address, or for IPv6 its /64 (``graph.http.connections.client_of``, as for the bounds
on connections and requests): one subscriber holds a /64 or more, and every address in
it counting apart would give one guesser 2^64 allowances. Per username
alone (all addresses together) the threshold is far higher and exceeding it slows
attempts down instead of refusing them: the attempts for that username are taken one
at a time, each at least ``SLOWDOWN`` seconds, so a distributed guesser is throttled
while the owner, from any address, still gets in.

In memory by default; shared through Redis when ``LORASHELF_REDIS_URL`` is set, so
that several servers count together (the slowdown itself is per process). Counting
never depends on whether a username exists, so a limited answer reveals nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from graph.http.connections import client_of
from storage.config.settings import Settings

log = logging.getLogger("lorashelf.ratelimit")

REDIS_TIMEOUT = 0.5  # seconds a request may wait on the shared counters
SLOWDOWN = 1.0  # seconds each attempt for a username over its all-addresses threshold takes
SLOW_NAMES = 10_000  # usernames being slowed down at once (per process)
RETRY_AFTER = 15.0  # seconds of counting in memory after the shared store failed


class RateLimiter:
    def __init__(self, settings: Settings):
        limits = settings.limits
        storage: Storage = MemoryStorage()
        if settings.redis_url:
            found = storage_from_string(
                "async+" + settings.redis_url,
                implementation="redispy",
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
            assert isinstance(found, Storage)
            storage = found
        self._strategy = MovingWindowRateLimiter(storage)
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._shared_down_until = 0.0
        self.login_username: RateLimitItem = parse(limits.login_rate_username)
        self.login_username_slowdown: RateLimitItem = parse(limits.login_rate_username_slowdown)
        self.login_address: RateLimitItem = parse(limits.login_rate_address)
        self.signup_address: RateLimitItem = parse(limits.signup_rate_address)
        self.report_user: RateLimitItem = parse(limits.report_rate)
        self.email_user: RateLimitItem = parse(limits.email_rate)
        self._slow: OrderedDict[str, asyncio.Lock] = OrderedDict()

    async def _hit(self, item: RateLimitItem, *keys: str) -> bool:
        if time.monotonic() >= self._shared_down_until:
            try:
                return await asyncio.wait_for(
                    self._strategy.hit(item, *keys), timeout=REDIS_TIMEOUT
                )
            except Exception as exc:  # Redis down or hanging: keep limiting, per process
                self._shared_down_until = time.monotonic() + RETRY_AFTER
                log.warning("rate-limit store unavailable (%r); counting in memory", exc)
        return await self._fallback.hit(item, *keys)

    async def allow_login(self, *, username: str, address: str) -> bool:
        """Count one attempt for the address, then (if that allows it) for the username
        from that address: a blocked address cannot use up anybody's allowance or fill
        memory with names. Then, for the username from everywhere, a much higher
        threshold past which attempts are slowed down, never refused."""
        address = client_of(address)
        if not await self._hit(self.login_address, "login-address", address):
            return False
        name = username.strip().lower()[:64]
        if not await self._hit(self.login_username, "login-user-address", name, address):
            return False
        if not await self._hit(self.login_username_slowdown, "login-user", name):
            await self._slow_down(name)
        return True

    async def _slow_down(self, name: str) -> None:
        """Take a hot username's attempts one at a time, each at least SLOWDOWN seconds
        (a bounded table of locks: the least recently used is forgotten)."""
        lock = self._slow.pop(name, None) or asyncio.Lock()
        self._slow[name] = lock
        while len(self._slow) > SLOW_NAMES:
            self._slow.popitem(last=False)
        async with lock:
            await asyncio.sleep(SLOWDOWN)

    async def allow_signup(self, *, address: str) -> bool:
        return await self._hit(self.signup_address, "signup-address", client_of(address))

    async def allow_report(self, *, user_id: int) -> bool:
        """``reportContent`` per reporter (counted before the subject is looked up, so a
        hidden subject and a missing one count alike)."""
        return await self._hit(self.report_user, "report-user", str(user_id))

    async def allow_email(self, *, user_id: int) -> bool:
        """``setEmail`` per account: each one sends a message to an address of its
        choosing."""
        return await self._hit(self.email_user, "email-user", str(user_id))
