"""What a worker creates at start-up and closes at shutdown."""

from dataclasses import dataclass
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from service.clients.coverart import CoverArtClient
from service.clients.http import make_http_client
from service.clients.musicbrainz import MusicBrainzClient
from service.clients.ratelimit import SharedRateLimiter
from service.config import Settings
from service.store import connect_store


@dataclass
class Providers:
    """The processors' view of the outside world."""

    settings: Settings
    musicbrainz: MusicBrainzClient
    coverart: CoverArtClient


@dataclass
class WorkerResources:
    """Everything a worker holds open; `close` releases it all."""

    providers: Providers
    store: AsyncMongoClient[dict[str, Any]]
    http_clients: list[httpx.AsyncClient]
    limiters: list[SharedRateLimiter]

    async def close(self) -> None:
        """Close every HTTP client, rate limiter and the store connection."""
        for client in self.http_clients:
            await client.aclose()
        for limiter in self.limiters:
            await limiter.close()
        await self.store.close()


async def open_resources(settings: Settings) -> WorkerResources:
    """Connect the store (and bind Beanie) and make one HTTP client per provider."""
    store = await connect_store(settings)
    mb_http = make_http_client(settings, settings.musicbrainz_base_url)
    caa_http = make_http_client(settings, settings.coverart_base_url)
    limiter = SharedRateLimiter(
        settings.rate_limit_storage, settings.musicbrainz_rate, "musicbrainz"
    )
    providers = Providers(
        settings=settings,
        musicbrainz=MusicBrainzClient(
            mb_http,
            limiter,
            retry_attempts=settings.provider_retry_attempts,
            backoff_seconds=settings.provider_backoff_seconds,
        ),
        coverart=CoverArtClient(caa_http),
    )
    return WorkerResources(
        providers=providers, store=store, http_clients=[mb_http, caa_http], limiters=[limiter]
    )
