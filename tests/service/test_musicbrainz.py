"""The MusicBrainz client against the local server: formats, errors, 503s, User-Agent."""

from collections.abc import AsyncIterator

import pytest

from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders
from service.errors import InvalidRequestError, NotFoundError, ProviderUnavailableError
from service.providers.http import ProviderApi, make_provider_client
from service.providers.musicbrainz import MusicBrainzClient, lucene_phrase
from service.providers.ratelimit import MUSICBRAINZ, SharedRateLimiter


@pytest.fixture
async def musicbrainz(settings: Settings) -> AsyncIterator[MusicBrainzClient]:
    http = make_provider_client(settings, "MusicBrainz", settings.musicbrainz_base_url)
    limiter = SharedRateLimiter(
        settings.rate_limit_storage, settings.rate_limit(MUSICBRAINZ.setting), settings.queue_name
    )
    await limiter.reset()
    api = ProviderApi("MusicBrainz", http, limiter, retry_attempts=3, backoff_seconds=0.01)
    yield MusicBrainzClient(api)
    await limiter.reset()
    await limiter.close()
    await http.aclose()


async def test_artist_lookup_parses_relations_and_sends_our_user_agent(
    musicbrainz: MusicBrainzClient, providers: LocalProviders, settings: Settings
) -> None:
    artist = await musicbrainz.get_artist(ARTISTS["Vela Nord"].mbid)
    assert artist.name == "Vela Nord"
    assert artist.sort_name == "Vela Nord"
    assert artist.life_span is not None
    assert artist.life_span.begin == "2008"
    assert artist.discogs_id == 402117
    assert [g.name for g in artist.genres] == ["ambient", "electronic"]
    assert {r.user_agent for r in providers.requests} == {settings.http_user_agent}


async def test_search_scores_best_first(musicbrainz: MusicBrainzClient) -> None:
    results = await musicbrainz.search_artists("Mira Kestrel")
    assert results[0].name == "Mira Kestrel"
    assert results[0].score == 100
    assert all((r.score or 0) <= 100 for r in results)


async def test_503_with_retry_after_is_retried(
    musicbrainz: MusicBrainzClient, providers: LocalProviders
) -> None:
    providers.fail("/ws/2/artist", 503, times=2, Retry_After="0")
    artist = await musicbrainz.get_artist(ARTISTS["Harbor Lights"].mbid)
    assert artist.name == "Harbor Lights"
    assert [r.status for r in providers.requests] == [503, 503, 200]


async def test_persistent_503_becomes_a_retryable_error(
    musicbrainz: MusicBrainzClient, providers: LocalProviders
) -> None:
    providers.fail("/ws/2/artist", 503, times=5)
    with pytest.raises(ProviderUnavailableError, match="HTTP 503") as caught:
        await musicbrainz.get_artist(ARTISTS["Harbor Lights"].mbid)
    assert caught.value.retryable is True
    assert len(providers.requests) == 3


async def test_unknown_and_malformed_ids(
    musicbrainz: MusicBrainzClient, providers: LocalProviders
) -> None:
    with pytest.raises(NotFoundError, match="404"):
        await musicbrainz.get_release_group("11111111-2222-4333-8444-555555555555")
    with pytest.raises(InvalidRequestError, match="not a MusicBrainz id"):
        await musicbrainz.get_artist("not-an-id")
    assert len(providers.requests) == 1  # the malformed id never left the process


def test_lucene_phrase_escapes_quotes() -> None:
    assert lucene_phrase('Say "Hi"') == '"Say \\"Hi\\""'
    assert lucene_phrase("a\\b") == '"a\\\\b"'
