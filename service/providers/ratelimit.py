"""A provider's request budget, shared by every worker through Redis, kept at the provider.

A limit such as "4/second" means: the provider must never see more than 4 requests arrive
in any one-second window. Counting requests when they leave the client is not enough: a
request counted at 0.00 s may be held back by a busy event loop or a full connection pool
and arrive at 0.30 s, next to the following window's requests (measured: 9 arrivals in a
1-s window against 5 allowed, and 503s at a client limit equal to the provider's).

So the budget is N slots. A request takes a slot before it goes out and keeps it until one
window has passed since the latest moment it can have reached the provider: when it was
written to the socket (httpx's `trace` extension says when) plus a small allowance for the
network, and never later than its answer, since a provider cannot answer before it counts.
Then any N+1 requests inside one window at the provider is impossible: the last of them to
leave would have found the other N holding every slot. Provider-side moving windows
(MusicBrainz, Discogs) are hand-written here because no kept library (limits,
pyrate-limiter, aiolimiter) frees a slot on an event after the request: they count at the
moment of asking only.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio import CancelScope
from limits import RateLimitItem
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from service.errors import BrokerUnavailableError, ConfigurationError
from service.metrics import BUDGET_REQUESTS, BUDGET_WAIT_SECONDS

logger = logging.getLogger(__name__)

MIN_WAIT_SECONDS = 0.01
REDIS_TRIES = 3
REDIS_RETRY_SECONDS = 0.2
# The network's share of a request's way to the provider, after it was written to the
# socket: 2% of the window, at least 50 ms (1.2 s for Discogs' minute, 50 ms for
# MusicBrainz' second). A quick answer bounds it tighter still.
NETWORK_ALLOWANCE_SHARE = 0.02
MIN_NETWORK_ALLOWANCE_SECONDS = 0.05
# A slot whose holder died mid-request (kill -9) is free again this long after it was taken,
# plus the window: a request still running by then has long reached the provider.
SLOT_LEASE_SECONDS = 30.0
# While every slot is in flight, waiters ask again this often (a share of the window): the
# first answer tells them when its slot frees, one window later.
IN_FLIGHT_POLL_SHARE = 0.02
# The running job's time limit (set by the runner). Time spent waiting for a shared budget is
# added to it before each wait: a job's limit covers its own work, never its place in the
# provider's queue, so a busy budget cannot time a job out (and send it round again).
JOB_TIME_LIMIT: ContextVar[CancelScope | None] = ContextVar("job_time_limit", default=None)

# Take a slot, atomically, on Redis' clock (the same for every worker host). Returns "0"
# when taken, else the seconds until a slot may be free (or the pause ends), as text (Lua
# numbers come back from Redis as integers). ARGV: the limit, the lease (window + hold), the
# token, the window, the hold, the poll interval. A slot in flight scores its lease's end.
TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return tostring(paused / 1000) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
  return '0'
end
local first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if first - now > tonumber(ARGV[4]) then
  -- Still in flight: free one window after its answer at the earliest, which is unknown.
  return tostring(math.max(first - tonumber(ARGV[5]) - now, tonumber(ARGV[6])))
end
return tostring(first - now)
"""
# Keep a slot until one window after its request's latest arrival, `ARGV[2]` seconds ago.
FREE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], now - tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 1)
return 1
"""
# A longer pause replaces a shorter one, never the reverse.
PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class RateLimit:
    """A provider's request budget, shared by every worker, and the setting that sizes it."""

    provider: str  # as messages name it
    key: str  # the budget's key in the limiter storage
    setting: str  # the `Settings` field that holds the limit ("60/minute")


MUSICBRAINZ = RateLimit("MusicBrainz", "musicbrainz", "musicbrainz_rate_limit")
DISCOGS = RateLimit("Discogs", "discogs", "discogs_rate_limit")


@dataclass
class RequestTimer:
    """When a request left and when its answer came (monotonic clock), for its slot."""

    granted: float = field(default_factory=time.monotonic)
    sent: float | None = None
    answered: float | None = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's `trace` extension: note when the request was written to the socket."""
        if event.endswith("send_request_body.complete"):
            self.sent = time.monotonic()

    def since_arrival(self, allowance: float) -> float:
        """Seconds since the latest moment the request can have reached the provider."""
        now = time.monotonic()
        latest = (self.sent if self.sent is not None else self.granted) + allowance
        if self.answered is not None:
            latest = min(latest, self.answered)
        return max(now - latest, 0.0)


class Slots(Protocol):
    """Where a budget's slots live: Redis for every worker, or this process alone."""

    async def take(self, token: str) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before asking again."""
        ...

    async def free(self, token: str, since_arrival: float) -> None:
        """Hold the slot for one window after its request's latest arrival, then free it."""
        ...

    async def pause(self, seconds: float) -> None:
        """Refuse every slot for `seconds` (a longer pause wins)."""
        ...

    async def reset(self) -> None:
        """Forget every slot and any pause."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RedisSlots:
    """A budget's slots in Redis: a sorted set of tokens by when each slot is free again."""

    def __init__(self, url: str, key: str, limit: int, window: float) -> None:
        self._redis = Redis.from_url(url)
        self._keys = (f"ratelimit:{key}:slots", f"ratelimit:{key}:paused")
        self._limit, self._window = limit, window
        self._lease = window + SLOT_LEASE_SECONDS

    async def take(self, token: str) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before asking again."""
        wait = await self._redis.eval(
            TAKE,
            2,
            *self._keys,
            self._limit,
            self._lease,
            token,
            self._window,
            SLOT_LEASE_SECONDS,
            in_flight_poll(self._window),
        )
        return float(wait)

    async def free(self, token: str, since_arrival: float) -> None:
        """Hold the slot for one window after its request's latest arrival, then free it."""
        await self._redis.eval(
            FREE, 1, self._keys[0], token, since_arrival, self._window, self._lease
        )

    async def pause(self, seconds: float) -> None:
        """Refuse every slot for `seconds` (a longer pause wins)."""
        await self._redis.eval(PAUSE, 1, self._keys[1], math.ceil(seconds * 1000))

    async def reset(self) -> None:
        """Forget every slot and any pause."""
        await self._redis.delete(*self._keys)

    async def close(self) -> None:
        """Release connections."""
        await self._redis.aclose()


class LocalSlots:
    """A budget's slots in this process (the demo without Redis): the same rules."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit, self._window = limit, window
        self._free_at: dict[str, float] = {}
        self._paused_until = 0.0

    async def take(self, token: str) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before asking again."""
        now = time.monotonic()
        if self._paused_until > now:
            return self._paused_until - now
        self._free_at = {t: at for t, at in self._free_at.items() if at > now}
        if len(self._free_at) < self._limit:
            self._free_at[token] = now + self._window + SLOT_LEASE_SECONDS
            return 0.0
        first = min(self._free_at.values())
        if first - now > self._window:  # in flight: as in TAKE
            return max(first - SLOT_LEASE_SECONDS - now, in_flight_poll(self._window))
        return first - now

    async def free(self, token: str, since_arrival: float) -> None:
        """Hold the slot for one window after its request's latest arrival, then free it."""
        self._free_at[token] = time.monotonic() - since_arrival + self._window

    async def pause(self, seconds: float) -> None:
        """Refuse every slot for `seconds` (a longer pause wins)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def reset(self) -> None:
        """Forget every slot and any pause."""
        self._free_at.clear()
        self._paused_until = 0.0

    async def close(self) -> None:
        """Nothing to release."""


def in_flight_poll(window: float) -> float:
    """How often waiters ask again while every slot is in flight."""
    return max(window * IN_FLIGHT_POLL_SHARE, MIN_WAIT_SECONDS)


def open_slots(storage_uri: str, item: RateLimitItem, key: str) -> Slots:
    """The slots for `key` in the storage `storage_uri` names (redis…:// or memory://)."""
    uri = storage_uri.removeprefix("async+")
    window = float(item.get_expiry())
    if uri.startswith("memory://"):
        return LocalSlots(item.amount, window)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisSlots(uri, key, item.amount, window)
    raise ConfigurationError("RATE_LIMIT_STORAGE_URL: use a redis://, rediss:// or memory:// URL")


class SharedRateLimiter:
    """Hand out a provider's request slots so that what arrives there stays within its limit."""

    def __init__(self, storage_uri: str, item: RateLimitItem, key: str) -> None:
        self._slots = open_slots(storage_uri, item, key)
        self._key = key
        # Metrics name the budget without its RATE_LIMIT_NAMESPACE prefix.
        self._label = key.rpartition(":")[2]
        window = float(item.get_expiry())
        self._allowance = max(window * NETWORK_ALLOWANCE_SHARE, MIN_NETWORK_ALLOWANCE_SECONDS)

    @asynccontextmanager
    async def request(self) -> AsyncIterator[RequestTimer]:
        """Hold a slot for one request: wait for it, yield the timer the request fills in."""
        token = uuid.uuid4().hex
        asked = time.monotonic()
        while (wait := await self._redis_call(self._slots.take, token)) > 0:
            await _wait(max(wait, MIN_WAIT_SECONDS))
        timer = RequestTimer()
        BUDGET_REQUESTS.labels(self._label).inc()
        BUDGET_WAIT_SECONDS.labels(self._label).inc(timer.granted - asked)
        try:
            yield timer
        finally:
            # Even when the job is cancelled mid-request: the request may have gone out.
            with CancelScope(shield=True):
                await self._free(token, timer)

    async def acquire(self) -> None:
        """Spend one request's slot now (a request sent at once, answered at once)."""
        async with self.request() as timer:
            timer.sent = timer.granted

    async def pause(self, seconds: float) -> None:
        """Hold every worker's requests to this provider for `seconds` (it said 503 or 429).

        The pause lives beside the slots, so all workers stop, not only the one that was
        told; a longer pause replaces a shorter one, never the reverse.
        """
        if math.isfinite(seconds) and seconds > 0:
            await self._redis_call(self._slots.pause, seconds)

    async def close(self) -> None:
        """Close the connections to the storage."""
        await self._slots.close()

    async def reset(self) -> None:
        """Forget every slot held so far, and any pause (tests and demos start clean)."""
        await self._slots.reset()

    async def _free(self, token: str, timer: RequestTimer) -> None:
        try:
            await self._redis_call(self._slots.free, token, timer.since_arrival(self._allowance))
        except BrokerUnavailableError as exc:  # the slot's lease frees it a little later
            logger.warning("could not free a %s slot: %s", self._key, exc)

    async def _redis_call[T](self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
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
                    return await call(*args)
        except (RedisError, OSError) as exc:
            # The budget lives in Redis: without it no request may go out. A blip, not a bug.
            raise BrokerUnavailableError(
                f"rate limit {self._key}: Redis unavailable: {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")


async def _wait(seconds: float) -> None:
    """Sleep for a provider's budget, the running job's time limit moved on by as much."""
    limit = JOB_TIME_LIMIT.get()
    if limit is not None:
        limit.deadline += seconds
    await asyncio.sleep(seconds)
