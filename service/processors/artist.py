"""`enrich_artist`: an artist from MusicBrainz, with its Discogs id when MusicBrainz links one."""

from service.models import JobStatus, JobType
from service.models.jobs import ArtistDetails, ArtistJob, DiscogsJob
from service.processing import JobRun
from service.processors.common import resolve, tag_names
from service.providers.musicbrainz import MBArtist
from service.resources import Providers


async def enrich_artist(job: ArtistJob, run: JobRun[ArtistDetails], providers: Providers) -> None:
    """Enrich one artist and spawn its Discogs match."""
    run.entity_id, run.entity_name = job.mbid, job.label
    artist = await _find_artist(job, run, providers)
    if artist is None:
        run.status = JobStatus.SKIPPED
        return
    details = run.details
    details.mbid, details.name, details.outcome = artist.id, artist.name, "matched"
    details.discogs_id = artist.discogs_id
    run.entity_id, run.entity_name = artist.id, artist.name
    fields = _artist_fields(artist)
    run.fields_enriched = await providers.catalogue.update("artist", artist.id, fields)
    discogs = DiscogsJob(artist_mbid=artist.id, name=artist.name, discogs_id=artist.discogs_id)
    run.spawn(JobType.DISCOGS_ARTIST, discogs)


async def _find_artist(
    job: ArtistJob, run: JobRun[ArtistDetails], providers: Providers
) -> MBArtist | None:
    musicbrainz = providers.musicbrainz
    return await resolve(
        run.details,
        mbid=job.mbid,
        search=lambda: musicbrainz.search_artists(job.name or ""),
        lookup=musicbrainz.get_artist,
        query=job.label,
        min_score=providers.settings.musicbrainz_min_score,
    )


def _artist_fields(artist: MBArtist) -> dict[str, object]:
    life_span = artist.life_span.model_dump() if artist.life_span else None
    return {
        "name": artist.name,
        "sortName": artist.sort_name,
        "country": artist.country,
        "disambiguation": artist.disambiguation,
        "lifeSpan": life_span,
        "genres": tag_names(artist.genres),
        "tags": tag_names(artist.tags),
        "discogsId": artist.discogs_id,
    }
