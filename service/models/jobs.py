"""Task payloads. Every payload carries `parentJobId`: the ROOT's job id, or null for a root."""

from typing import Literal

from pydantic import model_validator

from service.models.base import CamelModel


class JobPayload(CamelModel):
    """What every task receives: its lineage. Subclasses add what to enrich."""

    parent_job_id: str | None = None

    @property
    def entity_key(self) -> str:
        """Which entity this job is about: one family runs a processor once per entity."""
        return self.model_dump_json(exclude={"parent_job_id"})


class AlbumJob(JobPayload):
    """Enrich an album, found by MusicBrainz release-group id or by title and artist."""

    mbid: str | None = None
    title: str | None = None
    artist: str | None = None

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


class ArtistJob(JobPayload):
    """Enrich an artist, found by MusicBrainz id or by name."""

    mbid: str | None = None
    name: str | None = None

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
    def entity_key(self) -> str:
        """The artist: by MBID, else by name."""
        return f"artist:{self.mbid or (self.name or '').casefold()}"


class DiscogsJob(JobPayload):
    """Match a MusicBrainz artist on Discogs (directly when MusicBrainz links a Discogs id)."""

    artist_mbid: str
    name: str
    discogs_id: int | None = None

    @property
    def entity_key(self) -> str:
        """The artist, by MBID."""
        return f"artist:{self.artist_mbid}"


class CacheImageJob(JobPayload):
    """Cache one entity's image: download, verify, store, point the entity at the copy."""

    entity_type: Literal["album", "artist"]
    entity_id: str
    entity_name: str | None = None
    image_url: str
    source_url: str | None = None

    @property
    def entity_key(self) -> str:
        """The entity whose image this is."""
        return f"{self.entity_type}:{self.entity_id}"
