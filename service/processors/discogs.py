"""`discogs_artist`: find the artist on Discogs, score the match, enrich on a confident one."""

from service.errors import NotFoundError
from service.models import JobStatus, JobType
from service.models.jobs import (
    CacheImageJob,
    DiscogsCandidate,
    DiscogsDetails,
    DiscogsImageRef,
    DiscogsJob,
)
from service.processing import JobRun
from service.processors.matching import confidence, most_frequent, profile_text
from service.providers.discogs import DiscogsArtist, RequestTally, SearchResult
from service.redaction import redact
from service.resources import Providers
from service.urls import display_url

CANDIDATES_KEPT = 5


async def match_discogs_artist(
    job: DiscogsJob, run: JobRun[DiscogsDetails], providers: Providers
) -> None:
    """Match one artist; write Discogs facts to it when confident, skip when not."""
    run.entity_id, run.entity_name = job.artist_mbid, job.name
    details, tally = run.details, RequestTally()
    details.query_name = job.name
    try:
        artist = await _find(job, details, tally, providers)
        if artist is not None and details.outcome == "matched":
            await _enrich(job, artist, run, tally, providers)
    finally:
        details.requests, details.rate_limit_remaining = tally.requests, tally.rate_limit_remaining
    if details.outcome != "matched":
        run.status = JobStatus.SKIPPED


async def _find(
    job: DiscogsJob, details: DiscogsDetails, tally: RequestTally, providers: Providers
) -> DiscogsArtist | None:
    discogs = providers.discogs
    linked = await _known_discogs_id(job, details, providers)
    if linked is not None:
        try:
            artist = await discogs.get_artist(linked, tally)
        except NotFoundError:
            details.confidence = None  # a stale link (merged or deleted artist): search instead
        else:
            _record_match(details, artist, 1.0)
            return artist
    details.match_source = "search"
    results = await discogs.search_artists(job.name, tally)
    ranked = _rank(job.name, results)
    details.candidates = ranked[:CANDIDATES_KEPT]
    if not ranked:
        details.confidence, details.outcome = 0.0, "no_match"
        return None
    artist = await discogs.get_artist(ranked[0].id, tally)
    score = confidence(job.name, artist.name, artist.namevariations)
    _record_match(details, artist, score)
    settings = providers.settings
    tied = len(ranked) > 1 and ranked[1].score >= ranked[0].score
    if tied and score >= settings.discogs_ambiguous_threshold:
        details.outcome = "ambiguous"  # equal names ("Nirvana", "Nirvana (2)"): cannot tell
    elif score >= settings.discogs_match_threshold:
        details.outcome = "matched"
    elif score >= settings.discogs_ambiguous_threshold:
        details.outcome = "ambiguous"
    else:
        details.outcome = "no_match"
    return artist


async def _known_discogs_id(
    job: DiscogsJob, details: DiscogsDetails, providers: Providers
) -> int | None:
    """The artist's Discogs id when MusicBrainz links one or an earlier match confirmed one."""
    if job.discogs_id is not None:
        # MusicBrainz links this Discogs id: as near certain as a match gets.
        details.match_source, details.confidence = "musicbrainz_link", 1.0
        return job.discogs_id
    if job.force:
        return None  # a forced refresh searches again: a wrong match can be corrected
    # A match confirmed by an earlier family (written to the artist only when confident):
    # reused, so the artist's later families never search Discogs again.
    known = await providers.catalogue.field("artist", job.artist_mbid, "discogsId")
    if isinstance(known, int):
        details.match_source, details.confidence = "previous_match", 1.0
        return known
    return None


def _rank(name: str, results: list[SearchResult]) -> list[DiscogsCandidate]:
    scored = [
        DiscogsCandidate(id=r.id, name=r.title, score=confidence(name, r.title))
        for r in results
        if r.type == "artist"
    ]
    return sorted(scored, key=lambda c: -c.score)


def _record_match(details: DiscogsDetails, artist: DiscogsArtist, score: float) -> None:
    details.discogs_id, details.matched_name, details.confidence = artist.id, artist.name, score
    if details.match_source in ("musicbrainz_link", "previous_match"):
        details.outcome = "matched"


async def _enrich(
    job: DiscogsJob,
    artist: DiscogsArtist,
    run: JobRun[DiscogsDetails],
    tally: RequestTally,
    providers: Providers,
) -> None:
    details = run.details
    # `artist=` is a loose text filter on Discogs: keep the masters credited to this name.
    found = await providers.discogs.search_masters(artist.name, tally)
    masters = [m for m in found if m.title.startswith(f"{artist.name} - ")]
    details.genres = most_frequent(g for m in masters for g in m.genre)
    details.styles = most_frequent(s for m in masters for s in m.style)
    details.profile = profile_text(artist.profile)
    details.images = [
        DiscogsImageRef(type=i.type, uri=i.uri, width=i.width, height=i.height)
        for i in artist.images
        if i.uri
    ]
    details.images_found = len(details.images)
    details.discogs_url = artist.uri
    fields = _fields(details)
    run.fields_enriched = await providers.catalogue.update("artist", job.artist_mbid, fields)
    primary = artist.primary_image
    if primary is not None:
        image_job = CacheImageJob(
            entity_type="artist",
            entity_id=job.artist_mbid,
            entity_name=job.name,
            image_url=primary.uri,
            source_url=artist.resource_url,
        )
        run.spawn(JobType.CACHE_IMAGE, image_job)


def _fields(details: DiscogsDetails) -> dict[str, object]:
    return {
        "discogsId": details.discogs_id,
        # As the log stores them: URLs without credentials or query, text redacted.
        "discogsUrl": display_url(details.discogs_url) if details.discogs_url else None,
        "profile": redact(details.profile) if details.profile else None,
        "images": [image.model_dump(by_alias=True) for image in details.images],
        "discogsGenres": details.genres,
        "discogsStyles": details.styles,
    }
