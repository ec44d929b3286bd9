"""The image fetcher against a real HTTP server on loopback: SSRF checks, caps, Pillow."""

import asyncio
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any, ClassVar

import httpx
import pytest
from PIL import Image

from service.errors import (
    ImageDownloadError,
    ImageFetchError,
    ImageTooLargeError,
    NotAnImageError,
    RetryableError,
    UnsafeUrlError,
)
from service.providers.images import ImageFetcher, inspect_image
from service.urls import display_url

CAP = 256 * 1024
MAX_PIXELS = 1_000_000
DEADLINE = 10.0
CHUNK = 64 * 1024
STREAMED_TOTAL = 32 * 1024 * 1024
DECLARED_TOTAL = 100 * 1024 * 1024
BOMB_TOTAL = 200 * 1024 * 1024
DRIP_SECONDS = 0.2
DRIP_MAX_BYTES = 600  # two minutes of dripping, so a forgotten handler thread still ends


def make_image(image_format: str, size: tuple[int, int]) -> bytes:
    """A real image of `size`, encoded in memory."""
    buffer = BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, format=image_format)
    return buffer.getvalue()


def gzipped(chunks: Iterator[bytes]) -> bytes:
    """The chunks as one gzip member, compressed as they come (never all in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    return b"".join(compressor.compress(chunk) for chunk in chunks) + compressor.flush()


def zeros(total: int) -> Iterator[bytes]:
    """`total` zero bytes, a megabyte at a time."""
    for _ in range(total // (1 << 20)):
        yield bytes(1 << 20)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit PNG declaring `width` x `height` whose pixel data is garbage: decoding fails."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"not pixels")
        + png_chunk(b"IEND", b"")
    )


def make_bilevel_png(size: tuple[int, int]) -> bytes:
    """A valid 1-bit PNG of `size`: a few kilobytes even for millions of pixels."""
    buffer = BytesIO()
    Image.new("1", size).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = make_image("PNG", (3, 2))
JPEG = make_image("JPEG", (5, 4))


@cache
def gzip_bomb() -> bytes:
    """gzip inside gzip: about 500 bytes on the wire, 200 MiB once both layers are undone."""
    return gzipped(iter([gzipped(zeros(BOMB_TOTAL))]))


BODIES = {
    "/png": (PNG, "image/png"),
    "/jpeg": (JPEG, "image/jpeg"),
    "/html": (b"<html><body>not a cover</body></html>", "text/html"),
}
REDIRECTS = {
    "/to-private": "http://10.0.0.1/cover.png?sig=secret",
    "/to-metadata": "http://169.254.169.254/latest/meta-data",
    "/to-ftp": "ftp://127.0.0.1/cover.png",
    "/loop/a": "/loop/b",
    "/loop/b": "/loop/a",
}


@dataclass
class ServerState:
    """What the server saw and did, shared with the handler threads."""

    paths: list[str] = field(default_factory=list)
    streamed_bytes: int = 0
    stream_finished: threading.Event = field(default_factory=threading.Event)


class ImageHandler(BaseHTTPRequestHandler):
    """Routes for every case; HTTP/1.0, so a body without Content-Length ends at close."""

    state: ServerState

    def do_GET(self) -> None:
        self.state.paths.append(self.path)
        path = self.path.partition("?")[0]
        route, _, argument = path.strip("/").partition("/")
        if path in BODIES:
            self.send_body(200, *BODIES[path])
        elif path in REDIRECTS:
            self.redirect(302, REDIRECTS[path])
        elif route == "chain":
            hops = int(argument)
            self.redirect(302, f"/chain/{hops - 1}" if hops > 1 else "/png")
        elif route == "redirect":
            self.redirect(int(argument), f"http://{self.headers['Host']}/jpeg")
        elif route == "status":
            self.send_body(int(argument), b"error", "text/plain")
        elif route in self.SPECIAL:
            self.SPECIAL[route](self)
        else:
            self.send_body(404, b"no such route", "text/plain")

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_huge_declared(self) -> None:
        # Declares far more than it sends: a client that ignored Content-Length and streamed
        # would hit the early close (a download error), not the size cap.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(DECLARED_TOTAL))
        self.end_headers()
        self.wfile.write(b"\0" * 1024)

    def send_huge_streamed(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            while self.state.streamed_bytes < STREAMED_TOTAL:
                self.wfile.write(b"\0" * CHUNK)
                self.state.streamed_bytes += CHUNK
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: exactly what the test wants to see
        finally:
            self.state.stream_finished.set()

    def stall(self) -> None:
        time.sleep(1)
        self.send_body(200, PNG, "image/png")

    def send_encoded(self, coding: str, body: bytes) -> None:
        # Sent although the client asked for identity, as a hostile server would.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Encoding", coding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_gzip_bomb(self) -> None:
        self.send_encoded("gzip, gzip", gzip_bomb())

    def send_gzipped_png(self) -> None:
        self.send_encoded("gzip", gzipped(iter([PNG])))

    def send_identity_png(self) -> None:
        self.send_encoded("identity", PNG)

    def drip(self) -> None:
        # Each byte arrives well within any read timeout; the whole never arrives.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(DRIP_MAX_BYTES):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    SPECIAL: ClassVar[dict[str, Callable[["ImageHandler"], None]]] = {
        "huge-declared": send_huge_declared,
        "huge-streamed": send_huge_streamed,
        "stall": stall,
        "gzip-bomb": send_gzip_bomb,
        "gzipped": send_gzipped_png,
        "identity": send_identity_png,
        "drip": drip,
    }


@dataclass
class ImageServer:
    """A running server: its base URL and what it saw."""

    base: str
    state: ServerState


@pytest.fixture
def server() -> Iterator[ImageServer]:
    state = ServerState()
    handler = type("Handler", (ImageHandler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    # A short poll interval keeps shutdown() (and so each test's teardown) fast.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield ImageServer(f"http://127.0.0.1:{httpd.server_port}", state)
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def sent() -> list[httpx.URL]:
    """Every URL the HTTP client started a request to."""
    return []


@pytest.fixture
async def http(sent: list[httpx.URL]) -> AsyncIterator[httpx.AsyncClient]:
    async def record(request: httpx.Request) -> None:
        sent.append(request.url)

    # follow_redirects=True on the client proves the fetcher turns it off for every request.
    async with httpx.AsyncClient(
        timeout=5, follow_redirects=True, event_hooks={"request": [record]}
    ) as client:
        yield client


def make_fetcher(
    http: httpx.AsyncClient,
    *,
    deadline_seconds: float = DEADLINE,
    allowed_hosts: frozenset[str] = frozenset({"127.0.0.1"}),
) -> ImageFetcher:
    """A fetcher with the tests' caps."""
    return ImageFetcher(
        http,
        deadline_seconds=deadline_seconds,
        max_pixels=MAX_PIXELS,
        allowed_hosts=allowed_hosts,
        max_bytes=CAP,
    )


@pytest.fixture
def fetcher(http: httpx.AsyncClient) -> ImageFetcher:
    return make_fetcher(http)


@pytest.fixture
def strict_fetcher(http: httpx.AsyncClient) -> ImageFetcher:
    return make_fetcher(http, allowed_hosts=frozenset())


async def test_png_is_fetched_and_inspected(fetcher: ImageFetcher, server: ImageServer) -> None:
    image = await fetcher.fetch(f"{server.base}/png")
    assert (image.url, image.data, image.status) == (f"{server.base}/png", PNG, 200)
    assert image.content_type == "image/png"
    info = await fetcher.inspect(image.data)
    assert (info.format, info.width, info.height) == ("PNG", 3, 2)
    assert (info.mime, info.extension) == ("image/png", "png")


async def test_jpeg_is_fetched_and_inspected(fetcher: ImageFetcher, server: ImageServer) -> None:
    info = await fetcher.inspect((await fetcher.fetch(f"{server.base}/jpeg")).data)
    assert (info.format, info.width, info.height) == ("JPEG", 5, 4)
    assert (info.mime, info.extension) == ("image/jpeg", "jpg")


async def test_relative_redirect_chain_is_followed(
    fetcher: ImageFetcher, server: ImageServer
) -> None:
    image = await fetcher.fetch(f"{server.base}/chain/2")
    assert image.url == f"{server.base}/png"
    assert image.data == PNG
    assert server.state.paths == ["/chain/2", "/chain/1", "/png"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(
    fetcher: ImageFetcher, server: ImageServer, status: int
) -> None:
    image = await fetcher.fetch(f"{server.base}/redirect/{status}")
    assert image.url == f"{server.base}/jpeg"
    assert image.data == JPEG


async def test_max_redirects_hops_are_allowed(fetcher: ImageFetcher, server: ImageServer) -> None:
    image = await fetcher.fetch(f"{server.base}/chain/5")
    assert image.data == PNG


async def test_one_hop_too_many_is_refused(fetcher: ImageFetcher, server: ImageServer) -> None:
    with pytest.raises(UnsafeUrlError, match="more than 5 redirects") as caught:
        await fetcher.fetch(f"{server.base}/chain/6")
    assert caught.value.retryable is False
    assert len(server.state.paths) == 6
    assert "/png" not in server.state.paths


async def test_redirect_loop_is_refused(fetcher: ImageFetcher, server: ImageServer) -> None:
    with pytest.raises(UnsafeUrlError, match="redirect loop"):
        await fetcher.fetch(f"{server.base}/loop/a")
    assert server.state.paths == ["/loop/a", "/loop/b"]


@pytest.mark.parametrize(
    ("path", "target", "reason"),
    [
        ("/to-private", "10.0.0.1", "10.0.0.1 is a private address"),
        ("/to-metadata", "169.254.169.254", "169.254.169.254 is a link-local address"),
    ],
)
async def test_redirect_to_internal_address_is_refused_before_connecting(
    fetcher: ImageFetcher,
    server: ImageServer,
    sent: list[httpx.URL],
    path: str,
    target: str,
    reason: str,
) -> None:
    with pytest.raises(UnsafeUrlError, match=reason) as caught:
        await fetcher.fetch(f"{server.base}{path}")
    assert f"refusing http://{target}/" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert caught.value.url.startswith(f"http://{target}/")
    assert [url.host for url in sent] == ["127.0.0.1"]


async def test_loopback_is_refused_without_the_allow_list(
    strict_fetcher: ImageFetcher, server: ImageServer, sent: list[httpx.URL]
) -> None:
    with pytest.raises(UnsafeUrlError, match=r"127\.0\.0\.1 is a loopback address"):
        await strict_fetcher.fetch(f"{server.base}/png")
    assert sent == []
    assert server.state.paths == []


async def test_host_names_are_resolved_and_checked(
    strict_fetcher: ImageFetcher, server: ImageServer
) -> None:
    port = server.base.rsplit(":", 1)[1]
    with pytest.raises(UnsafeUrlError, match="is a loopback address"):
        await strict_fetcher.fetch(f"http://localhost:{port}/png")
    assert server.state.paths == []


async def test_every_resolved_address_is_checked(
    strict_fetcher: ImageFetcher, sent: list[httpx.URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fake_getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        assert (host, port, kwargs["type"]) == ("covers.example", 80, socket.SOCK_STREAM)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd12::1", port, 0, 0)),
        ]

    # DNS is the edge here: a name that answers one public and one private address.
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UnsafeUrlError, match="fd12::1 is a private address"):
        await strict_fetcher.fetch("http://covers.example/front.png")
    assert sent == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/cover.png", "::ffff:127.0.0.1 is a loopback address"),
        ("http://[::ffff:a9fe:a9fe]/latest", "is a link-local address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
    ],
)
async def test_internal_ip_literals_are_refused(
    strict_fetcher: ImageFetcher, sent: list[httpx.URL], url: str, reason: str
) -> None:
    with pytest.raises(UnsafeUrlError, match=reason):
        await strict_fetcher.fetch(url)
    assert sent == []


async def test_non_http_scheme_is_refused_even_for_allowed_hosts(
    fetcher: ImageFetcher, server: ImageServer, sent: list[httpx.URL]
) -> None:
    with pytest.raises(UnsafeUrlError, match="scheme 'ftp' is not http or https"):
        await fetcher.fetch("ftp://127.0.0.1/cover.png")
    with pytest.raises(UnsafeUrlError, match="scheme 'ftp'"):
        await fetcher.fetch(f"{server.base}/to-ftp")
    assert [url.path for url in sent] == ["/to-ftp"]


async def test_declared_oversize_is_refused_without_reading(
    fetcher: ImageFetcher, server: ImageServer
) -> None:
    with pytest.raises(ImageTooLargeError, match=f"image larger than {CAP} bytes") as caught:
        await fetcher.fetch(f"{server.base}/huge-declared")
    assert caught.value.retryable is False
    assert caught.value.status == 200


async def test_streamed_oversize_is_aborted_early(
    fetcher: ImageFetcher, server: ImageServer
) -> None:
    with pytest.raises(ImageTooLargeError, match=f"image larger than {CAP} bytes"):
        await fetcher.fetch(f"{server.base}/huge-streamed")
    assert await asyncio.to_thread(server.state.stream_finished.wait, 5)
    # Socket buffers absorb some bytes after the client stops; a full read would be 32 MiB.
    assert server.state.streamed_bytes < STREAMED_TOTAL // 8


async def test_stacked_gzip_bomb_is_refused_without_decoding(
    fetcher: ImageFetcher, server: ImageServer
) -> None:
    gzip_bomb()  # built before tracing starts: only the fetch is measured
    tracemalloc.start()
    try:
        with pytest.raises(
            ImageFetchError, match="Content-Encoding 'gzip, gzip' was not asked for"
        ) as caught:
            await fetcher.fetch(f"{server.base}/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not isinstance(caught.value, ImageTooLargeError)  # refused before, not at, the cap
    assert caught.value.retryable is False
    assert caught.value.status == 200
    # Decoding would have built 200 MiB; refusing reads a few hundred bytes.
    assert peak < 16 * 1024 * 1024


async def test_any_unasked_content_encoding_is_refused(
    fetcher: ImageFetcher, server: ImageServer
) -> None:
    with pytest.raises(ImageFetchError, match="Content-Encoding 'gzip' was not asked for"):
        await fetcher.fetch(f"{server.base}/gzipped")
    image = await fetcher.fetch(f"{server.base}/identity")
    assert image.data == PNG


async def test_slow_drip_is_cut_off_at_the_deadline(
    http: httpx.AsyncClient, server: ImageServer
) -> None:
    fetcher = make_fetcher(http, deadline_seconds=1)
    # The outer bound only turns a regression into a failure instead of a two-minute hang.
    async with asyncio.timeout(15):
        with pytest.raises(ImageDownloadError, match=r"download of .*/drip exceeded 1 s") as caught:
            await fetcher.fetch(f"{server.base}/drip?token=secret")
    assert caught.value.retryable is True
    assert "secret" not in str(caught.value)
    assert caught.value.url == f"{server.base}/drip"


async def test_html_is_fetched_but_not_an_image(fetcher: ImageFetcher, server: ImageServer) -> None:
    page = await fetcher.fetch(f"{server.base}/html")
    assert page.content_type == "text/html"
    with pytest.raises(NotAnImageError, match="not an image") as caught:
        await fetcher.inspect(page.data)
    assert caught.value.retryable is False


def test_corrupt_png_fails_verification() -> None:
    corrupt = bytearray(PNG)
    corrupt[-20] ^= 0xFF  # inside the IDAT chunk: opens fine, fails its CRC on verify()
    with Image.open(BytesIO(bytes(corrupt))) as image:
        assert image.format == "PNG"
    with pytest.raises(NotAnImageError):
        inspect_image(bytes(corrupt), max_pixels=MAX_PIXELS)


def test_truncated_jpeg_that_passes_verify_is_refused() -> None:
    buffer = BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(buffer, format="JPEG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    with Image.open(BytesIO(truncated)) as image:
        image.verify()  # Pillow's verify() does not decode: it lets this through
    with pytest.raises(NotAnImageError, match="truncated") as caught:
        inspect_image(truncated, max_pixels=MAX_PIXELS)
    assert caught.value.retryable is False


def test_pixel_bomb_is_refused_from_its_header_alone() -> None:
    bomb = png_header_only(6000, 6000)
    with Image.open(BytesIO(bomb)) as image:
        image.verify()  # a well-formed file: only the declared canvas is hostile
    # The pixel data is garbage, so refusing it as too large (not as undecodable) proves
    # that the canvas was judged before a single pixel was decoded.
    with pytest.raises(ImageTooLargeError, match="6000x6000 pixels is over the cap") as caught:
        inspect_image(bomb, max_pixels=MAX_PIXELS)
    assert caught.value.retryable is False


async def test_pixel_cap_is_the_fetchers_not_pillows(fetcher: ImageFetcher) -> None:
    # Both far below Pillow's own process-wide limit (about 89 megapixels).
    at_cap = await fetcher.inspect(make_bilevel_png((1000, MAX_PIXELS // 1000)))
    assert (at_cap.width, at_cap.height) == (1000, MAX_PIXELS // 1000)
    with pytest.raises(ImageTooLargeError, match="1001x1000 pixels"):
        await fetcher.inspect(make_bilevel_png((1001, 1000)))


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_client_errors_are_permanent(
    fetcher: ImageFetcher, server: ImageServer, status: int
) -> None:
    with pytest.raises(ImageFetchError, match=f"HTTP {status}") as caught:
        await fetcher.fetch(f"{server.base}/status/{status}?token=secret")
    assert not isinstance(caught.value, RetryableError)
    assert caught.value.retryable is False
    assert caught.value.status == status
    assert "secret" not in str(caught.value)
    assert caught.value.url == f"{server.base}/status/{status}"


@pytest.mark.parametrize("status", [503, 500, 429, 408])
async def test_server_errors_and_throttling_are_retryable(
    fetcher: ImageFetcher, server: ImageServer, status: int
) -> None:
    with pytest.raises(ImageDownloadError, match=f"HTTP {status}") as caught:
        await fetcher.fetch(f"{server.base}/status/{status}")
    assert isinstance(caught.value, RetryableError)
    assert caught.value.retryable is True
    assert caught.value.status == status


async def test_connection_refused_is_retryable(fetcher: ImageFetcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ImageDownloadError, match="ConnectError") as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/png")
    assert caught.value.retryable is True
    assert caught.value.status is None


async def test_timeout_is_retryable(server: ImageServer) -> None:
    async with httpx.AsyncClient(timeout=0.2) as http:
        impatient = make_fetcher(http)
        with pytest.raises(ImageDownloadError, match="timed out") as caught:
            await impatient.fetch(f"{server.base}/stall")
    assert caught.value.retryable is True


async def test_allowed_hosts_compare_case_insensitively(
    http: httpx.AsyncClient, server: ImageServer
) -> None:
    port = server.base.rsplit(":", 1)[1]
    fetcher = make_fetcher(http, allowed_hosts=frozenset({"LocalHost"}))
    image = await fetcher.fetch(f"http://LOCALHOST:{port}/png")
    assert image.data == PNG


def test_display_url_drops_query_fragment_and_credentials() -> None:
    shown = display_url("https://user:pass@cdn.example.com:8443/a/b.png?token=secret#frag")
    assert shown == "https://cdn.example.com:8443/a/b.png"
    assert display_url("http://[::1]:8080/x?token=secret") == "http://[::1]:8080/x"
    assert display_url("http://[::1/x?token=secret") == "<invalid URL>"
