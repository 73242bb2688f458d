"""Rate limits for the account mutations (the ``limits`` library).

In memory by default; shared through Redis when ``LORASHELF_REDIS_URL`` is set, so
that several servers count together. Counting never depends on whether a username
exists, so a limited answer reveals nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from storage.config import Settings

log = logging.getLogger("lorashelf.ratelimit")

REDIS_TIMEOUT = 0.5  # seconds a request may wait on the shared counters
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
        self.login_address: RateLimitItem = parse(limits.login_rate_address)
        self.signup_address: RateLimitItem = parse(limits.signup_rate_address)

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
        """Count one attempt for the address, then (if that allows it) for the username:
        a blocked address cannot use up anybody's allowance or fill memory with names."""
        if not await self._hit(self.login_address, "login-address", address):
            return False
        return await self._hit(self.login_username, "login-user", username.strip().lower()[:64])

    async def allow_signup(self, *, address: str) -> bool:
        return await self._hit(self.signup_address, "signup-address", address)
