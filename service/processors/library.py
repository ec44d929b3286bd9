"""`enrich_library`: a whole library as one run, one `enrich_album` child per row."""

from service.models import JobType
from service.models.jobs import LibraryDetails, LibraryJob
from service.processing import JobRun
from service.resources import Providers


async def enrich_library(
    job: LibraryJob, run: JobRun[LibraryDetails], providers: Providers
) -> None:
    """Spawn every album: the run is one family, flat, whose children are the albums."""
    run.entity_id, run.entity_name = job.source, job.display_name
    run.details.source, run.details.rows = job.source, len(job.albums)
    for album in job.albums:
        run.spawn(JobType.ENRICH_ALBUM, album)
