"""What each kind of job receives (its payload) and reports (its details), by job type.

Every payload carries `parentJobId`: the ROOT's job id, or null for a root.
"""

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from service.models.base import CamelModel
from service.urls import display_url


class JobType(StrEnum):
    """The processors, as stored in `jobType`. Old logs may hold other values: read as `str`.

    A new processor adds its member here, its payload and details below, and one line in
    `service.registry`.
    """

    ENRICH_ALBUM = "enrich_album"
    ENRICH_ARTIST = "enrich_artist"
    DISCOGS_ARTIST = "discogs_artist"
    CACHE_IMAGE = "cache_image"
    ENRICH_LIBRARY = "enrich_library"


# A title, name or id: long enough for any real one, short enough to keep logs small.
MAX_TEXT_CHARS = 512
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Url = Annotated[str, StringConstraints(max_length=4096)]
# A URL as stored in a log or the catalogue: host and path kept; credentials, query (where
# signatures live) and fragment dropped on every dump, whoever set the field.
StoredUrl = Annotated[str, PlainSerializer(display_url, return_type=str)]
# A MusicBrainz id, checked whole (a trailing newline is not an MBID) and kept lower-case.
MBID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_mbid(value: str) -> str:
    mbid = value.lower()
    if not MBID_PATTERN.fullmatch(mbid):
        raise ValueError("not a MusicBrainz id (expected 8-4-4-4-12 hexadecimal digits)")
    return mbid


Mbid = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_mbid)]


class JobPayload(CamelModel):
    """What every task receives: its lineage. Subclasses add what to enrich."""

    # Pydantic refuses text with lone surrogates (a Latin-1 terminal's bytes read as UTF-8),
    # which the store could not encode: no validator of ours is needed for that.
    parent_job_id: Text | None = None
    # Run even when the entity is fresh (enriched less than ENRICH_FRESH_DAYS ago); a forced
    # job's children are forced too.
    force: bool = False
    # The job this one repeats (a re-run from the dashboard, CLI or client); its children
    # are ordinary children, not re-runs.
    rerun_of: Text | None = None

    @property
    def display_name(self) -> str | None:
        """How the job names its entity before it runs (queued entries show this)."""
        return None

    @property
    def entity_key(self) -> str:
        """Which entity this job is about: one family runs a processor once per entity."""
        return self.model_dump_json(exclude={"parent_job_id", "force", "rerun_of"})


class AlbumJob(JobPayload):
    """Enrich an album, found by MusicBrainz release-group id or by title and artist."""

    mbid: Mbid | None = None
    title: Text | None = None
    artist: Text | None = None

    @model_validator(mode="after")
    def _needs_a_key(self) -> "AlbumJob":
        if not self.mbid and not self.title:
            raise ValueError("an album job needs an mbid or a title")
        return self

    @property
    def entity_key(self) -> str:
        """The album: by MBID, else by title and artist."""
        return f"album:{self.mbid or self.label.casefold()}"

    @property
    def label(self) -> str:
        """How the request names the album, for logs before it is resolved."""
        if self.title:
            return f"{self.title} — {self.artist}" if self.artist else self.title
        return self.mbid or ""

    @property
    def display_name(self) -> str | None:
        """The album as requested."""
        return self.label


class ArtistJob(JobPayload):
    """Enrich an artist, found by MusicBrainz id or by name."""

    mbid: Mbid | None = None
    name: Text | None = None

    @model_validator(mode="after")
    def _needs_a_key(self) -> "ArtistJob":
        if not self.mbid and not self.name:
            raise ValueError("an artist job needs an mbid or a name")
        return self

    @property
    def label(self) -> str:
        """How the request names the artist, for logs before it is resolved."""
        return self.name or self.mbid or ""

    @property
    def display_name(self) -> str | None:
        """The artist as requested."""
        return self.label

    @property
    def entity_key(self) -> str:
        """The artist: by MBID, else by name."""
        return f"artist:{self.mbid or (self.name or '').casefold()}"


class DiscogsJob(JobPayload):
    """Match a MusicBrainz artist on Discogs (directly when MusicBrainz links a Discogs id)."""

    artist_mbid: Text
    name: Text
    discogs_id: int | None = None

    @property
    def display_name(self) -> str | None:
        """The artist's name."""
        return self.name

    @property
    def entity_key(self) -> str:
        """The artist, by MBID."""
        return f"artist:{self.artist_mbid}"


class CacheImageJob(JobPayload):
    """Cache one entity's image: download, verify, store, point the entity at the copy."""

    entity_type: Literal["album", "artist"]
    entity_id: Text
    entity_name: Text | None = None
    image_url: Url
    source_url: Url | None = None

    @property
    def display_name(self) -> str | None:
        """The entity whose image this is."""
        return self.entity_name

    @property
    def entity_key(self) -> str:
        """The entity whose image this is."""
        return f"{self.entity_type}:{self.entity_id}"


# A whole library is one run: a root whose children are its albums (one message carries them).
MAX_LIBRARY_ROWS = 100_000


class LibraryJob(JobPayload):
    """Enrich every album of a library as one family: the root spawns one job per album."""

    source: Text
    albums: Annotated[list[AlbumJob], Field(min_length=1, max_length=MAX_LIBRARY_ROWS)]

    @property
    def display_name(self) -> str | None:
        """Where the rows came from, and how many."""
        return f"{self.source} ({len(self.albums)} albums)"


class LibraryDetails(CamelModel):
    """`enrich_library` details."""

    source: str | None = None
    rows: int = 0


class MusicBrainzDetails(CamelModel):
    """What a MusicBrainz lookup found, common to album and artist enrichment."""

    mbid: str | None = None
    match_source: Literal["mbid", "search"] | None = None
    query: str | None = None
    search_score: int | None = None
    candidates: int | None = None
    requests: int = 0
    outcome: Literal["matched", "no_match", "not_found"] | None = None


class AlbumDetails(MusicBrainzDetails):
    """`enrich_album` details."""

    title: str | None = None
    cover_art_url: StoredUrl | None = None
    cover_art_status: Literal["found", "none"] | None = None
    credited_artists: list[str] = []


class ArtistDetails(MusicBrainzDetails):
    """`enrich_artist` details."""

    name: str | None = None
    discogs_id: int | None = None


class DiscogsImageRef(CamelModel):
    """An image Discogs lists for an artist."""

    type: str
    uri: StoredUrl
    width: int | None = None
    height: int | None = None


class DiscogsCandidate(CamelModel):
    """A search candidate and its confidence."""

    id: int
    name: str
    score: float


class DiscogsDetails(CamelModel):
    """`discogs_artist` details."""

    discogs_id: int | None = None
    confidence: float | None = None
    matched_name: str | None = None
    query_name: str | None = None
    match_source: Literal["musicbrainz_link", "previous_match", "search"] | None = None
    outcome: Literal["matched", "ambiguous", "no_match"] | None = None
    profile: str | None = None
    images_found: int = 0
    images: list[DiscogsImageRef] = []
    genres: list[str] = []
    styles: list[str] = []
    candidates: list[DiscogsCandidate] = []
    requests: int = 0
    rate_limit_remaining: int | None = None
    discogs_url: StoredUrl | None = None


class CacheDetails(CamelModel):
    """`cache_image` details: `cachePath` and `cloudflareId` are always present, maybe null."""

    source_url: StoredUrl | None = None
    before_url: StoredUrl | None = None
    # Whether the worker fetched `before_url` (every hop passed its address check): only
    # then may a viewer's browser load it.
    before_url_fetched: bool = False
    after_url: StoredUrl | None = None
    cache_location: Literal["local", "cloudflare"] | None = None
    cache_path: str | None = None
    cloudflare_id: str | None = None
    size_bytes: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    content_type: str | None = None
    sha256: str | None = None
    deduplicated: bool = False
    http_status: int | None = None
