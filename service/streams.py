"""`LeasedStreamBroker`: taskiq-redis streams with leases, due-time retries and dead letters.

taskiq-redis's `RedisStreamBroker` reads up to 100 messages at once and reclaims any message
idle for a fixed time. Here a worker reads one message per free slot (taskiq's receiver asks
for the next only when a slot is free), renews the lease of every message it holds, and a
message is reclaimed only when its holder stopped renewing for `JOB_LEASE_SECONDS`. Retries
wait in a Redis sorted set until due, not in a sleeping worker. An entry that cannot be a
job is handed to `on_poison` (a dead letter or a failed entry) and acknowledged at once.

Jobs queue in lanes, one stream per provider budget (`ENRICHMENT_QUEUE:musicbrainz`,
`ENRICHMENT_QUEUE:discogs`; jobs that spend no budget stay on `ENRICHMENT_QUEUE`), and a
worker's slots are shared out between the lanes: jobs waiting for Discogs' budget can hold
only Discogs' share, so MusicBrainz work goes on beside them, and vice versa. One FIFO stream
cannot do that: a library's 10,000 albums would stand in front of every Discogs job.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage, BrokerMessage, TaskiqMessage
from taskiq_redis import RedisStreamBroker

from service.config import Settings
from service.errors import BrokerUnavailableError, EnrichmentError
from service.metrics import GENERAL_LANE, LEASES_RECLAIMED

logger = logging.getLogger(__name__)

STREAM_ID_LABEL = "stream_id"  # which stream entry a delivery came from (set on reading)
STREAM_LABEL = "stream"  # and which stream (lane) it is in
ATTEMPT_LABEL = "attempt"
EXCERPT_BYTES = 1_024
MAX_JOB_ID_CHARS = 512
MAX_ATTEMPT_LABEL = 1_000
RECLAIM_CHECK_SECONDS = 1.0
MAX_RECONNECT_WAIT_SECONDS = 5.0
SLOT_FREED_WAIT_SECONDS = 1.0
# Moves due retries back onto their streams, atomically: a retry is never lost or doubled.
# KEYS: pairs of (due set, stream).
RELEASE_DUE = """
local moved = 0
for pair = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[pair], '-inf', ARGV[1], 'LIMIT', 0, 50)
  for _, data in ipairs(due) do
    redis.call('ZREM', KEYS[pair], data)
    redis.call('XADD', KEYS[pair + 1], '*', 'data', data)
  end
  moved = moved + #due
end
return moved
"""


@dataclass(frozen=True)
class Entry:
    """A stream entry a worker holds: its stream (lane) and its id there."""

    stream: str
    id: str


@dataclass(frozen=True)
class Poison:
    """A stream entry that cannot run: why, and what is known of it."""

    stream_id: str
    reason: str
    excerpt: str
    message: TaskiqMessage | None = None  # when it decoded: its job id is known
    stream: str = ""  # the stream it was read from


PoisonHandler = Callable[[Poison], Awaitable[None]]
# XREADGROUP's reply: [(stream, [(message id, {field: value})])].
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


class LeasedStreamBroker(RedisStreamBroker):
    """A Redis stream broker whose workers hold leases on the messages they run."""

    def __init__(self, settings: Settings, lanes: Mapping[str, str] | None = None) -> None:
        """`lanes`: the lane (provider budget) of each task that queues in one."""
        super().__init__(
            settings.redis_url,
            queue_name=settings.queue_name,
            consumer_group_name=settings.queue_name,
            # From the stream's start: a group (re)created after a Redis restart still sees
            # what was kicked before it existed.
            consumer_id="0",
            idle_timeout=round(settings.job_lease_seconds * 1000),
            xread_block=1000,
            xread_count=1,
            unacknowledged_batch_size=1,
            # A connection Redis closed (a restart) is reopened and the command sent again. A
            # command that did reach Redis may thus arrive twice: a kick then delivers twice,
            # and the log (`begin_attempt`) runs it once.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self.due_key = due_key(settings.queue_name)
        self.heartbeat_seconds = settings.heartbeat_seconds
        self.stream_of = {
            task: lane_stream(settings.queue_name, lane) for task, lane in (lanes or {}).items()
        }
        self.streams = [settings.queue_name, *sorted(set(self.stream_of.values()))]
        self.slots = share_slots(settings.worker_max_async_tasks, self.streams)
        self.held: dict[str, set[str]] = {stream: set() for stream in self.streams}
        self.on_poison: PoisonHandler | None = None
        self._claim_cursor: dict[str, bytes | str] = dict.fromkeys(self.streams, "0-0")
        self._next_reclaim = 0.0
        self._ready: deque[AckableMessage] = deque()
        self._freed = asyncio.Event()

    async def _declare_consumer_group(self) -> None:
        """A consumer group on every lane's stream (created with the stream when missing)."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            for stream in self.streams:
                try:
                    await redis.xgroup_create(
                        stream, self.consumer_group_name, id=self.consumer_id, mkstream=True
                    )
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    async def kick(self, message: BrokerMessage) -> None:
        """Queue a message on its task's lane."""
        stream = self.stream_of.get(message.task_name, self.queue_name)
        async with Redis(connection_pool=self.connection_pool) as redis:
            await redis.xadd(stream, {b"data": message.message})

    async def listen(self) -> AsyncGenerator[AckableMessage]:
        """Yield one deliverable message per request, reconnecting after Redis faults."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            failures = 0
            while True:
                try:
                    delivery = await self._next(redis)
                except RedisError as exc:
                    failures += 1
                    await self._recover(exc, failures)
                    continue
                failures = 0
                if delivery is not None:
                    yield delivery
                while self._ready:  # the other lanes' messages of the same read
                    yield self._ready.popleft()

    async def renew_leases(self) -> None:
        """Keep renewing the lease of every held message (until cancelled)."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                for stream, held in list(self.held.items()):
                    if not held:
                        continue
                    try:
                        # Claiming our own messages with no minimum idle time resets their
                        # idle clock: that is the lease renewal.
                        await redis.xclaim(
                            stream,
                            self.consumer_group_name,
                            self.consumer_name,
                            min_idle_time=0,
                            message_ids=list(held),
                            justid=True,
                        )
                    except RedisError as exc:
                        logger.warning("could not renew %d leases: %s", len(held), exc)

    def entry_of(self, message: TaskiqMessage) -> Entry | None:
        """The stream entry a delivery came from (None: it was not read by this broker)."""
        stream_id = message.labels.get(STREAM_ID_LABEL)
        if not stream_id:
            return None
        return Entry(str(message.labels.get(STREAM_LABEL) or self.queue_name), str(stream_id))

    async def schedule_retry(self, message: TaskiqMessage, due: float, entry: Entry) -> None:
        """Queue `message` until `due` (epoch seconds) and acknowledge the delivery, together."""
        delivery = (STREAM_ID_LABEL, STREAM_LABEL)
        labels = {k: v for k, v in message.labels.items() if k not in delivery}
        data = self.formatter.dumps(message.model_copy(update={"labels": labels})).message
        try:
            async with (
                Redis(connection_pool=self.connection_pool) as redis,
                redis.pipeline(transaction=True) as pipe,
            ):
                pipe.zadd(due_key(entry.stream), {data: due})
                pipe.xack(entry.stream, self.consumer_group_name, entry.id)
                await pipe.execute()
        except RedisError as exc:  # still held (its lease renewed): the caller tries again
            raise BrokerUnavailableError(f"could not schedule the retry: {exc}") from exc
        self.release(entry)

    def release(self, entry: Entry) -> None:
        """Stop renewing a message this worker will not run (another worker holds it)."""
        self.held.setdefault(entry.stream, set()).discard(entry.id)
        self._freed.set()

    async def acknowledge(self, entry: Entry) -> None:
        """Acknowledge a delivery: its work is done and logged."""
        try:
            async with Redis(connection_pool=self.connection_pool) as redis:
                await redis.xack(entry.stream, self.consumer_group_name, entry.id)
        except RedisError as exc:  # still held (its lease renewed): the caller tries again
            raise BrokerUnavailableError(f"could not acknowledge {entry.id}: {exc}") from exc
        self.release(entry)

    async def abandon(self, entry: Entry) -> None:
        """Give a message up at once (shutdown): another worker may reclaim it right away."""
        self.release(entry)
        try:
            async with Redis(connection_pool=self.connection_pool) as redis:
                await redis.xclaim(
                    entry.stream,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=0,
                    message_ids=[entry.id],
                    idle=self.idle_timeout,  # as if its lease had already lapsed
                    justid=True,
                )
        except RedisError as exc:  # it is reclaimed a lease later instead
            logger.warning("could not give up %s: %s", entry.id, exc)

    async def _next(self, redis: Redis) -> AckableMessage | None:
        # Only lanes with a free slot are read. A dead worker's messages first (checked every
        # second, also under a backlog), then due retries onto their streams, then one new
        # message from each open lane.
        self._freed.clear()
        open_lanes = [s for s in self.streams if len(self.held[s]) < self.slots[s]]
        if not open_lanes:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), SLOT_FREED_WAIT_SECONDS)
            return None
        if time.monotonic() >= self._next_reclaim:
            self._next_reclaim = time.monotonic() + RECLAIM_CHECK_SECONDS
            for stream in open_lanes:
                claimed = await self._reclaim(redis, stream)
                if claimed is not None:
                    return await self._admit(redis, stream, *claimed)
        pairs = [key for lane in self.streams for key in (due_key(lane), lane)]
        await redis.eval(RELEASE_DUE, len(pairs), *pairs, time.time())
        reply: StreamReply = await redis.xreadgroup(  # type: ignore[assignment]
            self.consumer_group_name,
            self.consumer_name,
            dict.fromkeys(open_lanes, ">"),
            block=self.block,
            count=1,
        )
        for name, messages in reply or ():
            for message_id, fields in messages:
                delivery = await self._admit(redis, name.decode(), message_id, fields)
                if delivery is not None:
                    self._ready.append(delivery)
        return self._ready.popleft() if self._ready else None

    async def _reclaim(self, redis: Redis, stream: str) -> tuple[bytes, dict[bytes, bytes]] | None:
        """One message of `stream` whose lease lapsed, if any; the scan resumes where it stopped."""
        reply = await redis.xautoclaim(
            stream,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            start_id=self._claim_cursor[stream],
            count=1,
        )
        # Redis 7 adds the ids it found deleted from the stream (trimmed while pending).
        cursor, claimed, deleted = (*reply, [])[:3]
        self._claim_cursor[stream] = cursor or "0-0"
        if deleted:
            await redis.xack(stream, self.consumer_group_name, *deleted)
        if not claimed:
            return None
        LEASES_RECLAIMED.labels(lane_of(self.queue_name, stream)).inc()
        message: tuple[bytes, dict[bytes, bytes]] = claimed[0]
        return message

    async def _admit(
        self, redis: Redis, stream: str, message_id: bytes, fields: dict[bytes, bytes]
    ) -> AckableMessage | None:
        entry = Entry(stream, message_id.decode())
        try:
            message, reason = self._decode(fields)
        except Exception as exc:  # whatever an entry holds, it must not stop the listener
            message, reason = None, f"the entry cannot be read: {type(exc).__name__}"
        if reason is not None:
            poison = Poison(entry.id, reason, _excerpt(fields), message, stream=stream)
            await self._reject(redis, poison)
            return None
        assert message is not None
        message.labels[STREAM_ID_LABEL] = entry.id
        message.labels[STREAM_LABEL] = stream
        self.held[stream].add(entry.id)
        return AckableMessage(
            data=self.formatter.dumps(message).message,
            ack=lambda: self.acknowledge(entry),
        )

    def _decode(self, fields: dict[bytes, bytes]) -> tuple[TaskiqMessage | None, str | None]:
        data = fields.get(b"data")
        if data is None:
            return None, "the entry has no data field"
        try:
            message = self.formatter.loads(data)
        except (ValueError, ValidationError, TypeError, RecursionError) as exc:
            return None, f"the entry is not a task message: {type(exc).__name__}"
        if not _is_job_id(message.task_id):
            return None, "the task id is not a job id (empty, too long or not text)"
        return message, _invalid(message, self.find_task(message.task_name) is not None)

    async def _reject(self, redis: Redis, poison: Poison) -> None:
        logger.warning("refusing stream entry %s: %s", poison.stream_id, poison.reason)
        if self.on_poison is not None:
            try:
                await self.on_poison(poison)
            except EnrichmentError as exc:  # the store is down: tried again a lease later
                logger.warning("could not record %s: %s", poison.stream_id, exc)
                return
            except Exception:  # recording poison must never stop the listener
                logger.exception("could not record %s; acknowledging it", poison.stream_id)
        await redis.xack(poison.stream, self.consumer_group_name, poison.stream_id)

    async def _recover(self, exc: RedisError, failures: int) -> None:
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            logger.warning("the consumer group is gone (Redis restarted?): creating it again")
            try:
                await self._declare_consumer_group()
                return
            except RedisError as again:
                exc = again
        wait = min(0.1 * 2**failures, MAX_RECONNECT_WAIT_SECONDS)
        logger.warning("Redis unavailable (%s): retrying in %.1fs", exc, wait)
        await asyncio.sleep(wait)


def lane_stream(queue_name: str, lane: str) -> str:
    """The stream a lane's jobs queue on."""
    return f"{queue_name}:{lane}"


def lane_of(queue_name: str, stream: str) -> str:
    """The lane a stream serves, as metrics name it ("general" for the queue's own stream)."""
    if stream == queue_name:
        return GENERAL_LANE
    return stream.removeprefix(f"{queue_name}:")


def due_key(stream: str) -> str:
    """The sorted set where a stream's retries wait until due."""
    return f"{stream}:due"


def share_slots(total: int, streams: list[str]) -> dict[str, int]:
    """A worker's `total` slots shared out between the lanes, each at least one.

    An even, fixed share rather than first come first served: a lane whose provider is
    exhausted must leave the others their slots. Each lane's share is ample for a budget
    such as MusicBrainz' one request a second; the sum is `total` (or one per lane, if more).
    """
    share, extra = divmod(total, len(streams))
    return {s: max(share + (i < extra), 1) for i, s in enumerate(streams)}


def _invalid(message: TaskiqMessage, known_task: bool) -> str | None:
    """Why a decoded message cannot run as one of our jobs, or None."""
    labels = message.labels
    if not known_task:
        return f"unknown task {message.task_name[:100]!r}"
    if (
        message.args
        or set(message.kwargs) != {"job"}
        or not isinstance(message.kwargs["job"], dict)
    ):
        return "the message does not hold exactly one job payload"
    if labels.get("ack_type", "manual") != "manual":
        return "the message is not acknowledged manually (ack_type)"
    if "timeout" in labels and not _is_number(labels["timeout"]):
        return "the timeout label is not a number"
    attempt = labels.get(ATTEMPT_LABEL, 1)
    if not (isinstance(attempt, int | str) and str(attempt).isdecimal()):
        return f"attempt label {str(attempt)[:50]!r} is not a positive number"
    if not 1 <= int(attempt) <= MAX_ATTEMPT_LABEL:
        return f"attempt label {str(attempt)[:50]!r} is out of range"
    return None


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _is_job_id(value: object) -> bool:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_JOB_ID_CHARS:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _excerpt(fields: dict[bytes, bytes]) -> str:
    raw = b" ".join(key + b"=" + value for key, value in fields.items())
    return raw[:EXCERPT_BYTES].decode("utf-8", "replace")
