"""What a worker creates at start-up and closes at shutdown."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cloudflare import AsyncCloudflare, DefaultAsyncHttpxClient
from pydantic import SecretStr

from service.config import Settings
from service.providers.coverart import ARCHIVE_HOSTS, CoverArtClient
from service.providers.coverart import PROVIDER as COVERART
from service.providers.discogs import DiscogsClient
from service.providers.http import ProviderApi, make_http_client, make_provider_client
from service.providers.image_store import CloudflareImageStore, ImageStore, LocalImageStore
from service.providers.images import ImageFetcher
from service.providers.musicbrainz import MusicBrainzClient
from service.providers.ratelimit import DISCOGS, MUSICBRAINZ, RateLimit, SharedRateLimiter
from service.redaction import protect
from service.store import Catalogue, Store, connect_store

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[Any]]


@dataclass
class Providers:
    """The processors' view of the outside world: the APIs, the image store, the catalogue."""

    settings: Settings
    musicbrainz: MusicBrainzClient
    coverart: CoverArtClient
    discogs: DiscogsClient
    images: ImageFetcher
    image_store: ImageStore
    catalogue: Catalogue


@dataclass
class WorkerResources:
    """Everything a worker holds open; `close` releases it all, newest first."""

    store: Store
    providers: Providers
    closers: list[Closer] = field(default_factory=list)

    async def close(self) -> None:
        """Close every client, limiter and the store connection."""
        await close_all(self.closers)


async def close_all(closers: list[Closer]) -> None:
    """Call every closer, newest first, going on past one that fails."""
    for close in reversed(closers):
        try:
            await close()
        except Exception:  # one failing closer must not keep the others open
            logger.exception("closing %r failed", close)


def check_rate_limits(settings: Settings, limits: list[RateLimit]) -> None:
    """Every provider budget a processor spends has its own, valid setting (else at start-up)."""
    for limit in limits:
        settings.rate_limit(limit.setting)


async def open_resources(settings: Settings) -> WorkerResources:
    """Connect the store and make one client per provider."""
    protect(*settings.secret_values())
    store = await connect_store(settings)
    closers: list[Closer] = [store.close]
    try:
        providers = _providers(settings, store, closers)
    except BaseException:
        await close_all(closers)
        raise
    return WorkerResources(store=store, providers=providers, closers=closers)


def _providers(settings: Settings, store: Store, closers: list[Closer]) -> Providers:
    def closed_at_shutdown(client: httpx.AsyncClient) -> httpx.AsyncClient:
        closers.append(client.aclose)
        return client

    def http(
        provider: str, base_url: str, redirect_hosts: frozenset[str] = frozenset()
    ) -> httpx.AsyncClient:
        client = make_provider_client(settings, provider, base_url, redirect_hosts=redirect_hosts)
        return closed_at_shutdown(client)

    def api(limit: RateLimit, base_url: str, *secrets: str) -> ProviderApi:
        limiter = SharedRateLimiter(
            settings.rate_limit_storage,
            settings.rate_limit(limit.setting),
            (settings.rate_limit_namespace or "") + limit.key,
        )
        closers.append(limiter.close)
        return ProviderApi(
            limit.provider,
            http(limit.provider, base_url),
            limiter,
            retry_attempts=settings.provider_retry_attempts,
            backoff_seconds=settings.provider_backoff_seconds,
            secrets=secrets,
        )

    discogs_secrets = _secret(settings.discogs_token)
    return Providers(
        settings=settings,
        musicbrainz=MusicBrainzClient(api(MUSICBRAINZ, settings.musicbrainz_base_url)),
        coverart=CoverArtClient(http(COVERART, settings.coverart_base_url, ARCHIVE_HOSTS)),
        discogs=DiscogsClient(
            api(DISCOGS, settings.discogs_base_url, *discogs_secrets), settings.discogs_token
        ),
        images=ImageFetcher(
            closed_at_shutdown(make_http_client(settings, "", Accept="image/*")),
            deadline_seconds=settings.image_fetch_deadline_seconds,
            max_pixels=settings.image_max_pixels,
            allowed_hosts=settings.image_fetch_allowed_hosts,
            max_bytes=settings.image_max_bytes,
        ),
        image_store=_image_store(settings, closers),
        catalogue=Catalogue(store),
    )


def _image_store(settings: Settings, closers: list[Closer]) -> ImageStore:
    if not settings.cloudflare_enabled:
        assert settings.image_cache_dir is not None  # Settings fills it in
        return LocalImageStore(
            settings.image_cache_dir, public_base_url=settings.image_public_base_url
        )
    assert settings.cloudflare_account_id is not None
    client = make_cloudflare_client(settings)
    closers.append(client.close)
    return CloudflareImageStore(
        client,
        account_id=settings.cloudflare_account_id,
        account_hash=settings.cloudflare_account_hash,
    )


def make_cloudflare_client(settings: Settings) -> AsyncCloudflare:
    """The Cloudflare SDK's client for our account, with no retries and no redirects."""
    assert settings.cloudflare_api_token is not None
    # No SDK retries: it would retry a 409 (re-sending the whole image) and stack its own
    # backoff under the job's; our job-level retries decide what happens after a failure.
    # No redirects either (the SDK follows them by default): the API has no reason to send
    # any, and following one would re-send the upload wherever it pointed. A 3xx is an error.
    return AsyncCloudflare(
        api_token=settings.cloudflare_api_token.get_secret_value(),
        base_url=settings.cloudflare_api_base_url,
        max_retries=0,
        timeout=settings.http_timeout_seconds,
        http_client=DefaultAsyncHttpxClient(follow_redirects=False),
    )


def _secret(value: SecretStr | None) -> tuple[str, ...]:
    return (value.get_secret_value(),) if value is not None else ()
