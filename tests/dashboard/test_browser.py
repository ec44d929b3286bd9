"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.providers import LocalProviders
from tests.dashboard.hostile import HOSTILE, LINK, TRACKER, cache_entry, seed_family
from tests.helpers import DASHBOARD_APP as APP
from tests.helpers import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
READY = (
    '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
    '[data-test-script-state="notRunning"]'
)

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
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as answer:
                if answer.status == 200:
                    break
        except (URLError, ConnectionError):
            assert time.monotonic() < deadline, (tmp_path / "streamlit.log").read_text()
            time.sleep(0.2)
    yield url
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
    await page.wait_for_selector(READY, timeout=30_000)
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
    await page.wait_for_selector(READY, timeout=30_000)
    await expect(page.get_by_text(f"Family of {root}")).to_be_visible(timeout=30_000)
    await expect(page.locator('[data-testid="stVegaLiteChart"] g.mark-rect path')).to_have_count(5)


async def test_kick_form_adds_a_root(
    dashboard_url: str,
    page: Page,
    seeded: dict[str, str],
) -> None:
    await page.goto(f"{dashboard_url}/kick")
    await page.wait_for_selector(READY, timeout=30_000)
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
        await page.wait_for_selector(READY, timeout=30_000)
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
    await page.wait_for_selector(READY, timeout=30_000)
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
    await page.wait_for_selector(READY, timeout=30_000)
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
