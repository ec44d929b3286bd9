"""How a dashboard page opens in Debian's Chromium: seconds until drawn, HTML size, DOM nodes.

The dashboard is served as `enrichment dashboard` serves it (`streamlit run`, its imports
done first) on a free port against the given store settings; Playwright drives
`/usr/bin/chromium` (never a downloaded browser).
"""

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.error import URLError

from playwright.async_api import BrowserContext, ViewportSize, async_playwright

from dashboard.command import streamlit_command
from service.config import Settings

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
# Drawn: a chart is on the page and the script has finished its run.
DRAWN = '[data-testid="stVegaLiteChart"] svg.marks'
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'  # noqa: E501

VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}


@dataclass(frozen=True)
class PageFigures:
    """Seconds until drawn (medians of first and of return visits), HTML bytes, elements.

    A first visit, in a fresh browser profile, loads and compiles Streamlit's front end; a
    return visit, in the same profile, has it cached (as a user's browser does). The browser
    is running already, as a user's is: its own start-up is not a visit's (it added 0.3-0.7
    s to the first page it drew, measured), and the dashboard's server has served one
    page before (its first session connects to the store).
    """

    first_seconds: float
    seconds: float
    html_bytes: int
    nodes: int
    cold_seconds: float  # the very first page: a browser just started, a server's first session


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1, for a server of the benchmark's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dashboard(env: dict[str, str]) -> Iterator[str]:
    """The dashboard's server, as `enrichment dashboard` runs it, on a free loopback port."""
    port = free_port()
    settings = Settings().model_copy(update={"dashboard_host": "127.0.0.1"})
    process = subprocess.Popen(
        streamlit_command(settings, port, preload=True),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                return
        except (URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start at {url}") from None
            time.sleep(0.2)


async def _open(url: str, repeats: int) -> PageFigures:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        profile = await browser.new_context(viewport=VIEWPORT)
        cold, _, _ = await _visit(profile, url)  # the browser's and the server's first page
        await profile.close()
        firsts, returns = [], []
        for _ in range(repeats):
            profile = await browser.new_context(viewport=VIEWPORT)
            firsts.append(await _visit(profile, url))
            returns.append(await _visit(profile, url))
            await profile.close()
        await browser.close()
    _, size, nodes = returns[-1]
    return PageFigures(
        statistics.median(seconds for seconds, _, _ in firsts),
        statistics.median(seconds for seconds, _, _ in returns),
        size,
        nodes,
        cold,
    )


async def _visit(profile: BrowserContext, url: str) -> tuple[float, int, int]:
    """Open `url` in a new tab: seconds until drawn and idle, HTML bytes, elements."""
    page = await profile.new_page()
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector(DRAWN, timeout=180_000)
    await page.wait_for_selector(IDLE, timeout=180_000)
    seconds = time.perf_counter() - started
    size = len((await page.content()).encode())
    nodes = int(await page.evaluate("document.getElementsByTagName('*').length"))
    await page.close()
    return seconds, size, nodes


def open_page(url: str, repeats: int) -> PageFigures:
    """Open `url` in a just started browser, then twice in each of `repeats` fresh profiles."""
    return asyncio.run(_open(url, repeats))
