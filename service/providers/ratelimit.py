"""A rate limiter whose window lives in Redis, so every worker process shares one budget."""

import asyncio
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import cast

from anyio import CancelScope
from limits import RateLimitItem
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from service.errors import BrokerUnavailableError

MIN_WAIT_SECONDS = 0.01
REDIS_TRIES = 3
REDIS_RETRY_SECONDS = 0.2
# Waiting a little past the window's reset absorbs the delay between the moment we count a
# request and the moment the provider sees it: 2% of the window, at least 50 ms (1.2 s for
# Discogs' minute, 50 ms for MusicBrainz' second).
SAFETY_MARGIN_SHARE = 0.02
MIN_SAFETY_MARGIN_SECONDS = 0.05
# The running job's time limit (set by the runner). Time spent waiting for a shared budget is
# added to it before each wait: a job's limit covers its own work, never its place in the
# provider's queue, so a busy budget cannot time a job out (and send it round again).
JOB_TIME_LIMIT: ContextVar[CancelScope | None] = ContextVar("job_time_limit", default=None)


@dataclass(frozen=True)
class RateLimit:
    """A provider's request budget, shared by every worker, and the setting that sizes it."""

    provider: str  # as messages name it
    key: str  # the window's key in the limiter storage
    setting: str  # the `Settings` field that holds the limit ("60/minute")


MUSICBRAINZ = RateLimit("MusicBrainz", "musicbrainz", "musicbrainz_rate_limit")
DISCOGS = RateLimit("Discogs", "discogs", "discogs_rate_limit")


class SharedRateLimiter:
    """Wait until a request fits in a moving window shared through Redis."""

    def __init__(self, storage_uri: str, item: RateLimitItem, key: str) -> None:
        # An `async+` URI always makes an async storage; the factory's type cannot say so.
        self._storage = cast(
            AsyncStorage, storage_from_string(storage_uri, implementation="redispy")
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._item = item
        self._key = key
        self._margin = max(item.get_expiry() * SAFETY_MARGIN_SHARE, MIN_SAFETY_MARGIN_SECONDS)

    @property
    def _pause_key(self) -> str:
        return f"{self._key}/paused"

    async def acquire(self) -> None:
        """Block until the provider is not paused and one more request is allowed; count it."""
        # A Redis restart leaves dead connections in the pool, each dropped at its first
        # error: a few quick tries ride over them, while a real outage still fails at once.
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((RedisError, OSError)),
            stop=stop_after_attempt(REDIS_TRIES),
            wait=wait_fixed(REDIS_RETRY_SECONDS),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._acquire_once()
        except (RedisError, OSError) as exc:
            # The budget lives in Redis: without it no request may go out. A blip, not a bug.
            raise BrokerUnavailableError(
                f"rate limit {self._key}: Redis unavailable: {exc}"
            ) from exc

    async def _acquire_once(self) -> None:
        while True:
            # Checked before every try: a pause set while this job waited for the window
            # (another worker was told 503) holds it too.
            if (paused := await self._paused_for()) > 0:
                await _wait(paused)
            elif await self._limiter.hit(self._item, self._key):
                return
            else:
                stats = await self._limiter.get_window_stats(self._item, self._key)
                reset = stats.reset_time - time.time() + self._margin
                await _wait(max(reset, MIN_WAIT_SECONDS))

    async def pause(self, seconds: float) -> None:
        """Hold every worker's requests to this provider for `seconds` (it said 503 or 429).

        The pause lives beside the window, so all workers stop, not only the one that was
        told; a longer pause replaces a shorter one, never the reverse.
        """
        if not math.isfinite(seconds) or seconds <= 0:
            return
        # Whole seconds: the storage's expiry unit (and Retry-After's).
        seconds = math.ceil(seconds)
        until = time.time() + seconds
        try:
            if await self._paused_for() + time.time() >= until:
                return
            await self._storage.clear(self._pause_key)
            await self._storage.incr(self._pause_key, seconds)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailableError(
                f"rate limit {self._key}: Redis unavailable: {exc}"
            ) from exc

    async def _paused_for(self) -> float:
        """Seconds until the provider's pause ends (0 when it is not paused)."""
        if not await self._storage.get(self._pause_key):
            return 0.0
        return max(await self._storage.get_expiry(self._pause_key) - time.time(), 0.0)

    async def close(self) -> None:
        """Close the Redis connections (limits exposes no close of its own)."""
        bridge = getattr(self._storage, "bridge", None)
        if isinstance(bridge, RedispyBridge):
            await bridge.storage.aclose()

    async def reset(self) -> None:
        """Forget every request counted so far, and any pause (tests and demos start clean)."""
        await self._limiter.clear(self._item, self._key)
        await self._storage.clear(self._pause_key)


async def _wait(seconds: float) -> None:
    """Sleep for a provider's budget, the running job's time limit moved on by as much."""
    limit = JOB_TIME_LIMIT.get()
    if limit is not None:
        limit.deadline += seconds
    await asyncio.sleep(seconds)
