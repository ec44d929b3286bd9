"""The offline demo, end to end: `enrichment demo` as a newcomer runs it."""

import asyncio
import io
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from service.config import Settings
from service.demo.catalogue import DEMO_ALBUM_MBIDS, DEMO_ALBUM_QUERIES, DEMO_ARTIST_NAMES
from service.demo.run import run_demo
from service.embedded_store import is_listening
from service.store import FRESHNESS, LOGS, make_mongo_client
from tests.helpers import free_port

ROOTS = len(DEMO_ALBUM_QUERIES) + len(DEMO_ALBUM_MBIDS) + len(DEMO_ARTIST_NAMES)


async def test_demo_command_runs_end_to_end(
    settings_env: dict[str, str], mongo: Any, settings: Settings, tmp_path: Path
) -> None:
    # The demo as a newcomer runs it: only the store, database and Redis come from the test.
    env = {**os.environ, "COLUMNS": "200"}
    env.update({k: settings_env[k] for k in ("MONGODB_URL", "MONGODB_DB", "REDIS_URL")})
    env["IMAGE_CACHE_DIR"] = str(tmp_path / "images")
    # An earlier demo run left its albums fresh: this one still shows the whole chains.
    await mongo[settings.mongodb_db][FRESHNESS].insert_many([
        {"_id": f"enrich_album/album:{f'{title} — {artist}'.casefold()}", "jobId": "earlier",
         "at": datetime.now(UTC)}
        for title, artist in DEMO_ALBUM_QUERIES
    ])  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "broker: Redis stream enrichment-demo-" in done.stdout
    # It ends by saying how to see all this in the dashboard, and how to kick from there.
    assert "uv run enrichment dashboard, then open http://127.0.0.1:8501" in done.stdout
    assert "uv run enrichment demo --serve" in done.stdout.splitlines()[-1]
    for title, _ in DEMO_ALBUM_QUERIES:
        assert title in done.stdout

    logs = mongo[settings.mongodb_db][LOGS]
    roots = [doc async for doc in logs.find({"isRootJob": True})]
    assert len({doc["jobId"] for doc in roots}) == ROOTS
    # Flat lineage: every other entry points at one of the roots.
    root_ids = {doc["jobId"] for doc in roots}
    children = [doc async for doc in logs.find({"isRootJob": False})]
    assert {doc["parentJobId"] for doc in children} <= root_ids
    outcomes = demo_outcomes(roots + children)
    assert outcomes >= EXPECTED_OUTCOMES
    # Two albums share their artwork: whichever is cached second is deduplicated.
    same_art = {o for t, e, o in outcomes if t == "cache_image" and e in SAME_ARTWORK}
    assert same_art == {"success", "success/deduplicated"}
    assert len(list((tmp_path / "images").rglob("*.*"))) == 5  # 2 covers + 3 artist images


SAME_ARTWORK = {"Tidal Glass", "Atlas of Small Hours"}


EXPECTED_OUTCOMES = {
    ("enrich_album", "Tidal Glass", "success"),
    ("enrich_album", "The Album That Never Was — Nobody In Particular", "skipped"),
    ("enrich_artist", "Static Orchard", "failed"),
    ("discogs_artist", "Vela Nord", "success/matched"),
    ("discogs_artist", "Okonkwo Brass Collective", "success/matched"),
    ("discogs_artist", "Harbor Lights", "skipped/ambiguous"),
    ("discogs_artist", "Quiet Cartographer", "skipped/no_match"),
    ("cache_image", "Northern Drift", "success"),
    ("cache_image", "Mira Kestrel", "success"),
    ("cache_image", "Copper Wires", "failed/NotAnImageError"),
    ("cache_image", "Lagos Night Shift", "failed/ImageTooLargeError"),
}


def demo_outcomes(documents: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(jobType, entity, outcome) for every log, the outcome refined by its details."""
    outcomes = set()
    for doc in documents:
        outcome, details = doc["status"], doc.get("details") or {}
        if doc["jobType"] == "discogs_artist":
            outcome += f"/{details.get('outcome')}"
        elif doc["jobType"] == "cache_image" and doc["error"]:
            outcome += f"/{doc['error']['type']}"
        elif doc["jobType"] == "cache_image" and details.get("deduplicated"):
            outcome += "/deduplicated"
        outcomes.add((doc["jobType"], doc["entityName"], outcome))
    return outcomes


async def test_demo_without_redis_or_mongodb_starts_its_own_store(tmp_path: Path) -> None:
    # Nothing configured but an unused Redis port: in-process broker, embedded store started
    # on demand in the background, data left behind in its SQLite file.
    settings = Settings.model_validate(
        {
            "MONGODB_URL": None,  # the embedded store, even when the suite runs on MongoDB
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "ENRICHMENT_DATA_DIR": str(tmp_path),
            "EMBEDDED_STORE_PORT": str(free_port()),
        }
    )
    assert settings.mongodb_url is None
    output = io.StringIO()
    try:
        timelines = await run_demo(settings, Console(file=output, width=200))
        statuses = {t.root[-1].entity_name: t.root[-1].status for t in timelines if t.root}
        store = make_mongo_client(settings.embedded_store_url)
        roots = await store[settings.mongodb_db][LOGS].count_documents({"isRootJob": True})
        await store.close()
    finally:
        if settings.store_pid_path.exists():
            os.kill(int(settings.store_pid_path.read_text()), signal.SIGTERM)
    assert "broker: in-process" in output.getvalue()
    assert len(timelines) == ROOTS
    assert roots >= ROOTS  # a retried root has one log per attempt
    assert statuses["Tidal Glass"] == "success"
    assert statuses["Mira Kestrel"] == "success"
    assert statuses["The Album That Never Was — Nobody In Particular"] == "skipped"
    assert (tmp_path / "store.sqlite").exists()


async def test_demo_serve_without_redis_says_it_needs_redis_and_starts_nothing(
    tmp_path: Path,
) -> None:
    # The dashboard's Kick form reaches the demo's worker through Redis: no Redis, no serving.
    env = {**os.environ, "COLUMNS": "200", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    env.pop("MONGODB_URL", None)
    env.update(ENRICHMENT_DATA_DIR=str(tmp_path), EMBEDDED_STORE_PORT=str(free_port()))
    port = free_port()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "demo", "--serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    said = " ".join(done.stdout.split())
    assert "demo --serve needs Redis" in said
    assert "without --serve" in said
    # Refused before anything started: no demo output, no store, no dashboard.
    assert "broker:" not in said
    assert not (tmp_path / "store.sqlite").exists()
    assert not is_listening(port)


async def test_the_demos_port_belongs_to_serve(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "demo", "--port", "8600"],
        env={**os.environ, "ENRICHMENT_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--port is the dashboard's: give it with --serve" in done.stdout
