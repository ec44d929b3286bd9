"""Cover Art Archive: the front image of a release group."""

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from service.errors import InvalidRequestError, NotFoundError, ProviderUnavailableError
from service.providers.http import json_object, raise_for_status

PROVIDER = "Cover Art Archive"
# The archive keeps no listings itself: `release-group/{mbid}` answers 307 to the chosen
# release's index.json on archive.org, which redirects again to one of its storage hosts
# (ia…us.archive.org). Its client follows redirects to these hosts, and nowhere else.
ARCHIVE_HOSTS = frozenset({"archive.org"})


class CoverImage(BaseModel):
    """One image entry; `id` is a string or an integer depending on the archive's age."""

    model_config = ConfigDict(extra="ignore")

    image: str
    front: bool = False
    types: list[str] = []
    id: str | int | None = None
    thumbnails: dict[str, str] = {}


class CoverArtClient:
    """Typed access to the Cover Art Archive."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def front_image_url(self, release_group_mbid: str) -> str | None:
        """The URL of the release group's front cover, or None when it has none."""
        try:
            response = await self._http.get(f"release-group/{release_group_mbid}")
        except httpx.InvalidURL as exc:
            # The id came from provider data: one that cannot make a URL is bad input.
            raise InvalidRequestError(f"{PROVIDER}: invalid release group id") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(PROVIDER, f"{type(exc).__name__}: {exc}") from exc
        try:
            raise_for_status(PROVIDER, response)
        except NotFoundError:
            return None
        body = json_object(PROVIDER, response)
        try:
            images = [CoverImage.model_validate(item) for item in body.get("images", [])]
        except (ValidationError, TypeError) as exc:
            raise ProviderUnavailableError(PROVIDER, "image list of an unexpected shape") from exc
        front = next((img for img in images if img.front or "Front" in img.types), None)
        return front.image if front else None
