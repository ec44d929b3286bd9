"""Every attempt writes exactly one EnrichmentLog, on success and on every kind of failure."""

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.errors import InvalidRequestError
from service.models import Album, JobStatus
from service.models.base import CamelModel
from service.models.jobs import AlbumDetails, JobPayload
from service.processing import AnySpec, JobRegistry, JobRun, JobSpec
from service.spawning import kick_job
from service.store import LOGS


class SleepJob(JobPayload):
    seconds: float
    only_first_run: bool = False


class NoDetails(CamelModel):
    pass


RUNS: dict[str, int] = {}
STARTED: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)


async def run_sleep(job: SleepJob, run: JobRun[NoDetails], providers: Any) -> None:
    RUNS[run.job_id] = RUNS.get(run.job_id, 0) + 1
    STARTED[run.job_id].set()
    if not job.only_first_run or RUNS[run.job_id] == 1:
        await asyncio.sleep(job.seconds)


SLEEP = JobSpec("test_sleep", "album", SleepJob, NoDetails, run_sleep)


@pytest.fixture
def extra_specs() -> tuple[AnySpec, ...]:
    return (SLEEP,)


async def logs_of(
    mongo: AsyncMongoClient[dict[str, Any]], settings: Settings, job_id: str
) -> list[dict[str, Any]]:
    cursor = mongo[settings.mongodb_db][LOGS].find({"jobId": job_id}, sort=[("attempt", 1)])
    return [doc async for doc in cursor]


async def test_success_entry_is_complete(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    root_id = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    family = await client.wait_for_root(root_id, timeout=30)

    [root] = family.root
    assert root.status == JobStatus.SUCCESS
    assert root.error is None
    assert root.attempt == 1
    assert root.entity_type == "album"
    assert root.entity_id == ALBUMS["Tidal Glass"].mbid
    assert root.entity_name == "Tidal Glass"
    assert {"title", "firstReleaseDate", "primaryType", "genres", "coverArtUrl"} <= set(
        root.fields_enriched
    )
    assert root.started_at is not None
    assert root.finished_at is not None
    assert root.started_at <= root.finished_at
    assert root.duration_ms is not None
    assert root.duration_ms >= 0
    assert root.worker is not None
    assert root.worker.pid > 0
    assert isinstance(root.details, AlbumDetails)
    assert root.details.match_source == "search"
    assert root.details.search_score == 100
    assert root.details.cover_art_url
    assert root.details.cover_art_url.endswith("/images/tidal-glass.png")
    # Stored keys are exactly the product's names.
    [raw] = await logs_of(mongo, settings, root_id)
    assert {
        "jobId",
        "parentJobId",
        "isRootJob",
        "jobType",
        "entityType",
        "entityId",
        "entityName",
        "status",
        "attempt",
        "startedAt",
        "finishedAt",
        "durationMs",
        "error",
        "fieldsEnriched",
        "spawnedJobIds",
        "details",
        "worker",
    } <= set(raw)
    album = await Album.find_one({"mbid": ALBUMS["Tidal Glass"].mbid})
    assert album is not None
    assert album.title == "Tidal Glass"
    assert album.first_release_date == "2011-03-14"
    assert album.cover_art_url == root.details.cover_art_url


async def test_unknown_mbid_fails_permanently_once(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    root_id = await client.kick_album(mbid=missing)
    await client.wait_for_root(root_id, timeout=30)

    [entry] = await logs_of(mongo, settings, root_id)
    assert entry["status"] == "failed"
    assert entry["error"]["type"] == "NotFoundError"
    assert entry["error"]["retryable"] is False
    assert "404" in entry["error"]["message"]
    assert entry["details"]["outcome"] == "not_found"
    assert entry["spawnedJobIds"] == []


async def test_bad_payload_is_logged_not_lost(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    await client.kick("enrich_album", {"artist": "only an artist"}, job_id="bad-payload-job")
    await client.wait_for_root("bad-payload-job", timeout=30)

    [entry] = await logs_of(mongo, settings, "bad-payload-job")
    assert entry["status"] == "failed"
    assert entry["isRootJob"] is True
    assert entry["error"]["type"] == "InvalidRequestError"
    assert "needs an mbid or a title" in entry["error"]["message"]


async def test_client_rejects_bad_input_before_kicking(client: EnrichmentClient) -> None:
    with pytest.raises(InvalidRequestError, match="needs an mbid or a name"):
        await client.kick_artist()


async def test_one_entry_per_attempt_under_retry(
    client: EnrichmentClient, providers: LocalProviders, mongo: Any, settings: Settings
) -> None:
    # Three 500s exhaust the client's in-job retries: attempt 1 fails, attempt 2 succeeds.
    providers.fail(
        f"/ws/2/artist/{ARTISTS['Harbor Lights'].mbid}", 500, times=settings.provider_retry_attempts
    )
    root_id = await client.kick_artist(mbid=ARTISTS["Harbor Lights"].mbid)
    await client.wait_for_root(root_id, timeout=30)

    entries = await logs_of(mongo, settings, root_id)
    assert [(e["attempt"], e["status"]) for e in entries] == [(1, "failed"), (2, "success")]
    assert entries[0]["error"]["retryable"] is True
    assert entries[0]["error"]["type"] == "ProviderUnavailableError"
    assert all(e["isRootJob"] for e in entries)


async def test_retries_stop_at_max_attempts(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    root_id = await client.kick_artist(mbid=ARTISTS["Static Orchard"].mbid)
    await client.wait_for_root(root_id, timeout=30)

    entries = await logs_of(mongo, settings, root_id)
    assert [e["attempt"] for e in entries] == list(range(1, settings.job_max_attempts + 1))
    assert {e["status"] for e in entries} == {"failed"}


class TestTimeout:
    """A job over its time limit: short limit, two attempts."""

    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        return {
            **settings_env,
            "JOB_TIMEOUT_SECONDS": "0.3",
            "LOG_WRITE_TIMEOUT_SECONDS": "0.5",
            "JOB_LEASE_SECONDS": "1",
            "JOB_MAX_ATTEMPTS": "2",
        }

    async def test_timeout_is_a_logged_retryable_failure(
        self, client: EnrichmentClient, mongo: Any, settings: Settings
    ) -> None:
        await client.kick("test_sleep", {"seconds": 5}, job_id="slow-job")
        await client.wait_for_root("slow-job", timeout=30)

        entries = await logs_of(mongo, settings, "slow-job")
        assert [(e["attempt"], e["status"], e["error"]["type"]) for e in entries] == [
            (1, "failed", "JobTimeoutError"),
            (2, "failed", "JobTimeoutError"),
        ]
        assert entries[0]["error"]["retryable"] is True


async def test_redelivered_message_does_not_duplicate_its_entry(
    settings: Settings, registry: JobRegistry, mongo: Any, redis: Any
) -> None:
    settings = settings.model_copy(update={"shutdown_grace_seconds": 0})
    # Worker 1 is shut down mid-job: it logs the cancellation and never acknowledges.
    first = create_broker(settings, registry=registry)
    async with in_process_worker(first):
        await kick_job(
            first, "test_sleep", "redelivered-job", {"seconds": 0.2, "onlyFirstRun": True}
        )
        await asyncio.wait_for(STARTED["redelivered-job"].wait(), timeout=10)
    [cancelled] = await logs_of(mongo, settings, "redelivered-job")
    assert cancelled["status"] == "failed"
    assert cancelled["error"]["type"] == "JobCancelledError"

    # Worker 2 reclaims the unacknowledged message: its delivery is the next attempt, and the
    # cancelled one stays on the timeline.
    second = create_broker(settings, registry=registry)
    async with in_process_worker(second), EnrichmentClient(settings, broker=second) as client:
        await client.wait_for_root("redelivered-job", timeout=30)
    assert RUNS["redelivered-job"] == 2
    first_try, second_try = await logs_of(mongo, settings, "redelivered-job")
    assert (first_try["attempt"], first_try["error"]["type"]) == (1, "JobCancelledError")
    assert (second_try["attempt"], second_try["status"], second_try["error"]) == (
        2,
        "success",
        None,
    )
