"""`enrichment demo`: real job chains against local provider servers, no network needed."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console

from dashboard.command import local_url
from service.broker import create_broker, in_process_worker
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import (
    DEMO_ALBUM_MBIDS,
    DEMO_ALBUM_QUERIES,
    DEMO_ARTIST_NAMES,
)
from service.demo.providers import LocalProviders
from service.embedded_store import ensure_store
from service.models.views import Timeline
from service.render import timeline_table
from service.urls import redact_url

logger = logging.getLogger(__name__)

# The local MusicBrainz declares a higher rate than the real one so the demo is quick;
# our limiter stays just under it, so no request is refused for going too fast.
DEMO_SERVER_RATE = 12
DEMO_CLIENT_RATE = "10/second"
DEMO_DISCOGS_SERVER_RATE = 120
DEMO_DISCOGS_CLIENT_RATE = "100/minute"
DEMO_DISCOGS_429_EVERY = 9
# The local Discogs accepts only this token; a real one is never sent to the demo's servers.
DEMO_DISCOGS_TOKEN = "offline-demo-token"  # noqa: S105 - a placeholder for a local server
FAMILY_TIMEOUT_SECONDS = 90.0


def demo_settings(
    settings: Settings, local: LocalProviders, *, queue_name: str, use_redis: bool
) -> Settings:
    """Settings pointing at the local servers, with retry delays short enough for a demo."""
    return settings.model_copy(
        update={
            "rate_limit_storage_url": settings.rate_limit_storage_url if use_redis else "memory://",
            "musicbrainz_base_url": local.musicbrainz_url,
            "coverart_base_url": local.coverart_url,
            "discogs_base_url": local.discogs_url,
            "discogs_token": SecretStr(DEMO_DISCOGS_TOKEN),
            "discogs_rate_limit": DEMO_DISCOGS_CLIENT_RATE,
            "image_fetch_allowed_hosts": frozenset({"127.0.0.1"}),
            "musicbrainz_rate_limit": DEMO_CLIENT_RATE,
            "queue_name": queue_name,
            "job_retry_delay_seconds": 0.5,
            "provider_backoff_seconds": 0.2,
            # The look-alikes answer at once and offline: every kick asks them again (a kick
            # from the dashboard runs its whole chain), and Ctrl-C ends running jobs quickly.
            "enrich_fresh_days": 0,
            "shutdown_grace_seconds": 3.0,
        }
    )


async def redis_reachable(url: str) -> bool:
    """Whether Redis answers a PING within a second."""
    redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class DemoSession:
    """A running demo: its settings, a client kicking onto its worker, its local providers."""

    config: Settings
    client: EnrichmentClient
    local: LocalProviders


async def open_store(settings: Settings, console: Console) -> None:
    """Start the embedded store unless one is running or MONGODB_URL is set; say which."""
    store_url = await asyncio.to_thread(ensure_store, settings)
    console.print(f"store: {redact_url(store_url)}")


@asynccontextmanager
async def demo_session(
    settings: Settings, console: Console, *, use_redis: bool
) -> AsyncIterator[DemoSession]:
    """The local providers and a worker on a queue of the demo's own, until the block ends.

    On the way out the worker stops, then the providers, and the queue's streams are dropped.
    """
    queue_name = f"enrichment-demo-{uuid.uuid4().hex[:8]}"
    console.print(f"broker: {'Redis stream ' + queue_name if use_redis else 'in-process'}")
    with LocalProviders(
        musicbrainz_rate_per_second=DEMO_SERVER_RATE,
        discogs_rate_per_minute=DEMO_DISCOGS_SERVER_RATE,
        discogs_429_every=DEMO_DISCOGS_429_EVERY,
        discogs_token=DEMO_DISCOGS_TOKEN,
    ) as local:
        config = demo_settings(settings, local, queue_name=queue_name, use_redis=use_redis)
        # One MusicBrainz 503 on the first search shows the client backing off and retrying.
        local.fail("/ws/2/release-group", 503, times=1, Retry_After="1")
        broker = create_broker(config, in_memory=not use_redis)
        try:
            async with (
                in_process_worker(broker),
                EnrichmentClient(config, broker=broker) as client,
            ):
                yield DemoSession(config, client, local)
        finally:
            if use_redis:
                await _drop_stream(settings.redis_url, queue_name)


async def run_demo(settings: Settings, console: Console) -> list[Timeline]:
    """Kick the demo roots, wait for every family, print each timeline; say what next."""
    await open_store(settings, console)
    use_redis = await redis_reachable(settings.redis_url)
    async with demo_session(settings, console, use_redis=use_redis) as session:
        timelines = await run_families(session, console)
    url = local_url(settings, settings.dashboard_port)
    console.print(
        f"See them in the dashboard: uv run enrichment dashboard, then open {url}\n"
        "To kick albums from that page and watch their families fill in, offline: "
        "uv run enrichment demo --serve"
    )
    return timelines


async def run_families(session: DemoSession, console: Console) -> list[Timeline]:
    """Kick the demo's roots, wait for their families and print their timelines."""
    roots = await _kick_roots(session.client)
    console.print(f"kicked {len(roots)} root jobs; waiting for their families…")
    timelines = [await session.client.wait_for_root(root, FAMILY_TIMEOUT_SECONDS) for root in roots]
    for timeline in timelines:
        console.print(timeline_table(timeline))
    served = len(session.local.musicbrainz_requests())
    console.print(f"{served} MusicBrainz requests served locally.")
    console.print("Browse again with: uv run enrichment roots / uv run enrichment timeline JOB_ID")
    return timelines


async def _kick_roots(client: EnrichmentClient) -> list[str]:
    # Forced: every run shows the whole chains, not what an earlier demo run left fresh.
    roots = [await client.kick_album(title=t, artist=a, force=True) for t, a in DEMO_ALBUM_QUERIES]
    roots += [await client.kick_album(mbid=mbid, force=True) for mbid in DEMO_ALBUM_MBIDS]
    roots += [await client.kick_artist(name=name, force=True) for name in DEMO_ARTIST_NAMES]
    return roots


async def _drop_stream(redis_url: str, queue_name: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.delete(queue_name)
        async for key in redis.scan_iter(match=f"{queue_name}:*"):  # its lanes and retries
            await redis.delete(key)
    finally:
        await redis.aclose()
