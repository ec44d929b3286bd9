"""Shared fixtures: a real store over the wire, real Redis, real HTTP on loopback."""

import os
import socket
import subprocess
import threading
import time
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
from service.lineage import JobSpec
from service.store import is_listening, make_mongo_client, store_command
from service.tasks import JOB_SPECS
from tests.fake_cloudflare import ACCOUNT, ACCOUNT_HASH, FakeCloudflare, handler_for

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The local MusicBrainz declares this rate; the tests' limiter stays just under it.
TEST_SERVER_RATE = 50
# Secrets the tests configure: nothing the service writes may ever contain them.
DISCOGS_TEST_TOKEN = "discogs-test-token-6f1d2c"
CLOUDFLARE_TEST_TOKEN = "cloudflare-test-token-93ab7e"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_store_process(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`enrichment store` in a child process on `port`, its SQLite file in `data_dir`."""
    settings = Settings.model_validate(
        {"ENRICHMENT_DATA_DIR": data_dir, "EMBEDDED_STORE_PORT": port}
    )
    with (data_dir / "store.log").open("ab") as log:
        process = subprocess.Popen(
            store_command(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not is_listening(port):
        assert process.poll() is None, (data_dir / "store.log").read_text()
        assert time.monotonic() < deadline, "embedded store did not start"
        time.sleep(0.05)
    return process


def stop_store_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a store started by `start_store_process`."""
    process.terminate()
    process.wait(10)


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
        "REDELIVERY_IDLE_MS": "4000",
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
    """Real Redis; deletes the test's stream afterwards."""
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.delete(settings.queue_name)
    await client.aclose()


@pytest.fixture
def specs() -> tuple[JobSpec[Any, Any], ...]:
    """The job specs the test worker registers (tests may add test-only ones)."""
    return JOB_SPECS


@pytest.fixture
async def worker(
    settings: Settings, specs: tuple[JobSpec[Any, Any], ...], mongo: Any, redis: Redis
) -> AsyncIterator[Any]:
    """An in-process worker on a real Redis stream, with its own broker."""
    broker = create_broker(settings, specs=specs)
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


def cloudflare_env(settings_env: dict[str, str], base_url: str) -> dict[str, str]:
    """Test settings with image caching sent to the fake Cloudflare at `base_url`."""
    return {
        **settings_env,
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "CLOUDFLARE_API_TOKEN": CLOUDFLARE_TEST_TOKEN,
        "CLOUDFLARE_ACCOUNT_HASH": ACCOUNT_HASH,
        "CLOUDFLARE_API_BASE_URL": base_url,
    }
