"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect
from redis import Redis

from scripts.chromium_page import CHROMIUM_FLAGS, IDLE
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.providers import LocalProviders
from service.embedded_store import is_listening
from service.store import LOGS
from tests.dashboard.hostile import HOSTILE, LINK, TRACKER, cache_entry, seed_family
from tests.helpers import DASHBOARD_APP as APP
from tests.helpers import free_port, until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
READY = IDLE
# A server's first page imports pandas, Altair and the service: on two cores busy with the
# other half of the suite (a demo's workers, another browser) that has taken over 30 s.
FIRST_RUN_MS = 90_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture
def dashboard_url(settings_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on a free loopback port, with the test's settings."""
    port = free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamlit", "run", APP, "--server.headless", "true"),
            *("--server.port", str(port), "--server.address", "127.0.0.1"),
            *("--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"),
            *("--client.toolbarMode", "minimal"),
        ],
        env={**os.environ, **settings_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except (URLError, ConnectionError):
                assert time.monotonic() < deadline, (tmp_path / "streamlit.log").read_text()
                time.sleep(0.2)
        yield url
    finally:  # a server that never came up is stopped too
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        await browser.close()


async def open_roots(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    await page.wait_for_selector('[data-testid="stExpander"]', timeout=30_000)


async def expand(page: Page, title: str) -> None:
    summary = page.locator('[data-testid="stExpander"] summary', has_text=title)
    await summary.click()
    await page.wait_for_selector(
        "details[open] [data-testid='stVegaLiteChart'] svg.marks", timeout=30_000
    )


async def test_roots_family_chart_cards_and_errors(
    dashboard_url: str,
    page: Page,
    seeded: dict[str, str],
) -> None:
    await open_roots(page, dashboard_url)
    summaries = await page.locator('[data-testid="stExpander"] summary').all_inner_texts()
    assert any("Northern Drift" in s for s in summaries)
    assert any("Copper Wires" in s for s in summaries)
    assert len(summaries) == 2

    await expand(page, "Northern Drift")
    body = page.locator("details[open]")
    bars = body.locator('[data-testid="stVegaLiteChart"] g.mark-rect path')
    await expect(bars).to_have_count(8)  # the root and its 7 descendants
    cards = await body.locator(
        '[data-testid="stMarkdownContainer"] p', has_text="attempt"
    ).all_inner_texts()
    kinds = [c.split("·")[0].strip().split()[-1] for c in cards]
    assert kinds[0] == "enrich_album"
    assert kinds.index("enrich_artist") < kinds.index("discogs_artist")
    await page.wait_for_timeout(500)  # the expander's opening animation
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-family.png"), full_page=True)

    await expand(page, "Copper Wires")
    alerts = page.locator('details[open] [data-testid="stAlert"]')
    await expect(alerts.filter(has_text="NotAnImageError")).to_have_count(1)


async def test_deep_link_opens_a_family(
    dashboard_url: str,
    page: Page,
    seeded: dict[str, str],
) -> None:
    root = seeded["Copper Wires"]
    await page.goto(f"{dashboard_url}/?root={root}")
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    await expect(page.get_by_text(f"Family of {root}")).to_be_visible(timeout=30_000)
    await expect(page.locator('[data-testid="stVegaLiteChart"] g.mark-rect path')).to_have_count(5)


async def test_kick_form_adds_a_root(
    dashboard_url: str,
    page: Page,
    seeded: dict[str, str],
) -> None:
    await page.goto(f"{dashboard_url}/kick")
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    await page.get_by_label("title").fill("Tidal Glass")
    await page.get_by_label("artist (albums)").fill("Vela Nord")
    await page.get_by_role("button", name="Kick").click()
    await expect(page.get_by_text("Kicked root")).to_be_visible(timeout=30_000)
    for _ in range(40):  # the in-process worker runs it; the table refreshes on reload
        await open_roots(page, dashboard_url)
        if await page.locator('[data-testid="stExpander"] summary', has_text="Tidal Glass").count():
            break
        await asyncio.sleep(0.5)
    summaries = await page.locator('[data-testid="stExpander"] summary').all_inner_texts()
    assert len(summaries) == 3


class TestAutoRefresh:
    """A family still running refreshes its page by itself."""

    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        # The Discogs match is held up for seconds: give jobs time so none times out.
        return {**settings_env, "JOB_TIMEOUT_SECONDS": "20", "JOB_LEASE_SECONDS": "40"}

    async def test_a_running_family_refreshes_itself(
        self, dashboard_url: str, page: Page, client: EnrichmentClient, providers: LocalProviders
    ) -> None:
        # A new server's first page imports the app, a browser's first page loads its
        # scripts: many seconds on busy cores, which must not eat into the 12 s below.
        await page.goto(dashboard_url)
        await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
        providers.stall("/discogs/artists/", 12)
        root = await client.kick_artist(name="Mira Kestrel")
        for _ in range(200):  # until the Discogs match is running (held up by the provider)
            if any(e.status == "running" for e in (await client.timeline(root)).children):
                break
            await asyncio.sleep(0.1)
        await page.goto(f"{dashboard_url}/?root={root}")
        await page.wait_for_selector(READY, timeout=30_000)
        bars = page.locator('[data-testid="stVegaLiteChart"] g.mark-rect path')
        await expect(bars).to_have_count(2)  # the root, and its Discogs match growing to now
        await expect(page.get_by_text("Still running")).to_be_visible()
        # Its pending card says where it runs, like Temporal's pending activity.
        await expect(page.get_by_text("running: discogs_artist")).to_be_visible()
        # No reload from here: the page picks up the Discogs match and the image by itself.
        await expect(bars).to_have_count(3, timeout=45_000)
        await expect(page.get_by_text("Still running")).to_have_count(0, timeout=10_000)


async def test_provider_markup_renders_as_text(
    dashboard_url: str, page: Page, mongo: Any, settings: Settings
) -> None:
    discogs = {"jobId": "d1", "jobType": "discogs_artist", "status": "success",
               "entityName": HOSTILE,
               "details": {"discogsId": 7, "matchedName": LINK, "outcome": "matched",
                           "genres": [TRACKER], "profile": HOSTILE}}  # fmt: skip
    failed = {"jobId": "f1", "jobType": "enrich_artist", "status": "failed",
              "entityName": f"{LINK} ops@example.com www.example.com",
              "error": {"type": "ProviderError", "message": HOSTILE,
                        "retryable": False}}  # fmt: skip
    await seed_family(mongo, settings, "root-hostile", discogs, failed)
    hostile_links = page.locator(
        'a[href*="evil.example"], img[src*="tracker.example"], img[src="x"]'
    )

    await open_roots(page, dashboard_url)
    summary = page.locator('[data-testid="stExpander"] summary')
    assert LINK in await read(summary)  # the Markdown, as text
    await expand(page, "Re-login here")
    family = await read(page.locator("details[open]"))
    assert ":red[alarm] <img src=x onerror=alert(1)> $x^2$" in family
    assert TRACKER in family
    assert "ops@example.com www.example.com" in family
    await expect(hostile_links).to_have_count(0)

    await page.goto(f"{dashboard_url}/?root={quote(LINK)}")
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    await expect(page.get_by_text("Family of")).to_be_visible(timeout=30_000)
    assert f"Family of {LINK}" in await read(page.locator("h1"))
    await expect(hostile_links).to_have_count(0)


async def read(locator: Locator) -> str:
    """What a reader sees (the invisible word joiners that break autolinks taken out)."""
    return (await locator.first.inner_text()).replace("\u2060", "")


async def test_an_image_that_cannot_load_shows_a_placeholder(
    dashboard_url: str, page: Page, mongo: Any, settings: Settings
) -> None:
    gone = f"http://127.0.0.1:{free_port()}/images/cover.png"  # nothing serves it any more
    await seed_family(
        mongo, settings, "root-gone",
        cache_entry("c1", beforeUrl=gone, beforeUrlFetched=True, cachePath="ab/missing.png"),
        cache_entry("c2", beforeUrl=gone, beforeUrlFetched=True, cacheLocation="cloudflare",
                    afterUrl=f"{gone}?variant=public"),
    )  # fmt: skip
    await page.goto(f"{dashboard_url}/?root=root-gone")
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    images = page.locator('[data-testid="stImage"] img')
    await expect(images.first).to_be_visible(timeout=30_000)
    assert await broken_images(page) == []
    await expect(images).to_have_count(4)  # before and after, twice: placeholders
    assert "127.0.0.1" in await read(page.locator("body"))  # the URLs, as text


async def broken_images(page: Page) -> list[str]:
    """The image sources on the page that did not load (a broken-image icon each)."""
    await page.wait_for_function(
        "[...document.images].every(image => image.complete)", timeout=30_000
    )
    return list(
        await page.evaluate(
            "[...document.images].filter(image => image.naturalWidth === 0).map(i => i.src)"
        )
    )


@dataclass
class ServedDemo:
    """`enrichment demo --serve` in a child process, and what it has printed so far."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    async def printed(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first printed line matching `pattern`, waiting for it up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            await asyncio.sleep(0.2)


@pytest.fixture
def served_demo(settings_env: dict[str, str], mongo: Any, tmp_path: Path) -> Iterator[ServedDemo]:
    """The demo as a newcomer serves it: only the store, database and Redis from the test."""
    env = {**os.environ, "COLUMNS": "200"}
    env.update({k: settings_env[k] for k in ("MONGODB_URL", "MONGODB_DB", "REDIS_URL")})
    env.update(ENRICHMENT_DATA_DIR=str(tmp_path / "data"), IMAGE_CACHE_DIR=str(tmp_path / "images"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = ServedDemo(process, port)
    reader = threading.Thread(target=demo.read, daemon=True)
    reader.start()
    yield demo
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    reader.join(10)  # the pipe ends with the process
    assert process.stdout is not None
    process.stdout.close()


async def test_demo_serve_fills_a_kicked_family_live_then_stops_on_ctrl_c(
    served_demo: ServedDemo, page: Page, mongo: Any, settings: Settings
) -> None:
    queue = (await served_demo.printed(r"broker: Redis stream (\S+)", 120))[1]
    url = (await served_demo.printed(r"Dashboard: (http://\S+)", 300))[1]
    assert url == f"http://127.0.0.1:{served_demo.port}"

    await page.goto(f"{url}/kick")
    await page.wait_for_selector(READY, timeout=FIRST_RUN_MS)
    await page.get_by_label("album title or artist name").fill("Tidal Glass")
    await page.get_by_label("artist (albums)").fill("Vela Nord")
    await page.get_by_role("button", name="Kick").click()
    kicked = page.get_by_text("Kicked root")
    await expect(kicked).to_be_visible(timeout=30_000)
    root_id = (await kicked.inner_text()).split()[2].rstrip(":")
    await page.evaluate("window.stillTheSamePage = true")  # a reload would forget it
    bars = page.locator('[data-testid="stVegaLiteChart"] g.mark-rect path')
    await expect(page.get_by_text("Still running")).to_be_visible(timeout=30_000)
    first = await bars.count()

    # No reload from here: the family grows on the page until every job has finished.
    await expect(page.get_by_text("Still running")).to_have_count(0, timeout=120_000)
    family = {"$or": [{"jobId": root_id}, {"parentJobId": root_id}]}
    attempts = await mongo[settings.mongodb_db][LOGS].count_documents(family)
    assert attempts >= 5  # the album, its cover, its artist, the Discogs match, its photo
    await expect(bars).to_have_count(attempts, timeout=30_000)
    assert first < attempts
    assert await page.evaluate("window.stillTheSamePage === true")

    # The axis reads as offsets from the root's start; marks and images need nothing extra.
    x_axis = page.locator('[data-testid="stVegaLiteChart"] g[aria-label^="X-axis"] text')
    ticks = [t for t in await x_axis.all_text_contents() if t.strip()]
    assert len(ticks) >= 2, ticks
    assert all(re.fullmatch(r"\+\d+\.\d s", tick) for tick in ticks), ticks
    # A status mark per card, drawn from Streamlit's Material Symbols font (no emoji font).
    marks = page.locator('[data-testid="stMarkdownContainer"] [role="img"][aria-label$=" icon"]')
    # The cards are drawn after the chart, in the same rerun: wait for them as for the bars.
    await until(marks.count, lambda count: count >= attempts, 30)
    assert await broken_images(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-demo-serve.png"), full_page=True)

    # The new root is on the Roots page too, beside the demo's eight.
    await page.get_by_role("link", name="Roots").click()
    summaries = page.locator('[data-testid="stExpander"] summary')
    await expect(summaries).to_have_count(9, timeout=30_000)
    await expect(summaries.filter(has_text="Tidal Glass")).to_have_count(2)
    assert await page.evaluate("window.stillTheSamePage === true")

    # Ctrl-C stops all it started: the dashboard, the worker and providers, the demo's streams.
    served_demo.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(served_demo.process.wait, 60) == 0
    await served_demo.printed("Stopped the dashboard, the worker and the local providers", 5)
    assert not is_listening(served_demo.port)
    with Redis.from_url(settings.redis_url) as redis:
        assert not redis.exists(queue)
        assert not list(redis.scan_iter(match=f"{queue}:*"))
