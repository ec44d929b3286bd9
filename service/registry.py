"""THE registry: one line per processor. Tasks, job-type choices and details lookups derive from it.

Adding a processor: its `JobType` member, payload and details model (`service.models.jobs`),
the processor (`service.processors`), one `JOBS.register` line here, and a test.
"""

from service.models import JobType
from service.models.jobs import (
    AlbumDetails,
    AlbumJob,
    ArtistDetails,
    ArtistJob,
    CacheDetails,
    CacheImageJob,
    DiscogsDetails,
    DiscogsJob,
    LibraryDetails,
    LibraryJob,
)
from service.processing import JobRegistry, JobSpec
from service.processors.album import enrich_album
from service.processors.artist import enrich_artist
from service.processors.cache import cache_image
from service.processors.discogs import match_discogs_artist
from service.processors.library import enrich_library
from service.providers.ratelimit import DISCOGS, MUSICBRAINZ

JOBS = JobRegistry()
# `register` is generic: mypy checks each processor against its payload and details models.
JOBS.register(
    JobSpec(JobType.ENRICH_ALBUM, "album", AlbumJob, AlbumDetails, enrich_album, (MUSICBRAINZ,))
)
JOBS.register(
    JobSpec(
        JobType.ENRICH_ARTIST, "artist", ArtistJob, ArtistDetails, enrich_artist, (MUSICBRAINZ,)
    )
)
JOBS.register(
    JobSpec(
        JobType.DISCOGS_ARTIST,
        "artist",
        DiscogsJob,
        DiscogsDetails,
        match_discogs_artist,
        (DISCOGS,),
    )
)
# The entity type is the image owner's; the processor sets it from the payload.
JOBS.register(JobSpec(JobType.CACHE_IMAGE, "album", CacheImageJob, CacheDetails, cache_image))
# A library run fans out to its albums; each album remembers its own answer.
JOBS.register(
    JobSpec(
        JobType.ENRICH_LIBRARY,
        "library",
        LibraryJob,
        LibraryDetails,
        enrich_library,
        remembers=False,
    )
)
