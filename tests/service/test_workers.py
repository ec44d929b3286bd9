"""Real worker processes (`enrichment worker`) sharing one MusicBrainz rate limit via Redis."""

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders
from service.streams import lane_stream
from tests.helpers import DISCOGS_TEST_TOKEN, start_worker, stop_worker, wait_until_listening

RATE = 4


@pytest.fixture
def settings_env(settings_env: dict[str, str], providers: LocalProviders) -> dict[str, str]:
    # The server allows exactly our budget: what arrives there is what must stay within it.
    providers.musicbrainz_rate_per_second = RATE
    # Jobs queue for the shared limit here: give them time.
    return {
        **settings_env,
        "MUSICBRAINZ_RATE_LIMIT": f"{RATE}/second",
        "JOB_TIMEOUT_SECONDS": "20",
        "JOB_LEASE_SECONDS": "30",
        # The same artists are kicked three times to load the limit: ask every time.
        "ENRICH_FRESH_DAYS": "0",
    }


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


async def test_shutdown_cancels_logs_and_leaves_the_job_for_redelivery(
    settings_env: dict[str, str], providers: LocalProviders, mongo: Any, redis: Any, tmp_path: Path
) -> None:
    env = {**settings_env, "SHUTDOWN_GRACE_SECONDS": "0.5"}
    settings = Settings.model_validate(env)
    providers.stall("/ws/2/artist/", 30)
    log_path = tmp_path / "worker.log"
    process = start_worker(env, log_path, 1)
    try:
        await wait_until_listening(log_path, 1)
        async with EnrichmentClient(settings) as client:
            job_id = await client.kick_artist(mbid=ARTISTS["Vela Nord"].mbid)
            await asyncio.sleep(1.0)  # the job is now waiting on the stalled provider
            await asyncio.to_thread(stop_worker, process)
            [entry] = (await client.timeline(job_id)).root
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert entry.status == "failed"
    assert entry.error is not None
    assert entry.error.type == "JobCancelledError"
    assert entry.error.retryable is True
    pending = await redis.xpending(
        lane_stream(settings.queue_name, "musicbrainz"), settings.queue_name
    )
    assert pending["pending"] == 1  # not acknowledged: another worker will reclaim it


class TestDiscogsLimit:
    """Two worker processes share Discogs' per-token budget (a short window keeps it quick)."""

    BUDGET, WINDOW = 6, 4

    @pytest.fixture
    def providers(self) -> Iterator[LocalProviders]:
        with LocalProviders(
            musicbrainz_rate_per_second=50,
            discogs_rate_per_minute=self.BUDGET,
            discogs_window_seconds=self.WINDOW,
            discogs_token=DISCOGS_TEST_TOKEN,
        ) as local:
            yield local

    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        # One below the server's budget: a request counted here reaches it a little later.
        client_budget = f"{self.BUDGET - 1} per {self.WINDOW} seconds"
        return {**settings_env, "DISCOGS_RATE_LIMIT": client_budget}

    async def test_discogs_requests_per_window_stay_within_the_shared_budget(
        self, worker_log: Path, settings: Settings, providers: LocalProviders
    ) -> None:
        await wait_until_listening(worker_log, 2)
        async with EnrichmentClient(settings) as client:
            roots = []
            for index, (artist_id, name) in enumerate(DISCOGS_LINKED * 2):
                job_id = f"discogs-{index}-{settings.queue_name}"
                payload = {"artistMbid": f"mbid-{index}", "name": name, "discogsId": artist_id}
                await client.kick("discogs_artist", payload, job_id=job_id)
                roots.append(job_id)
                await asyncio.sleep(0.05)
            families = [await client.wait_for_root(root, timeout=90) for root in roots]

        entries = [family.root[-1] for family in families]
        assert {entry.status for entry in entries} == {"success"}
        assert len({entry.worker.pid for entry in entries if entry.worker}) == 2
        calls = providers.discogs_requests()
        assert len(calls) == 2 * len(roots)  # the artist and its masters, each once
        assert {call.status for call in calls} == {200}  # never over the limit: no 429
        times = sorted(call.at for call in calls)
        busiest = max(sum(1 for t in times if s <= t < s + self.WINDOW) for s in times)
        assert busiest <= self.BUDGET
        assert times[-1] - times[0] >= self.WINDOW  # the budget really held requests back


DISCOGS_LINKED = [
    (402117, "Vela Nord"),
    (518820, "Mira Kestrel"),
    (611203, "Okonkwo Brass Collective"),
]
