"""Replay the security probes that need no browser; print one line per probe.

    uv run python -m scripts.security_check

Every probe is an attack that must be `refused`, or a control (the honest case) that must be
`ok`. Everything runs on loopback against a small server of hostile answers; no store, Redis
or worker is needed. Exits 1 when any probe gets the wrong answer.
"""

import asyncio
import gzip
import io
import logging
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import quote

from limits import parse
from PIL import Image
from pydantic import ValidationError

from dashboard.safe import browser_image, cached_thumbnail, plain
from service.config import Settings
from service.errors import EnrichmentError
from service.models.jobs import AlbumJob
from service.providers.http import ProviderApi, make_http_client, make_provider_client
from service.providers.images import ImageFetcher
from service.providers.ratelimit import SharedRateLimiter
from service.redaction import Redactor, protect

TOKEN = "Zq8+kV2/pL9=tR4wXy"
BOMB_BYTES = 64 * 1024 * 1024
Probe = Callable[[], Awaitable[str]]


class RefusedError(Exception):
    """The probe was refused; its text says how."""


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


BODIES = {
    "/png": ({}, _png((32, 32))),
    "/bomb": ({"Content-Encoding": "gzip, gzip"}, gzip.compress(gzip.compress(bytes(BOMB_BYTES)))),
    "/gzip": ({"Content-Encoding": "gzip"}, gzip.compress(_png((32, 32)))),
    "/pixels": ({}, _png((12_000, 12_000), mode="1")),
    "/truncated": ({}, _jpeg()[:4_000]),
    "/api/json": ({"Content-Type": "application/json"}, b'{"ok": true}'),
}


class Hostile(BaseHTTPRequestHandler):
    """Answers as a hostile image host or provider would."""

    other_origin = ""

    def do_GET(self) -> None:
        """One hostile (or, for the controls, honest) answer."""
        if self.path == "/drip":
            return self._drip()
        redirects = {"/api/away": f"{self.other_origin}/api/json", "/api/same": "/api/json"}
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.end_headers()
            return None
        headers, body = BODIES[self.path]
        self.send_response(200)
        for name, value in {"Content-Type": "image/png", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(120):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client gave up: the point of the probe

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def serving() -> Iterator[str]:
    """The hostile server, and a second one on another port (another origin)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Hostile) for _ in range(2)]
    Hostile.other_origin = f"http://127.0.0.1:{servers[1].server_address[1]}"
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{servers[0].server_address[1]}"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def image_probes(base: str, settings: Settings) -> dict[str, tuple[str, Probe]]:
    """Downloads through the worker's fetcher, with the loopback server allowed as a host."""

    def fetch(path: str, allowed: frozenset[str] = frozenset({"127.0.0.1"})) -> Probe:
        async def probe() -> str:
            async with make_http_client(settings, "") as http:
                images = ImageFetcher(
                    http, deadline_seconds=3, max_pixels=40_000_000, allowed_hosts=allowed
                )
                fetched = await images.fetch(path if "://" in path else base + path)
                info = await images.inspect(fetched.data)
            return f"{info.format} {info.width}x{info.height}, {len(fetched.data)} bytes"

        return probe

    bomb = len(BODIES["/bomb"][1])
    pixels = len(BODIES["/pixels"][1])
    return {
        "image: an ordinary PNG": ("ok", fetch("/png")),
        f"image: stacked gzip bomb ({bomb} bytes → 64 MiB)": ("refused", fetch("/bomb")),
        "image: a Content-Encoding not asked for (gzip)": ("refused", fetch("/gzip")),
        "image: slow drip, 1 byte / 0.5 s (deadline 3 s)": ("refused", fetch("/drip")),
        f"image: pixel bomb, 12000x12000 PNG of {pixels} bytes": ("refused", fetch("/pixels")),
        "image: truncated JPEG that passes verify()": ("refused", fetch("/truncated")),
        "image: loopback, not an allowed host": ("refused", fetch("/png", frozenset())),
        "image: IPv4-mapped IPv6 loopback": ("refused", fetch("http://[::ffff:127.0.0.1]/x")),
        "image: cloud metadata address": ("refused", fetch("http://169.254.169.254/latest/")),
        "image: file: URL": ("refused", fetch("file:///etc/passwd")),
    }


def provider_probes(base: str, settings: Settings) -> dict[str, tuple[str, Probe]]:
    """Requests through a provider API client (same-origin redirects only)."""

    def get(path: str) -> Probe:
        async def probe() -> str:
            limiter = SharedRateLimiter("async+memory://", parse("100/second"), "probe")
            async with make_provider_client(settings, "Probe", f"{base}/api/") as http:
                api = ProviderApi("Probe", http, limiter, retry_attempts=1, secrets=(TOKEN,))
                return str(await api.get_json(path, {}))

        return probe

    return {
        "provider: redirect within the API's origin": ("ok", get("same")),
        "provider: redirect to another origin": ("refused", get("away")),
        "provider: a URL httpx cannot build (InvalidURL)": ("refused", get("artist/\x00")),
    }


def secret_probes() -> dict[str, tuple[str, Probe]]:
    """Secrets echoed back in every form, in text, in log records, in settings errors."""
    redactor = Redactor([TOKEN])
    echoes = {
        "as given": TOKEN,
        "upper-cased": TOKEN.upper(),
        "URL-quoted": quote(TOKEN, safe=""),
        "partial (9 characters)": TOKEN[4:13],
        "in a URL's user:password@": "https://user:hunter2hunter2@img.example/a.jpg",
        "as a URL's signature": "https://cdn.example/a.jpg?Signature=abc123def456",
    }

    def echo(text: str) -> Probe:
        async def probe() -> str:
            shown = redactor.redact(f"provider said: {text}")
            if shown == f"provider said: {text}":
                return shown
            raise RefusedError(shown)

        return probe

    async def log_record() -> str:
        protect(TOKEN)
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        logging.getLogger("httpcore").addHandler(handler)
        logging.getLogger("httpcore").warning("headers %s", [(b"X-Echo", TOKEN.lower())])
        logging.getLogger("httpcore").removeHandler(handler)
        if TOKEN.lower() in stream.getvalue():
            return stream.getvalue().strip()
        raise RefusedError(stream.getvalue().strip())

    async def settings_error() -> str:
        try:
            Settings.model_validate({"CLOUDFLARE_API_TOKEN": TOKEN, "DASHBOARD_PASSWORD": TOKEN})
        except ValidationError as exc:
            if TOKEN in str(exc):
                return str(exc)
            raise RefusedError(exc.errors(include_url=False)[0]["msg"]) from exc
        return "accepted"

    probes: dict[str, tuple[str, Probe]] = {
        f"secret: echo {how}": ("refused", echo(text)) for how, text in echoes.items()
    }
    probes["secret: a log record quoting a token (httpcore)"] = ("refused", log_record)
    probes["secret: a settings error with a token set"] = ("refused", settings_error)
    return probes


def input_probes() -> dict[str, tuple[str, Probe]]:
    """What the client, the CLI and the Kick form refuse before anything is kicked."""

    def album(**fields: str) -> Probe:
        async def probe() -> str:
            try:
                return AlbumJob.model_validate(fields).label
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                raise RefusedError(f"{error['loc'][0]}: {error['msg']}") from exc

        return probe

    mbid = "0383dadf-2a4e-4d10-a46a-e9e041da8eb3"
    return {
        "input: a title and an artist": ("ok", album(title="OK Computer", artist="Radiohead")),
        "input: MBID with a trailing newline": ("refused", album(mbid=mbid + "\n")),
        "input: 513-character title": ("refused", album(title="t" * 513)),
        "input: unencodable title (lone surrogate)": ("refused", album(title="a\udcffb")),
    }


def dashboard_probes(cache: Path) -> dict[str, tuple[str, Probe]]:
    """What the dashboard's pages hand Streamlit, checked without a browser."""
    hostile = "[Re-login](https://evil.example) ![t](https://tracker.example/p.gif) <b>x</b>"

    def refused_if_none(value: object) -> Probe:
        async def probe() -> str:
            if value is None:
                raise RefusedError("shown as text")
            return repr(value)[:80]

        return probe

    async def markdown() -> str:
        shown = plain(hostile)
        if "](" in shown or "<b>" in shown or "https://" in shown:
            return shown
        raise RefusedError(shown[:70] + "…")

    return {
        "dashboard: provider Markdown in a label": ("refused", markdown),
        "dashboard: a path as the before image": (
            "refused",
            refused_if_none(browser_image("/etc/passwd", fetched=True)),
        ),
        "dashboard: a URL the worker never fetched": (
            "refused",
            refused_if_none(browser_image("https://intranet.example/a.png", fetched=False)),
        ),
        "dashboard: a cache path outside IMAGE_CACHE_DIR": (
            "refused",
            refused_if_none(cached_thumbnail("../../../../etc/passwd", cache, 40_000_000, 140)),
        ),
    }


async def run(name: str, expected: str, probe: Probe) -> bool:
    """Run one probe and print its line; True when it gave the expected answer."""
    started = time.monotonic()
    try:
        detail, verdict = await probe(), "ok"
    except RefusedError as exc:
        detail, verdict = str(exc), "refused"
    except EnrichmentError as exc:
        detail, verdict = f"{type(exc).__name__}: {exc}", "refused"
    took = time.monotonic() - started
    right = verdict == expected
    mark = verdict if right else f"WRONG ({verdict}, expected {expected})"
    print(f"{mark:<9} {name:<58} {took:5.2f} s  {detail[:110]}")
    return right


async def main() -> int:
    """Every probe, in order; the exit status says whether all gave the expected answer."""
    # Pillow warns about big canvases before our own cap refuses them; the cap is the answer.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    settings = Settings()
    with serving() as base, TemporaryDirectory() as cache:
        probes = {
            **image_probes(base, settings),
            **provider_probes(base, settings),
            **secret_probes(),
            **input_probes(),
            **dashboard_probes(Path(cache)),
        }
        results = [await run(name, expected, probe) for name, (expected, probe) in probes.items()]
    print(f"\n{sum(results)} of {len(results)} probes gave the expected answer")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
