"""Discogs API answers from a catalogue, with its auth, rate-limit headers and 429s."""

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from service.demo.catalogue import DEMO_CATALOGUE, Catalogue, SampleDiscogsArtist
from service.demo.fake_musicbrainz import similarity

MIN_SEARCH_SCORE = 40
WINDOW_SECONDS = 60.0


class DiscogsWindow:
    """A moving window (60 s on Discogs) of authenticated requests, as Discogs counts them."""

    def __init__(
        self, per_minute: int, too_many_every: int | None, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        self.per_minute = per_minute
        self.window_seconds = window_seconds
        self.too_many_every = too_many_every
        self._times: deque[float] = deque()
        self._count = 0
        self._lock = threading.Lock()

    def admit(self) -> tuple[bool, dict[str, str]]:
        """Whether this request is served, and the rate-limit headers to send."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] >= self.window_seconds:
                self._times.popleft()
            self._count += 1
            # "Now and then" a 429 even under the limit, as the live service does.
            unlucky = self.too_many_every is not None and self._count % self.too_many_every == 0
            allowed = len(self._times) < self.per_minute and not unlucky
            if allowed:
                self._times.append(now)
            used = len(self._times)
        headers = {
            "X-Discogs-Ratelimit": str(self.per_minute),
            "X-Discogs-Ratelimit-Used": str(used),
            "X-Discogs-Ratelimit-Remaining": str(max(self.per_minute - used, 0)),
        }
        return allowed, headers


def discogs(
    path: str,
    query: dict[str, str],
    images_url: str,
    api_url: str,
    catalogue: Catalogue = DEMO_CATALOGUE,
) -> tuple[int, Any]:
    """Status and JSON body for a path under the Discogs base URL (auth already checked)."""
    known = catalogue.discogs_artists
    if path == "database/search":
        return 200, _search(query, images_url, api_url, known)
    kind, _, artist_id = path.partition("/")
    artist = known.get(int(artist_id)) if artist_id.isdigit() else None
    if kind != "artists" or artist is None:
        return 404, {"message": "Artist not found."}
    return 200, _artist_json(artist, images_url, api_url)


def _search(
    query: dict[str, str],
    images_url: str,
    api_url: str,
    known: Mapping[int, SampleDiscogsArtist],
) -> dict[str, Any]:
    if query.get("type") == "master":
        results = _masters(query.get("artist", ""), images_url, known)
    else:
        wanted = query.get("q", "")
        scored = [(similarity(wanted, a.name), a) for a in known.values()]
        ranked = sorted((h for h in scored if h[0] >= MIN_SEARCH_SCORE), key=lambda h: -h[0])
        results = [_artist_result(a, images_url, api_url) for _, a in ranked]
    pagination = {"page": 1, "pages": 1, "per_page": 50, "items": len(results), "urls": {}}
    return {"pagination": pagination, "results": results}


def _masters(
    artist_name: str, images_url: str, known: Mapping[int, SampleDiscogsArtist]
) -> list[dict[str, Any]]:
    artist = next((a for a in known.values() if a.name == artist_name), None)
    masters = artist.masters if artist else ()
    return [
        {
            "id": 900000 + index,
            "type": "master",
            "title": f"{artist_name} - {m.title}",
            "year": str(m.year),
            "country": "Europe",
            "format": ["Vinyl", "LP"],
            "label": [],
            "genre": list(m.genres),
            "style": list(m.styles),
            "barcode": [],
            "catno": "",
            "uri": f"/master/{900000 + index}",
            "master_id": 900000 + index,
            "master_url": None,
            "thumb": "",
            "cover_image": f"{images_url}/master-{index}.jpg",
            "resource_url": "",
            "community": {"want": 10, "have": 20},
        }
        for index, m in enumerate(masters)
    ]


def _artist_result(artist: SampleDiscogsArtist, images_url: str, api_url: str) -> dict[str, Any]:
    primary = next((f for kind, f, _, _ in artist.images if kind == "primary"), None)
    return {
        "id": artist.id,
        "type": "artist",
        "title": artist.name,
        "user_data": {"in_wantlist": False, "in_collection": False},
        "master_id": None,
        "master_url": None,
        "uri": f"/artist/{artist.id}",
        "thumb": f"{images_url}/{primary}" if primary else "",
        "cover_image": f"{images_url}/{primary}" if primary else "",
        "resource_url": f"{api_url}/artists/{artist.id}",
    }


def _artist_json(artist: SampleDiscogsArtist, images_url: str, api_url: str) -> dict[str, Any]:
    images = [
        {
            "type": kind,
            "uri": f"{images_url}/{file}?w={w}&h={h}",
            "uri150": f"{images_url}/{file}?w=150&h=150",
            "resource_url": f"{images_url}/{file}",
            "width": w,
            "height": h,
        }
        for kind, file, w, h in artist.images
    ]
    return {
        "id": artist.id,
        "name": artist.name,
        "profile": artist.profile,
        "namevariations": list(artist.namevariations),
        "urls": [],
        "images": images,
        "data_quality": "Needs Vote",
        "uri": f"https://www.discogs.com/artist/{artist.id}",
        "releases_url": f"{api_url}/artists/{artist.id}/releases",
        "resource_url": f"{api_url}/artists/{artist.id}",
    }
