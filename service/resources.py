"""What a worker creates at start-up and closes at shutdown."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cloudflare import AsyncCloudflare
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from service.clients.coverart import CoverArtClient
from service.clients.discogs import DiscogsClient
from service.clients.http import ProviderApi, make_http_client
from service.clients.image_store import CloudflareImageStore, ImageStore, LocalImageStore
from service.clients.images import ImageFetcher
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
    discogs: DiscogsClient
    images: ImageFetcher
    image_store: ImageStore


@dataclass
class WorkerResources:
    """Everything a worker holds open; `close` releases it all, newest first."""

    providers: Providers
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def close(self) -> None:
        """Close every client, limiter and the store connection."""
        for close in reversed(self.closers):
            await close()


async def open_resources(settings: Settings) -> WorkerResources:
    """Connect the store (and bind Beanie), and make one client per provider."""
    closers: list[Callable[[], Awaitable[Any]]] = []
    store: AsyncMongoClient[dict[str, Any]] = await connect_store(settings)
    closers.append(store.close)

    def http(base_url: str = "", **headers: str) -> httpx.AsyncClient:
        client = make_http_client(settings, base_url, **headers)
        closers.append(client.aclose)
        return client

    def limiter(item_key: str) -> SharedRateLimiter:
        item = settings.musicbrainz_rate if item_key == "musicbrainz" else settings.discogs_rate
        shared = SharedRateLimiter(settings.rate_limit_storage, item, item_key)
        closers.append(shared.close)
        return shared

    def api(name: str, base_url: str, item_key: str, *secrets: str) -> ProviderApi:
        return ProviderApi(
            name,
            http(base_url),
            limiter(item_key),
            retry_attempts=settings.provider_retry_attempts,
            backoff_seconds=settings.provider_backoff_seconds,
            secrets=secrets,
        )

    providers = Providers(
        settings=settings,
        musicbrainz=MusicBrainzClient(
            api("MusicBrainz", settings.musicbrainz_base_url, "musicbrainz")
        ),
        coverart=CoverArtClient(http(settings.coverart_base_url)),
        discogs=DiscogsClient(
            api("Discogs", settings.discogs_base_url, "discogs", *_secret(settings.discogs_token)),
            settings.discogs_token,
        ),
        images=ImageFetcher(
            http(Accept="image/*"),
            allowed_hosts=settings.image_fetch_allowed_hosts,
            max_bytes=settings.image_max_bytes,
        ),
        image_store=_image_store(settings, closers),
    )
    return WorkerResources(providers=providers, closers=closers)


def _image_store(settings: Settings, closers: list[Callable[[], Awaitable[Any]]]) -> ImageStore:
    if not settings.cloudflare_enabled:
        assert settings.image_cache_dir is not None  # Settings fills it in
        return LocalImageStore(
            settings.image_cache_dir, public_base_url=settings.image_public_base_url
        )
    assert settings.cloudflare_api_token is not None
    assert settings.cloudflare_account_id is not None
    # No SDK retries: it would retry a 409 (re-sending the whole image) and stack its own
    # backoff under the job's; our job-level retries decide what happens after a failure.
    client = AsyncCloudflare(
        api_token=settings.cloudflare_api_token.get_secret_value(),
        base_url=settings.cloudflare_api_base_url,
        max_retries=0,
        timeout=settings.http_timeout_seconds,
    )
    closers.append(client.close)
    return CloudflareImageStore(
        client,
        account_id=settings.cloudflare_account_id,
        account_hash=settings.cloudflare_account_hash,
    )


def _secret(value: SecretStr | None) -> tuple[str, ...]:
    return (value.get_secret_value(),) if value is not None else ()
