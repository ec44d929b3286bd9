"""`enrich_album`: a release group from MusicBrainz, its cover from the Cover Art Archive."""

from service.models import JobStatus, JobType
from service.models.jobs import AlbumDetails, AlbumJob, ArtistJob, CacheImageJob
from service.processing import JobRun
from service.processors.common import resolve, tag_names
from service.providers.musicbrainz import ReleaseGroup
from service.resources import Providers
from service.urls import display_url


async def enrich_album(job: AlbumJob, run: JobRun[AlbumDetails], providers: Providers) -> None:
    """Enrich one album; spawn `cache_image` for its cover, `enrich_artist` per credited artist."""
    run.entity_id, run.entity_name = job.mbid, job.label
    group = await _find_release_group(job, run, providers)
    if group is None:
        run.status = JobStatus.SKIPPED
        return
    details = run.details
    details.mbid, details.title, details.outcome = group.id, group.title, "matched"
    run.entity_id, run.entity_name = group.id, group.title

    details.requests += 1
    cover = await providers.coverart.front_image_url(group.id)
    details.cover_art_url = cover
    details.cover_art_status = "found" if cover else "none"
    fields = _album_fields(group, cover)
    run.fields_enriched = await providers.catalogue.update("album", group.id, fields)

    if cover is not None:
        source = f"{providers.settings.coverart_base_url}/release-group/{group.id}"
        image = CacheImageJob(
            entity_type="album",
            entity_id=group.id,
            entity_name=group.title,
            image_url=cover,
            source_url=source,
        )
        run.spawn(JobType.CACHE_IMAGE, image)
    credited = {credit.artist.id: credit.artist.name for credit in group.artist_credit}
    details.credited_artists = list(credited.values())
    for mbid, name in credited.items():
        run.spawn(JobType.ENRICH_ARTIST, ArtistJob(mbid=mbid, name=name))


async def _find_release_group(
    job: AlbumJob, run: JobRun[AlbumDetails], providers: Providers
) -> ReleaseGroup | None:
    musicbrainz = providers.musicbrainz
    return await resolve(
        run.details,
        mbid=job.mbid,
        search=lambda: musicbrainz.search_release_groups(job.title or "", job.artist),
        lookup=musicbrainz.get_release_group,
        query=job.label,
        min_score=providers.settings.musicbrainz_min_score,
    )


def _album_fields(group: ReleaseGroup, cover: str | None) -> dict[str, object]:
    return {
        "title": group.title,
        "firstReleaseDate": group.first_release_date,
        "primaryType": group.primary_type,
        "genres": tag_names(group.genres),
        "tags": tag_names(group.tags),
        "coverArtUrl": display_url(cover) if cover else None,
        "artistCredit": [{"mbid": c.artist.id, "name": c.artist.name} for c in group.artist_credit],
    }
