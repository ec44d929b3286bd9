"""Worker metrics: a real worker's endpoint after a small run, checked against the logs."""

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.metrics_server import QueueCollector
from service.models import JobStatus
from service.models.views import Timeline
from service.streams import LeasedStreamBroker, due_key, lane_stream
from tests.helpers import free_port, until, wait_until_listening

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ENDED = {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.SKIPPED}
LANES = {"general", "musicbrainz", "discogs"}
# Which provider API each local route stands for (the image host is no provider API).
ROUTES = {"/ws/2/": "musicbrainz", "/caa/": "cover_art_archive", "/discogs/": "discogs"}


@pytest.fixture
def settings_env(settings_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **settings_env,
        "METRICS_PORT": str(free_port()),
        "TMPDIR": str(tmp_path),  # where `enrichment worker` makes the processes' metrics dir
        "JOB_LEASE_SECONDS": "30",  # no lease lapses under load: every delivery runs once
        "JOB_TIMEOUT_SECONDS": "20",
    }


async def test_a_workers_metrics_agree_with_its_logs(
    worker_log: Path, settings: Settings, providers: LocalProviders, mongo: Any, redis: Redis
) -> None:
    providers.fail("/caa/", 503)  # the album's first attempt fails and is retried
    providers.fail("/ws/2/artist/", 503)  # retried within the job
    await wait_until_listening(worker_log, 2)
    await redis.xadd(settings.queue_name, {b"junk": b"not a job"})  # a dead letter
    album = ALBUMS["Northern Drift"]
    async with EnrichmentClient(settings) as client:
        families = []
        for _ in range(2):  # the second time every answer is fresh: skipped
            root = await client.kick_album(title=album.title, artist=album.artists[0])
            families.append(await client.wait_for_root(root, timeout=60))
    outcomes = _outcomes(families)
    assert {status for _, status in outcomes} == {"success", "retrying", "skipped"}

    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    # A job is counted just after its outcome is logged: wait until the last one is.
    samples = await until(lambda: _scrape(url), _counted(outcomes.total()), 10)

    assert _by(samples, "enrichment_jobs_total", "job_type", "status") == outcomes
    attempts: Counter[str] = Counter()
    for (job_type, _), count in outcomes.items():
        attempts[job_type] += count
    assert _by(samples, "enrichment_attempt_seconds_count", "job_type") == attempts
    # taskiq's own middleware counted every delivery, in both processes.
    assert _by(samples, "received_tasks_total", "task_name") == attempts
    requests = Counter(
        (provider, str(request.status))
        for request in providers.requests
        for route, provider in ROUTES.items()
        if request.path.startswith(route)
    )
    assert ("cover_art_archive", "503") in requests
    assert ("musicbrainz", "503") in requests
    assert _by(samples, "enrichment_provider_requests_total", "provider", "status") == requests
    budgets = _by(samples, "enrichment_budget_requests_total", "provider")
    assert budgets == {
        "musicbrainz": len(providers.musicbrainz_requests()),
        "discogs": len(providers.discogs_requests()),
    }
    assert set(_by(samples, "enrichment_budget_wait_seconds_total", "provider")) == set(budgets)
    dead_letters = await mongo[settings.mongodb_db]["dead_letters"].count_documents({})
    assert dead_letters == 1
    assert _by(samples, "enrichment_dead_letters_total", "lane") == {"general": dead_letters}
    assert not _by(samples, "enrichment_leases_reclaimed_total", "lane")
    # The queue, read from Redis at the scrape: every lane drained.
    for gauge in (
        "enrichment_queue_depth",
        "enrichment_queue_held",
        "enrichment_queue_oldest_age_seconds",
        "enrichment_retries_waiting",
    ):
        assert _by(samples, gauge, "lane") == dict.fromkeys(LANES, 0), gauge


async def test_the_queue_state_is_read_from_redis(settings: Settings, redis: Redis) -> None:
    broker = create_broker(settings)
    assert isinstance(broker, LeasedStreamBroker)
    await broker.startup()  # declares every lane's consumer group
    stream = lane_stream(settings.queue_name, "musicbrainz")
    born_ms = int(time.time() * 1000) - 60_000
    for index in range(3):  # added a minute ago
        await redis.xadd(stream, {b"data": b"{}"}, id=f"{born_ms}-{index}")
    await redis.xreadgroup(settings.queue_name, "someone", {stream: ">"}, count=1)
    await redis.zadd(due_key(stream), {b"a retry": time.time() + 60})
    sync_redis = SyncRedis.from_url(settings.redis_url)
    try:
        lanes = {state.lane: state for state in QueueCollector(sync_redis, broker).read()}
    finally:
        sync_redis.close()
        await broker.shutdown()
    assert set(lanes) == LANES
    musicbrainz = lanes["musicbrainz"]
    assert (musicbrainz.waiting, musicbrainz.held, musicbrainz.retries) == (2, 1, 1)
    assert musicbrainz.oldest_age >= 60
    discogs = lanes["discogs"]
    assert (discogs.waiting, discogs.held, discogs.retries, discogs.oldest_age) == (0, 0, 0, 0)


async def test_a_reclaimed_lease_is_counted(
    settings_env: dict[str, str], providers: LocalProviders, mongo: Any, redis: Redis
) -> None:
    settings = Settings.model_validate({**settings_env, "JOB_LEASE_SECONDS": "1"})
    stream = lane_stream(settings.queue_name, "musicbrainz")
    before = _reclaimed()
    async with EnrichmentClient(settings) as client:
        root = await client.kick_artist(mbid=ARTISTS["Vela Nord"].mbid)
        # A worker takes the message and dies: it never renews the lease.
        await redis.xreadgroup(settings.queue_name, "gone", {stream: ">"}, count=1)
        async with in_process_worker(create_broker(settings)):
            await client.wait_for_root(root, timeout=30)
    assert _reclaimed() - before == 1


def _reclaimed() -> float:
    value = REGISTRY.get_sample_value("enrichment_leases_reclaimed_total", {"lane": "musicbrainz"})
    return value or 0.0


def _outcomes(families: list[Timeline]) -> Counter[tuple[str, str]]:
    """Each ended attempt of the logs by job type and outcome ('retrying': a later one ran)."""
    entries = [entry for family in families for entry in family.entries]
    last = Counter[str]()
    for entry in entries:
        assert entry.job_id is not None
        last[entry.job_id] = max(last[entry.job_id], entry.attempt)
    return Counter(
        (
            str(entry.job_type),
            "retrying" if entry.attempt < last[str(entry.job_id)] else str(entry.status),
        )
        for entry in entries
        if entry.status in ENDED
    )


async def _scrape(url: str) -> Samples:
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
    except httpx.TransportError:
        return {}
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _counted(total: int) -> Any:
    return lambda samples: sum(_by(samples, "enrichment_jobs_total", "job_type").values()) >= total


def _by(samples: Samples, name: str, *labels: str) -> Counter[Any]:
    """A metric's samples summed by the given labels (a 1-tuple key is unpacked)."""
    summed: Counter[Any] = Counter()
    for (sample, sample_labels), value in samples.items():
        if sample == name:
            found = dict(sample_labels)
            key = tuple(found[label] for label in labels)
            summed[key[0] if len(key) == 1 else key] += value
    return summed
