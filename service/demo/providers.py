"""Local look-alikes of MusicBrainz, Cover Art Archive, Discogs and an image host.

They serve the offline demo and the tests on 127.0.0.1. Like the real services: MusicBrainz
answers 503 to every request over its declared rate, Discogs wants a token and counts a
moving minute (429 over it, and now and then anyway), and requests without a specific
User-Agent are turned away.
"""

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from service.demo.catalogue import DEMO_CATALOGUE, Catalogue
from service.demo.fake_discogs import DiscogsWindow, discogs
from service.demo.fake_images import image_answer
from service.demo.fake_musicbrainz import coverart, musicbrainz

GENERIC_AGENTS = ("python-httpx", "python-requests", "curl", "mozilla")


@dataclass
class RecordedRequest:
    """One request the local servers answered."""

    at: float
    path: str
    status: int
    user_agent: str
    authorization: str | None = None


@dataclass
class Fault:
    """An error to answer instead of the real response, `times` times."""

    path_contains: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class Answer:
    """What to send back: JSON, bytes, or a stream of chunks (sent without a length)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class LocalProviders:
    """All four services on one loopback port, under `/ws/2`, `/caa`, `/discogs`, `/images`.

    They answer from `catalogue`: the demo's, unless given another (a benchmark's library).
    """

    def __init__(
        self,
        *,
        musicbrainz_rate_per_second: float = 1.0,
        discogs_rate_per_minute: int = 60,
        discogs_429_every: int | None = None,
        discogs_token: str | None = None,
        discogs_window_seconds: float = 60.0,
        catalogue: Catalogue = DEMO_CATALOGUE,
    ) -> None:
        self.catalogue = catalogue
        self.musicbrainz_rate_per_second = musicbrainz_rate_per_second
        self.discogs_window = DiscogsWindow(
            discogs_rate_per_minute, discogs_429_every, discogs_window_seconds
        )
        self.discogs_token = discogs_token
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

    @property
    def discogs_url(self) -> str:
        """The value for `DISCOGS_BASE_URL`."""
        return f"{self.base_url}/discogs"

    @property
    def images_url(self) -> str:
        """Where the image host serves its files."""
        return f"{self.base_url}/images"

    def fail(
        self, path_contains: str, status: int, *, times: int = 1, body: Any = None, **headers: str
    ) -> None:
        """Answer `status` (and `body`) to the next `times` requests whose path has the text."""
        with self._lock:
            self._faults.append(Fault(path_contains, status, times, headers, body))

    def stall(self, path_contains: str, seconds: float) -> None:
        """Hold every answer to a path containing the text for `seconds` (a slow provider)."""
        with self._lock:
            self._stalls[path_contains] = seconds

    def musicbrainz_requests(self) -> list[RecordedRequest]:
        """Every request made to the MusicBrainz routes."""
        return [r for r in self.requests if r.path.startswith("/ws/2/")]

    def discogs_requests(self) -> list[RecordedRequest]:
        """Every request made to the Discogs routes."""
        return [r for r in self.requests if r.path.startswith("/discogs/")]

    def respond(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Answer:
        """The answer to one GET (and a record of it)."""
        answer = self._route(path, query, headers)
        record = RecordedRequest(
            time.monotonic(),
            path,
            answer.status,
            headers.get("user-agent", ""),
            headers.get("authorization"),
        )
        with self._lock:
            self.requests.append(record)
        return answer

    def _route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Answer:
        agent = headers.get("user-agent", "")
        if not agent or agent.lower().startswith(GENERIC_AGENTS):
            return Answer(403, {"error": "A specific User-Agent is required."})
        with self._lock:
            stall = max((s for text, s in self._stalls.items() if text in path), default=0.0)
        time.sleep(stall)  # each request has its own server thread
        fault = self._take_fault(path)
        if fault is not None:
            body = fault.body if fault.body is not None else {"error": "Injected failure"}
            return Answer(fault.status, body, fault.headers)
        if path.startswith("/ws/2/"):
            if self._over_rate():
                return Answer(503, {"error": "Your requests are exceeding the allowable rate."})
            return Answer(*musicbrainz(path.removeprefix("/ws/2/"), query, self.catalogue))
        if path.startswith("/caa/release-group/"):
            mbid = path.removeprefix("/caa/release-group/")
            return Answer(*coverart(mbid, self.images_url, self.catalogue))
        if path.startswith("/discogs/"):
            return self._discogs(path.removeprefix("/discogs/"), query, headers)
        if path.startswith("/images/"):
            return self._image(path.removeprefix("/images/"), query)
        return Answer(404, {"error": "Not Found"})

    def _discogs(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Answer:
        token = headers.get("authorization", "").removeprefix("Discogs token=")
        if not token or (self.discogs_token is not None and token != self.discogs_token):
            return Answer(401, {"message": "You must authenticate to access this resource."})
        allowed, limits = self.discogs_window.admit()
        if not allowed:
            return Answer(429, {"message": "You are making requests too quickly."}, limits)
        status, body = discogs(path, query, self.images_url, self.discogs_url, self.catalogue)
        return Answer(status, body, limits)

    def _image(self, name: str, query: dict[str, str]) -> Answer:
        if name == "redirect":  # for tests: send the client wherever `to` says
            return Answer(302, b"", {"Location": query.get("to", "/")}, "text/plain")
        size = None
        if query.get("w", "").isdigit() and query.get("h", "").isdigit():
            size = (int(query["w"]), int(query["h"]))
        status, body, content_type = image_answer(name, size)
        return Answer(status, body, content_type=content_type)

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
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = providers.respond(url.path, query, headers)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            for name, value in answer.headers.items():
                self.send_header(name.replace("_", "-"), value)
            if isinstance(answer.body, Iterator):
                self._stream(answer.body)
                return
            payload = (
                answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            )
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, chunks: Iterator[bytes]) -> None:
            # No length: the body ends when the connection closes (or the client gives up).
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: exactly what a size cap does

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded on `providers.requests` instead

    return Handler
