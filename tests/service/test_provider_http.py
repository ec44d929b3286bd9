"""Provider clients against the local providers: redirects stay at home, bad URLs are input."""

import asyncio
import bisect
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from limits import parse

from service.config import Settings
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.errors import (
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
)
from service.providers.coverart import ARCHIVE_HOSTS, CoverArtClient
from service.providers.http import (
    OriginGuard,
    ProviderApi,
    make_provider_client,
    parse_retry_after,
)
from service.providers.musicbrainz import MusicBrainzClient
from service.providers.ratelimit import MUSICBRAINZ, SharedRateLimiter
from tests.helpers import free_port

# A well-formed MBID the local MusicBrainz does not know: only injected answers reach it.
UNKNOWN_MBID = "0badc0de-0000-4000-8000-000000000001"


@pytest.fixture
async def limiter(settings: Settings) -> AsyncIterator[SharedRateLimiter]:
    """The MusicBrainz budget, on the test's own key in the real Redis."""
    limit = settings.rate_limit(MUSICBRAINZ.setting)
    shared = SharedRateLimiter(settings.rate_limit_storage, limit, settings.queue_name)
    await shared.reset()
    yield shared
    await shared.reset()
    await shared.close()


@pytest.fixture
async def api(settings: Settings, limiter: SharedRateLimiter) -> AsyncIterator[ProviderApi]:
    """The MusicBrainz API as a worker builds it, with fast retries."""
    async with make_provider_client(settings, "MusicBrainz", settings.musicbrainz_base_url) as http:
        yield ProviderApi("MusicBrainz", http, limiter, retry_attempts=3, backoff_seconds=0.01)


@pytest.fixture
def musicbrainz(api: ProviderApi) -> MusicBrainzClient:
    return MusicBrainzClient(api)


def port_of(providers: LocalProviders) -> str:
    return providers.base_url.rsplit(":", 1)[1]


def elsewhere(providers: LocalProviders, differs_in: str) -> str:
    """An origin other than the local providers' one, differing in host, port or scheme."""
    return {
        "host": f"http://localhost:{port_of(providers)}",  # the same server under another name
        "port": f"http://127.0.0.1:{free_port()}",
        "scheme": f"https://127.0.0.1:{port_of(providers)}",
    }[differs_in]


@pytest.mark.parametrize("differs_in", ["host", "port", "scheme"])
async def test_redirect_to_another_origin_is_refused_before_it_is_sent(
    musicbrainz: MusicBrainzClient, providers: LocalProviders, differs_in: str
) -> None:
    origin = elsewhere(providers, differs_in)
    vela = ARTISTS["Vela Nord"].mbid
    location = f"{origin}/ws/2/artist/{vela}?fmt=json&token=secret"
    providers.fail(UNKNOWN_MBID, 302, Location=location)
    with pytest.raises(
        ProviderError, match=f"refusing a request to {origin}/ws/2/artist/"
    ) as caught:
        await musicbrainz.get_artist(UNKNOWN_MBID)
    assert not isinstance(caught.value, ProviderUnavailableError)
    assert caught.value.retryable is False
    assert str(caught.value).startswith("MusicBrainz: ")
    assert f"outside the API's origin {providers.base_url}" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert [r.path for r in providers.requests] == [f"/ws/2/artist/{UNKNOWN_MBID}"]


async def test_same_origin_redirect_is_followed(
    musicbrainz: MusicBrainzClient, providers: LocalProviders
) -> None:
    vela = ARTISTS["Vela Nord"].mbid
    providers.fail(UNKNOWN_MBID, 301, Location=f"/ws/2/artist/{vela}?fmt=json")
    artist = await musicbrainz.get_artist(UNKNOWN_MBID)
    assert artist.name == "Vela Nord"
    assert [r.status for r in providers.requests] == [301, 200]


async def test_cover_art_follows_the_archive_and_nowhere_else(
    settings: Settings, providers: LocalProviders
) -> None:
    # "localhost" stands in for archive.org: the same local server under another name.
    album = next(album for album in ALBUMS.values() if album.cover)
    mbid = album.mbid
    listing = f"{elsewhere(providers, 'host')}/caa/release-group/{mbid}"
    archive = make_provider_client(
        settings,
        "Cover Art Archive",
        settings.coverart_base_url,
        redirect_hosts=frozenset({"localhost"}),
    )
    production = make_provider_client(
        settings, "Cover Art Archive", settings.coverart_base_url, redirect_hosts=ARCHIVE_HOSTS
    )
    async with archive, production:
        providers.fail(mbid, 307, Location=listing)
        cover = await CoverArtClient(archive).front_image_url(mbid)
        assert cover == f"{providers.images_url}/{album.cover}"
        providers.fail(mbid, 307, Location=listing)
        with pytest.raises(ProviderError, match="Cover Art Archive: refusing a request to"):
            await CoverArtClient(production).front_image_url(mbid)
    assert [r.status for r in providers.requests] == [307, 200, 307]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://coverartarchive.org/release-group/x", True),
        ("https://archive.org/download/mbid-x/index.json", True),
        ("https://ia800505.us.archive.org/11/items/mbid-x/index.json", True),
        ("http://archive.org/download/mbid-x/index.json", True),
        ("https://archive.org.evil.example/x", False),
        ("https://notarchive.org/x", False),
        ("http://coverartarchive.org/release-group/x", False),
        ("https://coverartarchive.org:8443/release-group/x", False),
        ("ftp://archive.org/x", False),
        ("http://169.254.169.254/latest/meta-data/", False),
    ],
)
def test_origin_guard_allows_the_origin_and_the_archive_hosts(url: str, allowed: bool) -> None:
    guard = OriginGuard(
        "Cover Art Archive", "https://coverartarchive.org", redirect_hosts=ARCHIVE_HOSTS
    )
    assert guard.allows(httpx.URL(url)) is allowed


async def test_invalid_url_is_an_input_error_not_a_crash(
    api: ProviderApi, providers: LocalProviders
) -> None:
    with pytest.raises(InvalidRequestError, match="MusicBrainz: InvalidURL") as caught:
        await api.get_json("artist/\x00", {"fmt": "json"})
    assert caught.value.retryable is False
    assert providers.requests == []


async def test_a_base_url_that_is_not_http_is_a_configuration_error(
    settings: Settings, limiter: SharedRateLimiter
) -> None:
    async with make_provider_client(settings, "MusicBrainz", "ftp://127.0.0.1:1/ws/2") as http:
        api = ProviderApi("MusicBrainz", http, limiter, backoff_seconds=0.01)
        with pytest.raises(
            ConfigurationError, match="MusicBrainz: the base URL's scheme"
        ) as caught:
            await api.get_json("artist", {"fmt": "json"})
    assert caught.value.retryable is False


async def test_a_cover_art_id_that_cannot_make_a_url_is_an_input_error(
    settings: Settings, providers: LocalProviders
) -> None:
    async with make_provider_client(
        settings, "Cover Art Archive", settings.coverart_base_url, redirect_hosts=ARCHIVE_HOSTS
    ) as http:
        with pytest.raises(InvalidRequestError, match="invalid release group id"):
            await CoverArtClient(http).front_image_url("group\x00id")
    assert providers.requests == []


async def test_a_429_pauses_the_provider_for_every_worker(
    settings: Settings, providers: LocalProviders, limiter: SharedRateLimiter
) -> None:
    # Two workers' clients: their own limiter objects, one shared budget (and pause) in Redis.
    limit = settings.rate_limit(MUSICBRAINZ.setting)
    other = SharedRateLimiter(settings.rate_limit_storage, limit, settings.queue_name)
    providers.fail("/ws/2/artist/", 429, times=1, Retry_After="2")
    async with (
        make_provider_client(settings, "MusicBrainz", settings.musicbrainz_base_url) as one,
        make_provider_client(settings, "MusicBrainz", settings.musicbrainz_base_url) as two,
    ):
        told = ProviderApi("MusicBrainz", one, limiter, retry_attempts=1)
        bystander = ProviderApi("MusicBrainz", two, other, retry_attempts=1)
        with pytest.raises(ProviderUnavailableError, match="429"):
            await MusicBrainzClient(told).get_artist(ARTISTS["Harbor Lights"].mbid)
        artist = await MusicBrainzClient(bystander).get_artist(ARTISTS["Mira Kestrel"].mbid)
    await other.close()
    assert artist.name == "Mira Kestrel"
    refused, answered = providers.requests
    assert (refused.status, answered.status) == (429, 200)
    # The other worker sent nothing until the pause Retry-After asked for was over.
    assert answered.at - refused.at >= 1.9


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("inf", None), ("nan", None), ("-5", 0.0), ("1000000000", 300.0), ("soon", None)],
)
def test_retry_after_is_bounded_provider_data(header: str, seconds: float | None) -> None:
    # A hostile or broken header must neither crash a job nor pause every worker for years.
    assert parse_retry_after(header) == seconds


async def test_a_client_limit_equal_to_the_providers_draws_no_503(settings: Settings) -> None:
    # Requests held back between taking their budget and reaching the provider (a busy
    # event loop, a full connection pool) must still arrive within the provider's window.
    # Two workers' clients at 4/s against a provider that refuses the 5th arrival in 1 s.
    rate, requests = 4, 12
    limit = parse(f"{rate}/second")
    delays = itertools.cycle([0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5])

    async def held_back(request: httpx.Request) -> None:
        await asyncio.sleep(next(delays))

    with LocalProviders(musicbrainz_rate_per_second=rate) as local:
        limiters = [SharedRateLimiter(settings.rate_limit_storage, limit, settings.queue_name)]
        limiters.append(SharedRateLimiter(settings.rate_limit_storage, limit, settings.queue_name))
        await limiters[0].reset()
        async with AsyncExitStack() as stack:
            apis = []
            for limiter in limiters:
                stack.push_async_callback(limiter.close)
                http = await stack.enter_async_context(
                    make_provider_client(settings, "MusicBrainz", local.musicbrainz_url)
                )
                http.event_hooks["request"].append(held_back)
                apis.append(ProviderApi("MusicBrainz", http, limiter, retry_attempts=1))
            mbid = ARTISTS["Mira Kestrel"].mbid
            await asyncio.gather(
                *(MusicBrainzClient(apis[i % 2]).get_artist(mbid) for i in range(requests))
            )
            # Before the limiters close: a closed limiter's client would open a connection
            # again, and leave it for the garbage collector (a ResourceWarning in a later test).
            await limiters[0].reset()
    arrivals = sorted(request.at for request in local.requests)
    assert [request.status for request in local.requests] == [200] * requests
    busiest = max(bisect.bisect_left(arrivals, at + 1.0) - i for i, at in enumerate(arrivals))
    assert busiest <= rate
