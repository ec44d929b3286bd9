"""Shared fixtures: a real store over the wire, real Redis, real HTTP on loopback."""

import gc
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.providers import LocalProviders
from service.processing import AnySpec, JobRegistry
from service.registry import JOBS
from service.store import make_mongo_client
from tests.fake_cloudflare import FakeCloudflare, handler_for
from tests.helpers import (
    DISCOGS_TEST_TOKEN,
    REDIS_URL,
    TEST_SERVER_RATE,
    free_port,
    start_store_process,
    start_worker,
    stop_store_process,
    stop_worker,
)

# The tests mostly wait (worker processes, Redis, HTTP, a browser): two xdist workers per
# CPU ran the suite fastest on two cores. `-n N` chooses; `-n 0` or `-p no:xdist` runs it
# in one process; PYTEST_XDIST_AUTO_NUM_WORKERS sets what `auto` means.
WORKERS_PER_CPU = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Run in parallel unless told otherwise (not `addopts`: `-p no:xdist` must still work)."""
    if hasattr(config, "workerinput"):  # an xdist worker: it runs the tests it is sent
        return
    if config.pluginmanager.has_plugin("xdist") and config.getoption("numprocesses") is None:
        config.option.numprocesses = "auto"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers `-n auto` (the default) starts."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return WORKERS_PER_CPU * (os.process_cpu_count() or 1)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect each test's garbage as it ends: a connection it leaked fails it, not a later test.

    A leaked client is only found when the collector frees it, so a ResourceWarning used to
    surface in whichever test happened to run next in the same process.
    """
    yield
    gc.collect()


@pytest.fixture(scope="session")
def store_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """MongoDB when MONGODB_URL is set, else an embedded store in its own process and dir."""
    if os.environ.get("MONGODB_URL"):
        yield {"MONGODB_URL": os.environ["MONGODB_URL"]}
        return
    data_dir, port = tmp_path_factory.mktemp("store"), free_port()
    process = start_store_process(data_dir, port)
    yield {
        "ENRICHMENT_DATA_DIR": str(data_dir),
        "EMBEDDED_STORE_PORT": str(port),
        "MONGODB_URL": f"mongodb://127.0.0.1:{port}/?directConnection=true",
    }
    stop_store_process(process)


@pytest.fixture
def providers() -> Iterator[LocalProviders]:
    """Local MusicBrainz + Cover Art Archive servers."""
    with LocalProviders(
        musicbrainz_rate_per_second=TEST_SERVER_RATE,
        discogs_rate_per_minute=1000,
        discogs_token=DISCOGS_TEST_TOKEN,
    ) as local:
        yield local


@pytest.fixture
def settings_env(
    store_env: dict[str, str], providers: LocalProviders, tmp_path: Path
) -> dict[str, str]:
    """Environment for one test: its own database and stream, the local providers, fast retries."""
    tag = uuid.uuid4().hex[:10]
    return {
        **store_env,
        "MONGODB_DB": f"test_{tag}",
        "ENRICHMENT_QUEUE": f"test-enrichment-{tag}",
        "RATE_LIMIT_NAMESPACE": f"test-{tag}:",  # budgets of its own: tests run in parallel
        "REDIS_URL": REDIS_URL,
        "ENRICHMENT_DATA_DIR": store_env.get("ENRICHMENT_DATA_DIR", str(tmp_path)),
        "MUSICBRAINZ_BASE_URL": providers.musicbrainz_url,
        "COVERART_BASE_URL": providers.coverart_url,
        "DISCOGS_BASE_URL": providers.discogs_url,
        "DISCOGS_TOKEN": DISCOGS_TEST_TOKEN,
        "DISCOGS_RATE_LIMIT": "1000/minute",
        "IMAGE_FETCH_ALLOWED_HOSTS": "127.0.0.1",
        "IMAGE_CACHE_DIR": str(tmp_path / "images"),
        "MUSICBRAINZ_RATE_LIMIT": f"{TEST_SERVER_RATE - 5}/second",
        "JOB_RETRY_DELAY_SECONDS": "0.05",
        "PROVIDER_BACKOFF_SECONDS": "0.05",
        "JOB_LEASE_SECONDS": "3",
        "JOB_TIMEOUT_SECONDS": "2.5",
        "LOG_WRITE_TIMEOUT_SECONDS": "1",
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    """Settings built from the test environment (explicit values win over ambient ones)."""
    return Settings.model_validate(settings_env)


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A raw driver connection to the test's database; drops it afterwards."""
    assert settings.mongodb_url
    client = make_mongo_client(settings.mongodb_url)
    yield client
    await client.drop_database(settings.mongodb_db)
    await client.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """Real Redis; deletes the test's streams (every lane's, and their retries) afterwards."""
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.delete(settings.queue_name)
    async for key in client.scan_iter(match=f"{settings.queue_name}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def extra_specs() -> tuple[AnySpec, ...]:
    """Test-only processors a test module registers for its duration (none by default)."""
    return ()


@pytest.fixture
def registry(extra_specs: tuple[AnySpec, ...]) -> Iterator[JobRegistry]:
    """The service's registry, with the test's own processors registered through its door."""
    registered = []
    try:
        for spec in extra_specs:
            registered.append(JOBS.register(spec))
        yield JOBS
    finally:
        for spec in registered:
            JOBS.unregister(spec.job_type)


@pytest.fixture
async def worker(
    settings: Settings, registry: JobRegistry, mongo: Any, redis: Redis
) -> AsyncIterator[Any]:
    """An in-process worker on a real Redis stream, with its own broker."""
    broker = create_broker(settings, registry=registry)
    async with in_process_worker(broker):
        yield broker


@pytest.fixture
async def client(settings: Settings, worker: Any) -> AsyncIterator[EnrichmentClient]:
    """An `EnrichmentClient` kicking onto the test worker's stream through its own broker."""
    async with EnrichmentClient(settings) as enrichment:
        yield enrichment


@pytest.fixture
def cloudflare_api() -> Iterator[tuple[FakeCloudflare, str]]:
    """A local server speaking Cloudflare Images' v4 envelope, and its base URL."""
    fake = FakeCloudflare()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/client/v4"
    server.shutdown()
    server.server_close()


@pytest.fixture
def worker_log(
    settings_env: dict[str, str], mongo: Any, redis: Any, tmp_path: Path
) -> Iterator[Path]:
    """Two `enrichment worker` processes on the test's stream; yields their log file."""
    log_path = tmp_path / "worker.log"
    process = start_worker(settings_env, log_path, 2)
    yield log_path
    stop_worker(process)
