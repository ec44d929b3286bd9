"""Provider lanes: jobs waiting for one provider's budget never hold every worker slot."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders, RecordedRequest
from service.models import JobStatus
from service.models.views import Timeline
from service.streams import LeasedStreamBroker, lane_stream, share_slots
from tests.helpers import until

SLOTS = 6


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # Discogs' budget is spent by the first request: every other Discogs job waits a minute.
    return {
        **settings_env,
        "DISCOGS_RATE_LIMIT": "1/minute",
        "WORKER_MAX_ASYNC_TASKS": str(SLOTS),
        "JOB_TIMEOUT_SECONDS": "30",
        "ENRICH_FRESH_DAYS": "0",
    }


def test_a_workers_slots_are_shared_out_between_the_lanes() -> None:
    assert share_slots(20, ["q", "q:discogs", "q:musicbrainz"]) == {
        "q": 7,
        "q:discogs": 7,
        "q:musicbrainz": 6,
    }
    assert share_slots(2, ["q", "q:discogs", "q:musicbrainz"]) == dict.fromkeys(
        ["q", "q:discogs", "q:musicbrainz"], 1
    )


async def test_musicbrainz_work_goes_on_while_discogs_budget_is_spent(
    settings: Settings, providers: LocalProviders, mongo: Any, redis: Redis
) -> None:
    broker = create_broker(settings)
    assert isinstance(broker, LeasedStreamBroker)
    discogs = lane_stream(settings.queue_name, "discogs")
    async with (
        in_process_worker(broker, max_async_tasks=SLOTS),
        EnrichmentClient(settings) as client,
    ):
        # Twice the worker's slots of Discogs jobs first: in one queue they would take every
        # slot and wait there for Discogs' budget, in front of the MusicBrainz job.
        for index in range(2 * SLOTS):
            payload = {"artistMbid": f"mbid-{index}", "name": "Vela Nord", "discogsId": 402117}
            await client.kick("discogs_artist", payload)
        await until(lambda: redis.xpending(discogs, settings.queue_name), _holds(2), 10)
        await until(_discogs_calls(providers), bool, 10)  # Discogs' budget is now spent
        artist = await client.kick_artist(mbid=ARTISTS["Mira Kestrel"].mbid)
        done = await until(lambda: client.timeline(artist), _root_succeeded, 20)
        waiting = (await redis.xpending(discogs, settings.queue_name))["pending"]
        queued = await redis.xlen(discogs) - waiting
    assert done.root[-1].worker is not None
    # The Discogs jobs held their lane's share of the slots, no more, and still wait.
    assert waiting <= share_slots(SLOTS, broker.streams)[discogs]
    assert queued > 0
    assert len(await _discogs_calls(providers)()) == 1


def _discogs_calls(providers: LocalProviders) -> Callable[[], Awaitable[list[RecordedRequest]]]:
    async def calls() -> list[RecordedRequest]:
        return [call for call in providers.discogs_requests() if "/artists/" in call.path]

    return calls


def _holds(count: int) -> Any:
    return lambda pending: pending["pending"] >= count


def _root_succeeded(timeline: Timeline) -> bool:
    return bool(timeline.root) and timeline.root[-1].status == JobStatus.SUCCESS
