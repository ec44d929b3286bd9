"""The broker: taskiq-redis streams (acknowledged, reclaimed when idle) or in-process."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker, TaskiqEvents, TaskiqState
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from service.config import Settings
from service.lineage import JobRunner, JobSpec
from service.resources import open_resources
from service.tasks import JOB_SPECS, register_tasks

# Seconds a lock on the reclaim of idle messages may be held by a worker that died.
AUTOCLAIM_LOCK_TIMEOUT = 30


def create_broker(
    settings: Settings,
    *,
    in_memory: bool = False,
    specs: Sequence[JobSpec[Any, Any]] = JOB_SPECS,
) -> AsyncBroker:
    """A broker with every task registered and worker resources wired to its lifecycle."""
    broker: AsyncBroker
    if in_memory:
        broker = InMemoryBroker(await_inplace=False)
    else:
        broker = RedisStreamBroker(
            settings.redis_url,
            queue_name=settings.queue_name,
            consumer_group_name=settings.queue_name,
            idle_timeout=settings.redelivery_idle_ms,
            unacknowledged_lock_timeout=AUTOCLAIM_LOCK_TIMEOUT,
            xread_block=1000,
        )
    register_tasks(broker, specs)
    _wire_resources(broker, settings)
    return broker


def _wire_resources(broker: AsyncBroker, settings: Settings) -> None:
    async def startup(state: TaskiqState) -> None:
        state.resources = await open_resources(settings)
        state.runner = JobRunner(broker, settings, state.resources.providers)

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
