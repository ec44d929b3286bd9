"""Thin Taskiq tasks: one per processor, each running through the lineage mechanism."""

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from taskiq import AsyncBroker, Context, TaskiqDepends

from service.lineage import TASK_LABELS, JobRunner, JobSpec
from service.models import JobType
from service.models.jobs import AlbumJob, ArtistJob, CacheImageJob, DiscogsJob
from service.models.logs import AlbumDetails, ArtistDetails, CacheDetails, DiscogsDetails
from service.processors.album import enrich_album
from service.processors.artist import enrich_artist
from service.processors.cache import cache_image
from service.processors.discogs import match_discogs_artist

JOB_SPECS: tuple[JobSpec[Any, Any], ...] = (
    JobSpec(JobType.ENRICH_ALBUM, "album", AlbumJob, AlbumDetails, enrich_album),
    JobSpec(JobType.ENRICH_ARTIST, "artist", ArtistJob, ArtistDetails, enrich_artist),
    JobSpec(JobType.DISCOGS_ARTIST, "artist", DiscogsJob, DiscogsDetails, match_discogs_artist),
    # The entity type is the image owner's; the processor sets it from the payload.
    JobSpec(JobType.CACHE_IMAGE, "album", CacheImageJob, CacheDetails, cache_image),
)

TaskFunction = Callable[..., Coroutine[Any, Any, None]]


def make_task(spec: JobSpec[Any, Any]) -> TaskFunction:
    """The task body for a spec: hand the raw payload to the worker's `JobRunner`."""

    async def task(job: dict[str, Any], context: Annotated[Context, TaskiqDepends()]) -> None:
        runner: JobRunner = context.state.runner
        await runner.run(spec, job, context)

    task.__name__ = task.__qualname__ = str(spec.job_type)
    return task


def register_tasks(broker: AsyncBroker, specs: Sequence[JobSpec[Any, Any]] = JOB_SPECS) -> None:
    """Register one task per spec, named after its job type, acknowledged by the runner."""
    for spec in specs:
        broker.register_task(make_task(spec), task_name=str(spec.job_type), **TASK_LABELS)
