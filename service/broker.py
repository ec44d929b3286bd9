"""The broker: leased Redis streams (`service.streams`) or in-process, wired to the runner."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from taskiq import AsyncBroker, InMemoryBroker, TaskiqEvents, TaskiqState
from taskiq.api import run_receiver_task

from service.config import Settings
from service.processing import JobRegistry
from service.registry import JOBS
from service.resources import check_rate_limits, open_resources
from service.runner import JobRunner
from service.streams import LeasedStreamBroker
from service.tasks import register_tasks


def create_broker(
    settings: Settings,
    *,
    in_memory: bool = False,
    registry: JobRegistry = JOBS,
) -> AsyncBroker:
    """A broker with every task registered and worker resources wired to its lifecycle."""
    broker: AsyncBroker = (
        InMemoryBroker(await_inplace=False)
        if in_memory
        else LeasedStreamBroker(settings, registry.lanes)
    )
    register_tasks(broker, registry)
    _wire_resources(broker, settings, registry)
    return broker


def _wire_resources(broker: AsyncBroker, settings: Settings, registry: JobRegistry) -> None:
    async def startup(state: TaskiqState) -> None:
        check_rate_limits(settings, registry.rate_limits)
        state.resources = await open_resources(settings)
        state.runner = JobRunner(broker, settings, state.resources)
        state.runner.start()

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
