"""Discogs API v2: artist search, artist lookup and an artist's masters, under one shared limit."""

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from service.errors import ConfigurationError
from service.providers.http import ProviderApi


class DiscogsModel(BaseModel):
    """Discogs JSON: any field may be missing; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


class DiscogsImage(DiscogsModel):
    """An artist image; `uri` is signed by Discogs and used exactly as returned."""

    type: str = "secondary"
    uri: str = ""
    uri150: str | None = None
    width: int | None = None
    height: int | None = None


class DiscogsArtist(DiscogsModel):
    """`GET /artists/{id}`."""

    id: int
    name: str
    realname: str | None = None
    profile: str | None = None
    namevariations: list[str] = []
    images: list[DiscogsImage] = []
    uri: str | None = None
    resource_url: str | None = None

    @property
    def primary_image(self) -> DiscogsImage | None:
        """The primary image, else the first one."""
        usable = [image for image in self.images if image.uri]
        return next((i for i in usable if i.type == "primary"), usable[0] if usable else None)


class SearchResult(DiscogsModel):
    """One `/database/search` result (artist or master); genre/style are singular keys here."""

    id: int
    type: str
    title: str
    uri: str | None = None
    resource_url: str | None = None
    genre: list[str] = []
    style: list[str] = []


@dataclass
class RequestTally:
    """What one job's Discogs calls cost: requests made, and the last rate-limit headroom seen."""

    requests: int = 0
    rate_limit_remaining: int | None = None

    def count(self, response: httpx.Response) -> None:
        """Record one reply (retries included)."""
        self.requests += 1
        remaining = response.headers.get("X-Discogs-Ratelimit-Remaining")
        if remaining is not None and remaining.isdigit():
            self.rate_limit_remaining = int(remaining)


class DiscogsClient:
    """Typed access to Discogs; authenticated with a personal token that never leaves a header."""

    def __init__(self, api: ProviderApi, token: SecretStr | None) -> None:
        self._api = api
        self._token = token

    async def search_artists(self, name: str, tally: RequestTally) -> list[SearchResult]:
        """Artists whose name matches, as Discogs ranks them."""
        body = await self._get("database/search", {"type": "artist", "q": name}, tally)
        return _results(body)

    async def get_artist(self, artist_id: int, tally: RequestTally) -> DiscogsArtist:
        """One artist, with profile, name variations and images."""
        return DiscogsArtist.model_validate(await self._get(f"artists/{artist_id}", {}, tally))

    async def search_masters(self, artist: str, tally: RequestTally) -> list[SearchResult]:
        """The artist's master releases (where Discogs keeps genres and styles)."""
        params = {"type": "master", "artist": artist, "per_page": "100"}
        return _results(await self._get("database/search", params, tally))

    async def _get(self, path: str, params: dict[str, str], tally: RequestTally) -> dict[str, Any]:
        if self._token is None:
            raise ConfigurationError("DISCOGS_TOKEN is not set: Discogs requires a personal token")
        # Header auth only: a `?token=` parameter would leak into URLs and logs.
        headers = {"Authorization": f"Discogs token={self._token.get_secret_value()}"}
        return await self._api.get_json(path, params, headers=headers, on_response=tally.count)


def _results(body: dict[str, Any]) -> list[SearchResult]:
    return [SearchResult.model_validate(item) for item in body.get("results", [])]
