"""MusicBrainz web service v2: typed lookups and searches under a shared rate limit."""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.errors import InvalidRequestError
from service.models.jobs import MBID_PATTERN
from service.providers.http import ProviderApi

DISCOGS_ARTIST_URL = re.compile(r"discogs\.com/(?:[a-z]{2}/)?artist/(\d+)")


class MBModel(BaseModel):
    """MusicBrainz JSON: hyphenated keys, many optional, unknown keys ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Tag(MBModel):
    """A folksonomy tag or a genre."""

    name: str
    count: int = 0


class UrlTarget(MBModel):
    """The URL a relation points at."""

    resource: str


class Relation(MBModel):
    """A relation (only URL relations are requested)."""

    type: str
    url: UrlTarget | None = None


class LifeSpan(MBModel):
    """An artist's active period."""

    begin: str | None = None
    end: str | None = None
    ended: bool | None = None


class MBArtist(MBModel):
    """An artist as MusicBrainz returns it from a lookup or a search."""

    id: str
    name: str
    sort_name: str | None = Field(default=None, alias="sort-name")
    country: str | None = None
    disambiguation: str | None = None
    life_span: LifeSpan | None = Field(default=None, alias="life-span")
    genres: list[Tag] = []
    tags: list[Tag] = []
    relations: list[Relation] = []
    # Search scores are integers now; old data had strings: pydantic coerces both.
    score: int | None = None

    @property
    def discogs_id(self) -> int | None:
        """The Discogs artist id from a `discogs` URL relation, if MusicBrainz has one."""
        for relation in self.relations:
            if relation.type == "discogs" and relation.url is not None:
                match = DISCOGS_ARTIST_URL.search(relation.url.resource)
                if match:
                    return int(match.group(1))
        return None


class CreditedArtist(MBModel):
    """The artist inside an artist credit."""

    id: str
    name: str


class ArtistCredit(MBModel):
    """One name in a release group's artist credit."""

    name: str
    artist: CreditedArtist


class ReleaseGroup(MBModel):
    """A release group (what the catalogue calls an album)."""

    id: str
    title: str
    primary_type: str | None = Field(default=None, alias="primary-type")
    first_release_date: str | None = Field(default=None, alias="first-release-date")
    artist_credit: list[ArtistCredit] = Field(default=[], alias="artist-credit")
    genres: list[Tag] = []
    tags: list[Tag] = []
    score: int | None = None


def lucene_phrase(value: str) -> str:
    """Quote a value as a Lucene phrase, escaping what Lucene treats specially."""
    return '"' + re.sub(r'([\\"])', r"\\\1", value) + '"'


def check_mbid(mbid: str) -> str:
    """Reject a malformed MBID before spending a rate-limited request on it."""
    if not MBID_PATTERN.fullmatch(mbid.lower()):
        raise InvalidRequestError(f"{mbid[:80]!r} is not a MusicBrainz id (a UUID)")
    return mbid.lower()


class MusicBrainzClient:
    """Typed access to the MusicBrainz API; every request waits for the shared limiter."""

    def __init__(self, api: ProviderApi) -> None:
        self._api = api

    async def get_artist(self, mbid: str) -> MBArtist:
        """Look an artist up by MBID, with URL relations, genres and tags."""
        body = await self._get(f"artist/{check_mbid(mbid)}", inc="url-rels genres tags")
        return MBArtist.model_validate(body)

    async def search_artists(self, name: str, *, limit: int = 5) -> list[MBArtist]:
        """Search artists by name, best match first."""
        body = await self._get("artist", query=f"artist:{lucene_phrase(name)}", limit=str(limit))
        return [MBArtist.model_validate(item) for item in body.get("artists", [])]

    async def get_release_group(self, mbid: str) -> ReleaseGroup:
        """Look a release group up by MBID, with its artist credits, genres and tags."""
        body = await self._get(
            f"release-group/{check_mbid(mbid)}", inc="artist-credits genres tags"
        )
        return ReleaseGroup.model_validate(body)

    async def search_release_groups(
        self, title: str, artist: str | None, *, limit: int = 5
    ) -> list[ReleaseGroup]:
        """Search release groups by title (and artist), best match first."""
        query = f"releasegroup:{lucene_phrase(title)}"
        if artist:
            query += f" AND artist:{lucene_phrase(artist)}"
        body = await self._get("release-group", query=query, limit=str(limit))
        return [ReleaseGroup.model_validate(item) for item in body.get("release-groups", [])]

    async def _get(self, path: str, **params: str) -> dict[str, Any]:
        return await self._api.get_json(path, {**params, "fmt": "json"})
