"""Faults, with real worker processes and short leases: every delivery accounted for.

A killed worker's job runs again within a lease and its lost attempt stays on the timeline;
a backlog never runs an attempt twice; a Redis restart fails nothing for good; a store
outage never lets a job be acknowledged without its log; poison is recorded in one
delivery and never stops the worker; a retry waits in Redis and survives a worker restart.
"""

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from limits import parse
from redis.asyncio import Redis

from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.errors import BrokerUnavailableError, InvalidRequestError
from service.logbook import Decision, begin_attempt, write_log
from service.models import JobError, JobStatus, LogEntry
from service.models.views import Timeline
from service.providers.ratelimit import SharedRateLimiter
from service.spawning import kick_job
from service.store import DEAD_LETTERS, FAMILIES, LOGS, connect_store
from service.streams import due_key, lane_stream
from tests.helpers import (
    enrichment,
    free_port,
    serve_standby,
    standby_store_process,
    start_store_process,
    start_worker,
    stop_store_process,
    stop_worker,
    until,
    wait_until_listening,
)

LEASE = 2


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "JOB_LEASE_SECONDS": str(LEASE), "JOB_TIMEOUT_SECONDS": "20"}


def latest(timeline: Timeline) -> dict[str, LogEntry]:
    by_job: dict[str, LogEntry] = {}
    for entry in timeline.entries:
        if entry.job_id and entry.attempt >= getattr(by_job.get(entry.job_id), "attempt", 0):
            by_job[entry.job_id] = entry
    return by_job


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


async def test_a_killed_workers_job_runs_again_and_its_lost_attempt_stays(
    settings_env: dict[str, str], providers: LocalProviders, mongo: Any, redis: Any, tmp_path: Path
) -> None:
    settings = Settings.model_validate(settings_env)
    providers.stall("/ws/2/artist/", 30)
    first = start_worker(settings_env, tmp_path / "first.log", 1)
    second = None
    try:
        await wait_until_listening(tmp_path / "first.log", 1)
        async with EnrichmentClient(settings) as client:
            job_id = await client.kick_artist(mbid=ARTISTS["Vela Nord"].mbid)
            running = await until(
                lambda: client.timeline(job_id),
                lambda t: bool(t.root) and t.root[-1].status == JobStatus.RUNNING,
                30,
            )
            await asyncio.to_thread(kill, first)
            providers.stall("/ws/2/artist/", 0)
            second = start_worker(settings_env, tmp_path / "second.log", 1)
            family = await client.wait_for_root(job_id, timeout=60)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill(process)
    lost, rerun = family.root
    dead = running.root[-1].worker
    assert (lost.attempt, lost.status) == (1, JobStatus.FAILED)
    assert lost.error is not None
    assert lost.error.type == "WorkerLostError"
    assert lost.error.retryable is True
    assert lost.error.lost_worker == dead
    assert dead is not None
    assert lost.error.last_alive_at is not None
    assert f"{dead.host}:{dead.pid}" in lost.error.message
    assert (rerun.attempt, rerun.status) == (2, JobStatus.SUCCESS)
    assert rerun.worker is not None
    assert rerun.worker.pid != dead.pid


async def test_a_backlog_behind_a_slow_provider_runs_every_attempt_once(
    settings_env: dict[str, str], providers: LocalProviders, mongo: Any, redis: Any, tmp_path: Path
) -> None:
    settings = Settings.model_validate(settings_env)
    # Ten times the worker's concurrency, each job slower than a lease would allow a message
    # to wait unread: a message read ahead of its slot would be reclaimed and run twice.
    providers.stall("/discogs/artists/", 1.0)
    process = start_worker(settings_env, tmp_path / "worker.log", 1, max_async_tasks=2)
    try:
        await wait_until_listening(tmp_path / "worker.log", 1)
        async with EnrichmentClient(settings) as client:
            roots = [
                await client.kick(
                    "discogs_artist",
                    {"artistMbid": f"mbid-{i}", "name": "Vela Nord", "discogsId": 402117},
                )
                for i in range(20)
            ]
            held, discogs_lane = [], lane_stream(settings.queue_name, "discogs")
            for _ in range(10):  # the worker holds only what it runs: 2 at a time
                await asyncio.sleep(0.5)
                held.append((await redis.xpending(discogs_lane, settings.queue_name))["pending"])
            families = [await client.wait_for_root(root, timeout=120) for root in roots]
    finally:
        stop_worker(process)
    assert max(held) <= 2, held
    attempts = Counter(e.job_id for family in families for e in family.entries)
    assert set(attempts.values()) == {1}, attempts  # no attempt ran twice
    # Each Discogs job asks for the artist and its masters: 2 requests, once each.
    artist_requests = [r for r in providers.discogs_requests() if "/artists/" in r.path]
    assert len(artist_requests) == len(roots)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """A redis-server of the test's own (AOF, fsync always, or none) the test may restart."""
    port = free_port()
    started: list[subprocess.Popen[bytes]] = []

    def start(persist: bool = True) -> subprocess.Popen[bytes]:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else []
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
             "--save", "", *aof],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(process)
        ping = ["redis-cli", "-p", str(port), "ping"]
        for _ in range(100):
            if subprocess.run(ping, capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.05)
        return process

    start.port = port  # type: ignore[attr-defined]
    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


async def test_a_redis_restart_fails_nothing_for_good_and_loses_nothing(
    settings_env: dict[str, str],
    providers: LocalProviders,
    mongo: Any,
    own_redis: Any,
    tmp_path: Path,
) -> None:
    redis_process = own_redis()
    env = {**settings_env, "REDIS_URL": f"redis://127.0.0.1:{own_redis.port}/0"}
    settings = Settings.model_validate(env)
    process = start_worker(env, tmp_path / "worker.log", 1)
    try:
        await wait_until_listening(tmp_path / "worker.log", 1)
        async with EnrichmentClient(settings) as client:
            titles = ["Tidal Glass", "Northern Drift", "Paper Harbors"]
            roots = [await client.kick_album(mbid=ALBUMS[title].mbid) for title in titles]
            await asyncio.sleep(0.5)  # families mid-way: children spawning, limits taken
            redis_process.terminate()
            await asyncio.to_thread(redis_process.wait, 10)
            await asyncio.sleep(3)
            own_redis()
            families = [await client.wait_for_root(root, timeout=90) for root in roots]
    finally:
        stop_worker(process)
    for family in families:
        for entry in latest(family).values():
            assert entry.status in (JobStatus.SUCCESS, JobStatus.SKIPPED), entry.error


async def test_a_store_outage_never_acknowledges_a_job_without_its_log(
    settings_env: dict[str, str],
    providers: LocalProviders,
    redis: Redis,
    tmp_path: Path,
) -> None:
    port = free_port()
    store = start_store_process(tmp_path, port)
    standby = standby_store_process(tmp_path, port)  # brings the store back in a moment
    env = {**settings_env, "MONGODB_URL": f"mongodb://127.0.0.1:{port}/?directConnection=true"}
    settings = Settings.model_validate(env)
    providers.stall("/ws/2/artist/", 2)
    process = start_worker(env, tmp_path / "worker.log", 1)
    try:
        await wait_until_listening(tmp_path / "worker.log", 1)
        async with EnrichmentClient(settings) as client:
            job_id = await client.kick_artist(mbid=ARTISTS["Mira Kestrel"].mbid)
            await until(
                lambda: client.timeline(job_id),
                lambda t: bool(t.root) and t.root[-1].status == JobStatus.RUNNING,
                30,
            )
            # Down for longer than LOG_WRITE_TIMEOUT_SECONDS (1 s here) while the job ends.
            await asyncio.to_thread(stop_store_process, store)
            await asyncio.sleep(4)
            pending = await redis.xpending(
                lane_stream(settings.queue_name, "musicbrainz"), settings.queue_name
            )
            assert pending["pending"] == 1  # not acknowledged: its outcome is not logged yet
            serve_standby(standby, tmp_path, port)
            family = await client.wait_for_root(job_id, timeout=60)
    finally:
        stop_worker(process)
        stop_store_process(store)
        stop_store_process(standby)
    [entry] = family.root
    assert (entry.attempt, entry.status) == (1, JobStatus.SUCCESS)
    pending = await until(
        lambda: redis.xpending(
            lane_stream(settings.queue_name, "musicbrainz"), settings.queue_name
        ),
        lambda p: p["pending"] == 0,
        10,
    )


def raw_message(task_name: str, task_id: str, **kwargs: Any) -> bytes:
    """A task message as a client would send it (JSON escapes any text, even broken text)."""
    labels = kwargs.pop("labels", {"ack_type": "manual"})
    message = {"task_id": task_id, "task_name": task_name, "labels": labels, "args": [],
               "kwargs": kwargs}  # fmt: skip
    return json.dumps(message).encode()


async def test_poison_is_recorded_in_one_delivery_and_the_next_message_runs(
    client: EnrichmentClient, redis: Redis, settings: Settings, mongo: Any
) -> None:
    stream = settings.queue_name
    poison = [
        {b"nothing": b"here"},
        {b"data": b"\xff not json"},
        {b"data": raw_message("no_such_task", "poison-unknown", job={})},
        {b"data": raw_message("enrich_artist", "poison-no-job")},
        {
            b"data": raw_message(
                "enrich_artist",
                "poison-label",
                job={"name": "x"},
                labels={"ack_type": "manual", "attempt": "two"},
            )
        },
        # JSON may carry a lone surrogate (a Latin-1 terminal's bytes): the store cannot.
        {b"data": raw_message("enrich_artist", "poison-text", job={"name": "Caf\udce9"})},
        {b"data": raw_message("enrich_artist", "Caf\udce9", job={"name": "x"})},
        {
            b"data": raw_message(
                "enrich_artist",
                "poison-digit",
                job={"name": "x"},
                labels={"ack_type": "manual", "attempt": "²"},
            )
        },
        {
            b"data": raw_message(
                "enrich_artist", "poison-ack", job={"name": "x"}, labels={"ack_type": "bogus"}
            )
        },
        {b"data": raw_message("enrich_artist", "poison-extra", job={"name": "x"}, more=1)},
        # In a family: its entry may overwrite a finished one, so the family's record says so.
        {
            b"data": raw_message(
                "enrich_artist", "poison-family", job={"name": "x", "parentJobId": "root-p"}, more=1
            )
        },
        {b"data": b"[" * 100_000 + b"]" * 100_000},
    ]
    families = mongo[settings.mongodb_db][FAMILIES]
    await families.insert_one({"_id": "root-p"})
    for fields in poison:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    good = await client.kick_artist(name="Mira Kestrel")
    family = await client.wait_for_root(good, timeout=30)
    assert family.root[-1].status == JobStatus.SUCCESS  # the worker lived on

    letters = [d async for d in mongo[settings.mongodb_db][DEAD_LETTERS].find()]
    assert sorted(d["reason"] for d in letters) == [
        "the entry has no data field",
        "the entry is not a task message: RecursionError",
        "the entry is not a task message: UnicodeDecodeError",
        "the task id is not a job id (empty, too long or not text)",
    ]
    assert all(len(d["excerpt"]) <= 1024 for d in letters)
    logs = mongo[settings.mongodb_db][LOGS]
    failed = ["poison-unknown", "poison-no-job", "poison-label", "poison-text", "poison-digit"]
    for job_id in [*failed, "poison-ack", "poison-extra", "poison-family"]:
        [entry] = [doc async for doc in logs.find({"jobId": job_id})]
        assert entry["status"] == "failed"
        assert entry["error"]["type"] == "InvalidRequestError"
        assert entry["error"]["retryable"] is False
    await until(lambda: redis.xpending(stream, stream), lambda p: p["pending"] == 0, 10)
    # Each was delivered once: recorded once, never redelivered.
    assert len(letters) == 4
    assert await logs.count_documents({"jobId": {"$regex": "^poison-"}}) == 8
    assert (await families.find_one({"_id": "root-p"}) or {}).get("version") == 1


async def test_oversized_text_is_refused_with_a_clear_error(client: EnrichmentClient) -> None:
    with pytest.raises(InvalidRequestError, match="title: String should have at most 512"):
        await client.kick_album(title="x" * 5_000_000)
    with pytest.raises(InvalidRequestError, match=r"name: .*unable to parse raw data as a unicode"):
        await client.kick_artist(name="Caf\udce9")


@pytest.fixture
def flaky_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"job_retry_delay_seconds": 1.5})


async def test_a_retry_waits_in_redis_and_survives_a_worker_restart(
    flaky_settings: Settings,
    settings_env: dict[str, str],
    providers: LocalProviders,
    mongo: Any,
    redis: Redis,
) -> None:
    settings = flaky_settings
    mbid = ARTISTS["Harbor Lights"].mbid
    providers.fail(f"/ws/2/artist/{mbid}", 500, times=settings.provider_retry_attempts)
    first = create_broker(settings)
    async with in_process_worker(first), EnrichmentClient(settings) as client:
        job_id = await client.kick_artist(mbid=mbid)
        waiting = await until(
            lambda: client.timeline(job_id),
            lambda t: len(t.root) == 2,
            30,
        )
    failed, queued = waiting.root
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert (queued.attempt, queued.status) == (2, JobStatus.QUEUED)
    assert queued.due_at is not None
    assert queued.due_at > failed.finished_at
    assert (
        await redis.zcard(due_key(lane_stream(settings.queue_name, "musicbrainz"))) == 1
    )  # waiting in Redis, not a slot
    shown = await enrichment(settings_env, "timeline", job_id)
    assert "queued" in shown.stdout
    assert "retry due at" in shown.stdout
    assert f"unfinished: {job_id} due (attempt 2 of 3, due at" in shown.stdout

    second = create_broker(settings)  # the first worker is gone: the retry is not lost
    async with in_process_worker(second), EnrichmentClient(settings) as client:
        family = await client.wait_for_root(job_id, timeout=30)
    assert [(e.attempt, e.status) for e in family.root] == [(1, "failed"), (2, "success")]


async def test_redis_unreachable_is_a_retryable_fault_when_kicking_and_rate_limiting(
    settings: Settings,
) -> None:
    gone = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    broker = create_broker(gone)
    with pytest.raises(BrokerUnavailableError) as kicking:
        await kick_job(broker, "enrich_artist", "blip-job", {"name": "Vela Nord"})
    assert kicking.value.retryable is True
    await broker.shutdown()
    limiter = SharedRateLimiter(f"async+{gone.redis_url}", parse("5/second"), "blip")
    with pytest.raises(BrokerUnavailableError) as limiting:
        await limiter.acquire()
    assert limiting.value.retryable is True
    await limiter.close()


async def test_a_failed_attempt_whose_retry_was_never_recorded_runs_again(
    settings: Settings, mongo: Any
) -> None:
    # The store went away between the failed attempt's write and its retry's: the next
    # delivery must run attempt 2, not take the job for done.
    store = await connect_store(settings)
    try:
        failed = LogEntry(
            job_id="half-written", attempt=1, status=JobStatus.FAILED, is_root_job=True,
            error=JobError(type="ProviderUnavailableError", message="503", retryable=True),
        )  # fmt: skip
        await write_log(store.logs, failed, timeout=5)
        running = LogEntry(job_id="half-written", status=JobStatus.RUNNING, is_root_job=True)
        begin = await begin_attempt(
            store.logs, job_id="half-written", first_attempt=1, max_attempts=3,
            lease_seconds=LEASE, running=running,
        )  # fmt: skip
        assert (begin.decision, begin.attempt) == (Decision.RUN, 2)
        last = failed.model_copy(update={"job_id": "spent", "attempt": 3})
        await write_log(store.logs, last, timeout=5)
        spent = await begin_attempt(
            store.logs, job_id="spent", first_attempt=1, max_attempts=3,
            lease_seconds=LEASE, running=running.model_copy(update={"job_id": "spent"}),
        )  # fmt: skip
        assert spent.decision == Decision.EXHAUSTED
    finally:
        await store.close()


async def test_a_root_kicked_into_a_redis_restarted_empty_is_not_skipped(
    settings: Settings, mongo: Any, own_redis: Any
) -> None:
    # Without persistence the stream and its consumer group are gone after a restart. A
    # client whose broker is already started kicks at once; the worker comes back and must
    # recreate the group from the stream's start, not from its end.
    redis_process = own_redis(persist=False)
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{own_redis.port}/0"})
    worker = create_broker(settings)
    async with in_process_worker(worker), EnrichmentClient(settings) as client:
        warm = await client.kick_artist(mbid=ARTISTS["Vela Nord"].mbid)
        await client.wait_for_root(warm, timeout=30)
        redis_process.terminate()
        await asyncio.to_thread(redis_process.wait, 10)
        own_redis(persist=False)
        after = await client.kick_artist(mbid=ARTISTS["Mira Kestrel"].mbid)
        family = await client.wait_for_root(after, timeout=30)
    assert family.root[-1].status == JobStatus.SUCCESS
