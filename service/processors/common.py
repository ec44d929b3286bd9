"""Pieces both MusicBrainz processors share."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from service.errors import NotFoundError
from service.models.jobs import MusicBrainzDetails
from service.providers.musicbrainz import Tag


class Scored(Protocol):
    """A search result with a MusicBrainz score."""

    @property
    def id(self) -> str: ...

    @property
    def score(self) -> int | None: ...


async def resolve[T](
    details: MusicBrainzDetails,
    *,
    mbid: str | None,
    search: Callable[[], Awaitable[Sequence[Scored]]],
    lookup: Callable[[str], Awaitable[T]],
    query: str,
    min_score: int,
) -> T | None:
    """Look an entity up by MBID, or by the best search result; None when nothing matches."""
    if mbid is None:
        # A lookup follows the search on purpose: search results carry neither genres nor
        # URL relations (the Discogs link), which only a lookup's `inc=` brings. One search
        # and one lookup per entity is the minimum; freshness makes it once per entity.
        best = await best_match(details, search, query=query, min_score=min_score)
        if best is None:
            return None
        mbid = best.id
    else:
        details.match_source = "mbid"
    details.requests += 1
    try:
        return await lookup(mbid)
    except NotFoundError:
        details.outcome = "not_found"
        raise


async def best_match[S: Scored](
    details: MusicBrainzDetails,
    search: Callable[[], Awaitable[Sequence[S]]],
    *,
    query: str,
    min_score: int,
) -> S | None:
    """Run a search and return its best result if it scores at least `min_score`."""
    details.match_source, details.query = "search", query
    details.requests += 1
    results = await search()
    details.candidates = len(results)
    best = max(results, key=lambda r: r.score or 0, default=None)
    details.search_score = best.score if best else None
    if best is None or (best.score or 0) < min_score:
        details.outcome = "no_match"
        return None
    return best


def tag_names(tags: list[Tag]) -> list[str]:
    """Tag or genre names, most voted first."""
    return [tag.name for tag in sorted(tags, key=lambda t: -t.count)]
