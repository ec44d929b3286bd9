"""Task payloads. Every payload carries `parentJobId`: the ROOT's job id, or null for a root."""

from pydantic import model_validator

from service.models.base import CamelModel


class JobPayload(CamelModel):
    """What every task receives: its lineage. Subclasses add what to enrich."""

    parent_job_id: str | None = None


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
