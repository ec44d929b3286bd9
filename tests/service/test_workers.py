"""Real worker processes (`enrichment worker`) sharing one MusicBrainz rate limit via Redis."""

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders

RATE = 4


@pytest.fixture
def settings_env(settings_env: dict[str, str], providers: LocalProviders) -> dict[str, str]:
    providers.musicbrainz_rate_per_second = RATE
    return {**settings_env, "MUSICBRAINZ_RATE_LIMIT": f"{RATE}/second"}


@pytest.fixture
def worker_log(
    settings_env: dict[str, str], mongo: Any, redis: Any, tmp_path: Path
) -> Iterator[Path]:
    """`enrichment worker --workers 2` in its own process group; yields its log file."""
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "--log-level",
                "INFO",
                "worker",
                "--workers",
                "2",
            ],
            env={**os.environ, **settings_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield log_path
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


async def wait_until_listening(log_path: Path, processes: int) -> None:
    # A blocked XREADGROUP registers no consumer in Redis: read the workers' own log instead.
    text = ""
    for _ in range(300):
        text = await asyncio.to_thread(log_path.read_text)
        if text.count("Listening started") >= processes:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"workers did not start listening:\n{text}")


async def test_two_worker_processes_share_the_musicbrainz_limit(
    worker_log: Path, settings: Settings, providers: LocalProviders
) -> None:
    mbids = [artist.mbid for artist in ARTISTS.values() if not artist.broken] * 3
    await wait_until_listening(worker_log, 2)
    async with EnrichmentClient(settings) as client:
        roots = []
        for mbid in mbids:
            roots.append(await client.kick_artist(mbid=mbid))
            await asyncio.sleep(0.05)  # let both processes' consumers take turns
        families = [await client.wait_for_root(root, timeout=60) for root in roots]

    entries = [family.root[-1] for family in families]
    assert {entry.status for entry in entries} == {"success"}
    assert len({entry.worker.pid for entry in entries if entry.worker}) == 2
    calls = providers.musicbrainz_requests()
    assert len(calls) == len(mbids)
    assert {call.status for call in calls} == {200}  # the server never had to refuse one
    times = sorted(call.at for call in calls)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= RATE
