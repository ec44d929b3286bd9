"""Local HTTP servers that answer like MusicBrainz and the Cover Art Archive.

Served from the sample catalogue on 127.0.0.1 for the offline demo and the tests. Like the
real MusicBrainz, the server answers 503 to every request over its declared rate and turns
away requests without a specific User-Agent.
"""

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from service.demo.catalogue import ALBUMS, ARTISTS, SampleAlbum, SampleArtist

MBID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
LUCENE_FIELD = re.compile(r'(\w+):"((?:[^"\\]|\\.)*)"')
GENERIC_AGENTS = ("python-httpx", "python-requests", "curl", "mozilla")
MIN_SEARCH_SCORE = 30

# Status, JSON body and extra headers of one answer.
Answer = tuple[int, Any, dict[str, str]]


@dataclass
class RecordedRequest:
    """One request the local servers answered."""

    at: float
    path: str
    status: int
    user_agent: str


@dataclass
class Fault:
    """An error to answer instead of the real response, `times` times."""

    path_contains: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)


class LocalProviders:
    """MusicBrainz under `/ws/2`, Cover Art Archive under `/caa`, on one loopback port."""

    def __init__(self, *, musicbrainz_rate_per_second: float = 1.0) -> None:
        self.musicbrainz_rate_per_second = musicbrainz_rate_per_second
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._stalls: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def musicbrainz_url(self) -> str:
        """The value for `MUSICBRAINZ_BASE_URL`."""
        return f"{self.base_url}/ws/2"

    @property
    def coverart_url(self) -> str:
        """The value for `COVERART_BASE_URL`."""
        return f"{self.base_url}/caa"

    def fail(self, path_contains: str, status: int, *, times: int = 1, **headers: str) -> None:
        """Answer `status` to the next `times` requests whose path contains the text."""
        with self._lock:
            self._faults.append(Fault(path_contains, status, times, headers))

    def stall(self, path_contains: str, seconds: float) -> None:
        """Hold every answer to a path containing the text for `seconds` (a slow provider)."""
        with self._lock:
            self._stalls[path_contains] = seconds

    def musicbrainz_requests(self) -> list[RecordedRequest]:
        """Every request made to the MusicBrainz routes."""
        return [r for r in self.requests if r.path.startswith("/ws/2/")]

    def respond(self, path: str, query: dict[str, str], user_agent: str) -> Answer:
        """Status, JSON body and headers for one GET."""
        status, body, headers = self._route(path, query, user_agent)
        with self._lock:
            self.requests.append(RecordedRequest(time.monotonic(), path, status, user_agent))
        return status, body, headers

    def _route(self, path: str, query: dict[str, str], user_agent: str) -> Answer:
        if not user_agent or user_agent.lower().startswith(GENERIC_AGENTS):
            return 403, {"error": "A specific User-Agent is required."}, {}
        with self._lock:
            stall = max((s for text, s in self._stalls.items() if text in path), default=0.0)
        time.sleep(stall)  # each request has its own server thread
        fault = self._take_fault(path)
        if fault is not None:
            return fault.status, {"error": "Injected failure"}, fault.headers
        if path.startswith("/ws/2/"):
            if self._over_rate():
                return (
                    503,
                    {"error": "Your requests are exceeding the allowable rate limit."},
                    {},
                )
            return _musicbrainz(path.removeprefix("/ws/2/"), query)
        if path.startswith("/caa/release-group/"):
            return _coverart(path.removeprefix("/caa/release-group/"), self.base_url)
        return 404, {"error": "Not Found"}, {}

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _over_rate(self) -> bool:
        # A one-second window; like MusicBrainz, every request over the rate is refused.
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.musicbrainz_rate_per_second:
                return True
            self._recent.append(now)
            return False


def _handler_for(providers: LocalProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            agent = self.headers.get("User-Agent", "")
            status, body, headers = providers.respond(url.path, query, agent)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded on `providers.requests` instead

    return Handler


def _musicbrainz(path: str, query: dict[str, str]) -> Answer:
    kind, _, mbid = path.partition("/")
    if kind not in ("artist", "release-group"):
        return 404, {"error": "Not Found"}, {}
    if not mbid:
        return 200, _search(kind, query), {}
    if not MBID.match(mbid):
        return (
            400,
            {"error": "Invalid mbid.", "help": "For usage, please see the docs"},
            {},
        )
    if kind == "artist":
        artist = next((a for a in ARTISTS.values() if a.mbid == mbid), None)
        if artist is not None and artist.broken:
            return 500, {"error": "Internal server error"}, {}
        found = _artist_json(artist) if artist else None
    else:
        album = next((a for a in ALBUMS.values() if a.mbid == mbid), None)
        found = _release_group_json(album) if album else None
    if found is None:
        return 404, {"error": "Not Found", "help": "For usage, please see the docs"}, {}
    return 200, found, {}


def _search(kind: str, query: dict[str, str]) -> dict[str, Any]:
    terms = {
        name: value.replace('\\"', '"')
        for name, value in LUCENE_FIELD.findall(query.get("query", ""))
    }
    limit = int(query.get("limit", "25"))
    if kind == "artist":
        scored = [
            (_similar(terms.get("artist", ""), a.name), _artist_json(a)) for a in ARTISTS.values()
        ]
        key = "artists"
    else:
        scored = [
            (_album_score(terms, album), _release_group_json(album)) for album in ALBUMS.values()
        ]
        key = "release-groups"
    hits = sorted(((s, item) for s, item in scored if s >= MIN_SEARCH_SCORE), key=lambda h: -h[0])
    results = [{**item, "score": score} for score, item in hits[:limit]]
    return {
        "created": "2026-11-24T00:00:00.000Z",
        "count": len(hits),
        "offset": 0,
        key: results,
    }


def _album_score(terms: dict[str, str], album: SampleAlbum) -> int:
    title = _similar(terms.get("releasegroup", ""), album.title)
    if "artist" not in terms:
        return title
    artist = max(_similar(terms["artist"], name) for name in album.artists)
    return round(0.7 * title + 0.3 * artist)


def _similar(a: str, b: str) -> int:
    return round(100 * SequenceMatcher(None, a.lower(), b.lower()).ratio())


def _artist_json(artist: SampleArtist) -> dict[str, Any]:
    relations = []
    if artist.discogs_id is not None:
        relations.append(
            {
                "type": "discogs",
                "type-id": "04a5b104-a4c2-4bac-99a1-7b837c37d9e4",
                "direction": "forward",
                "target-type": "url",
                "attributes": [],
                "url": {
                    "id": "b7d1c0aa-1111-4c2d-9e3f-0a1b2c3d4e5f",
                    "resource": f"https://www.discogs.com/artist/{artist.discogs_id}",
                },
            }
        )
    return {
        "id": artist.mbid,
        "name": artist.name,
        "sort-name": artist.sort_name,
        "type": artist.type,
        "country": artist.country,
        "disambiguation": artist.disambiguation,
        "life-span": {
            "begin": artist.begin,
            "end": artist.end,
            "ended": artist.end is not None,
        },
        "genres": [{"id": "", "name": g, "disambiguation": "", "count": 3} for g in artist.genres],
        "tags": [{"count": 2, "name": g} for g in artist.genres],
        "relations": relations,
    }


def _release_group_json(album: SampleAlbum) -> dict[str, Any]:
    credits = []
    for index, name in enumerate(album.artists):
        artist = ARTISTS[name]
        joinphrase = " & " if index < len(album.artists) - 1 else ""
        credits.append(
            {
                "name": name,
                "joinphrase": joinphrase,
                "artist": {
                    "id": artist.mbid,
                    "name": name,
                    "sort-name": artist.sort_name,
                },
            }
        )
    return {
        "id": album.mbid,
        "title": album.title,
        "primary-type": album.primary_type,
        "secondary-types": [],
        "first-release-date": album.first_release_date,
        "artist-credit": credits,
        "genres": [{"id": "", "name": g, "disambiguation": "", "count": 2} for g in album.genres],
        "tags": [{"count": 1, "name": g} for g in album.genres],
    }


def _coverart(mbid: str, base_url: str) -> Answer:
    album = next((a for a in ALBUMS.values() if a.mbid == mbid), None)
    if album is None or not album.has_cover:
        return 404, {"error": "Not Found"}, {}
    image = f"{base_url}/images/{mbid}-front.jpg"
    entry = {
        "id": 1000 + len(album.title),
        "image": image,
        "types": ["Front"],
        "front": True,
        "back": False,
        "approved": True,
        "comment": "",
        "edit": 1,
        "thumbnails": {
            "250": image,
            "500": image,
            "1200": image,
            "small": image,
            "large": image,
        },
    }
    return (
        200,
        {"images": [entry], "release": f"https://musicbrainz.org/release/{mbid}"},
        {},
    )
