"""Thin Taskiq tasks: one per registered processor, each run by the worker's `JobRunner`."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from taskiq import AsyncBroker, Context, TaskiqDepends

from service.processing import AnySpec, JobRegistry
from service.runner import JobRunner
from service.spawning import TASK_LABELS

TaskFunction = Callable[..., Coroutine[Any, Any, None]]


def make_task(spec: AnySpec) -> TaskFunction:
    """The task body for a spec: hand the raw payload to the worker's `JobRunner`."""

    async def task(job: dict[str, Any], context: Annotated[Context, TaskiqDepends()]) -> None:
        runner: JobRunner = context.state.runner
        await runner.run(spec, job, context)

    task.__name__ = task.__qualname__ = str(spec.job_type)
    return task


def register_tasks(broker: AsyncBroker, registry: JobRegistry) -> None:
    """Register one task per spec, named after its job type, acknowledged by the runner."""
    for spec in registry:
        broker.register_task(make_task(spec), task_name=str(spec.job_type), **TASK_LABELS)
