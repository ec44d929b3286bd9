"""The broker: taskiq-redis streams (acknowledged, reclaimed when idle) or in-process."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, suppress

from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker, TaskiqEvents, TaskiqState
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from service.config import Settings
from service.processing import JobRegistry
from service.registry import JOBS
from service.resources import check_rate_limits, open_resources
from service.runner import JobRunner
from service.tasks import register_tasks

# XREADGROUP's reply: [(stream, [(message id, {field: value})])].
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


class ReclaimingStreamBroker(RedisStreamBroker):
    """A `RedisStreamBroker` that also reclaims idle messages while the stream is quiet.

    taskiq-redis 1.2 runs its XAUTOCLAIM only after a read that returned new messages, so a
    message left unacknowledged by a dead or stopped worker waits for the next kick, however
    long that takes. This loop reclaims after every read, empty or not.
    """

    async def listen(self) -> AsyncGenerator[AckableMessage]:
        """Yield new messages, then messages other consumers left idle too long."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                fetched: StreamReply = await redis.xreadgroup(  # type: ignore[assignment]
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=self.count,
                )
                for _stream, messages in fetched or ():
                    for message_id, fields in messages:
                        yield self._ackable(message_id, fields)
                _next, claimed, _deleted = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                for message_id, fields in claimed:
                    yield self._ackable(message_id, fields)

    def _ackable(self, message_id: bytes, fields: dict[bytes, bytes]) -> AckableMessage:
        ack = self._ack_generator(id=message_id.decode(), queue_name=self.queue_name)
        return AckableMessage(data=fields[b"data"], ack=ack)


def create_broker(
    settings: Settings,
    *,
    in_memory: bool = False,
    registry: JobRegistry = JOBS,
) -> AsyncBroker:
    """A broker with every task registered and worker resources wired to its lifecycle."""
    broker: AsyncBroker
    if in_memory:
        broker = InMemoryBroker(await_inplace=False)
    else:
        broker = ReclaimingStreamBroker(
            settings.redis_url,
            queue_name=settings.queue_name,
            consumer_group_name=settings.queue_name,
            idle_timeout=settings.redelivery_idle_ms,
            xread_block=1000,
        )
    register_tasks(broker, registry)
    _wire_resources(broker, settings, registry)
    return broker


def _wire_resources(broker: AsyncBroker, settings: Settings, registry: JobRegistry) -> None:
    async def startup(state: TaskiqState) -> None:
        check_rate_limits(settings, registry.rate_limits)
        state.resources = await open_resources(settings)
        state.runner = JobRunner(broker, settings, state.resources)

    async def shutdown(state: TaskiqState) -> None:
        runner: JobRunner | None = getattr(state, "runner", None)
        if runner is not None:
            await runner.drain(settings.shutdown_grace_seconds)
        resources = getattr(state, "resources", None)
        if resources is not None:
            await resources.close()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shutdown)


@asynccontextmanager
async def in_process_worker(
    broker: AsyncBroker, *, max_async_tasks: int = 20
) -> AsyncIterator[None]:
    """Run a worker for `broker` inside this event loop (demo and tests); stop it on exit."""
    broker.is_worker_process = True
    await broker.startup()
    listener = None
    if not isinstance(broker, InMemoryBroker):  # the in-memory broker runs tasks on kick
        listener = asyncio.create_task(
            run_receiver_task(broker, max_async_tasks=max_async_tasks), name="receiver"
        )
    try:
        yield
    finally:
        if listener is not None:
            listener.cancel()
            with suppress(asyncio.CancelledError):
                await listener
        await broker.shutdown()
