"""`discogs_artist` against the local Discogs: every outcome, its details, auth and 429s."""

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders
from service.models import Artist
from service.models.jobs import DiscogsDetails
from service.store import LOGS
from tests.helpers import DISCOGS_TEST_TOKEN


async def run_discogs(
    client: EnrichmentClient, job_id: str, *, name: str, mbid: str, discogs_id: int | None = None
) -> dict[str, Any]:
    """Kick a `discogs_artist` root directly and return its (last) raw log."""
    payload = {"artistMbid": mbid, "name": name, "discogsId": discogs_id}
    await client.kick("discogs_artist", payload, job_id=job_id)
    family = await client.wait_for_root(job_id, timeout=30)
    entry = family.root[-1]
    assert isinstance(entry.details, DiscogsDetails) or entry.status == "failed"
    return entry.model_dump(by_alias=True)


async def raw_log(
    mongo: AsyncMongoClient[dict[str, Any]], settings: Settings, job_id: str
) -> dict[str, Any]:
    found = await mongo[settings.mongodb_db][LOGS].find_one({"jobId": job_id})
    assert found is not None
    return found


async def test_musicbrainz_link_matches_with_full_confidence(
    client: EnrichmentClient, mongo: Any, settings: Settings, providers: LocalProviders
) -> None:
    vela = ARTISTS["Vela Nord"]
    await run_discogs(client, "d-link", name=vela.name, mbid=vela.mbid, discogs_id=402117)
    log = await raw_log(mongo, settings, "d-link")
    details = log["details"]
    assert log["status"] == "success"
    assert (details["matchSource"], details["outcome"], details["confidence"]) == (
        "musicbrainz_link",
        "matched",
        1.0,
    )
    assert (details["discogsId"], details["matchedName"], details["queryName"]) == (
        402117,
        "Vela Nord",
        "Vela Nord",
    )
    assert details["profile"].startswith(
        "Swedish ambient duo formed in Malmö by Ida Lind and Omar Saleh."
    )
    assert "[b]" not in details["profile"]
    assert details["imagesFound"] == 2
    primary = details["images"][0]
    assert (primary["type"], primary["width"], primary["height"]) == ("primary", 600, 400)
    assert primary["uri"].startswith(f"{providers.images_url}/vela-nord.jpg")
    # Genres from the artist's masters, most frequent first.
    assert details["genres"] == ["Electronic", "Folk"]
    assert details["styles"] == ["Ambient", "Drone"]
    assert details["requests"] == 2  # the artist, then its masters
    assert details["rateLimitRemaining"] is not None
    assert details["candidates"] == []
    artist = await Artist.find_one({"mbid": vela.mbid})
    assert artist is not None
    assert artist.discogs_id == 402117
    assert artist.discogs_genres == ["Electronic", "Folk"]
    assert artist.discogs_url == "https://www.discogs.com/artist/402117"
    assert artist.profile == details["profile"]
    assert len(artist.images) == 2
    # Every Discogs call carried the token in the header, never in the URL.
    calls = providers.discogs_requests()
    assert {c.authorization for c in calls} == {f"Discogs token={DISCOGS_TEST_TOKEN}"}
    assert all("token" not in c.path for c in calls)
    # The match spawns the primary image's caching.
    assert len(log["spawnedJobIds"]) == 1


async def test_search_match_ignores_the_numeric_suffix(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    okonkwo = ARTISTS["Okonkwo Brass Collective"]
    await run_discogs(client, "d-search", name=okonkwo.name, mbid=okonkwo.mbid)
    details = (await raw_log(mongo, settings, "d-search"))["details"]
    assert (details["matchSource"], details["outcome"]) == ("search", "matched")
    assert details["matchedName"] == "Okonkwo Brass Collective (2)"
    assert details["confidence"] == 1.0
    assert [c["id"] for c in details["candidates"]][:2] == [611203, 611202]
    assert details["candidates"][0]["score"] > details["candidates"][1]["score"]
    assert len(details["candidates"]) <= 5
    assert details["requests"] == 3  # search, artist, masters


async def test_ambiguous_match_writes_nothing(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    harbor = ARTISTS["Harbor Lights"]
    await run_discogs(client, "d-ambiguous", name=harbor.name, mbid=harbor.mbid)
    log = await raw_log(mongo, settings, "d-ambiguous")
    assert log["status"] == "skipped"
    assert log["details"]["outcome"] == "ambiguous"
    assert 0.6 <= log["details"]["confidence"] < 0.85
    assert log["details"]["matchedName"] == "Harbour Lights Orchestra"
    assert log["fieldsEnriched"] == []
    assert log["spawnedJobIds"] == []
    assert await Artist.find_one({"mbid": harbor.mbid}) is None


async def test_no_match(client: EnrichmentClient, mongo: Any, settings: Settings) -> None:
    quiet = ARTISTS["Quiet Cartographer"]
    await run_discogs(client, "d-none", name=quiet.name, mbid=quiet.mbid)
    log = await raw_log(mongo, settings, "d-none")
    assert log["status"] == "skipped"
    assert log["details"]["outcome"] == "no_match"
    assert log["details"]["confidence"] < 0.6
    assert log["fieldsEnriched"] == []
    assert await Artist.find_one({"mbid": quiet.mbid}) is None


async def test_equal_names_are_ambiguous(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    orchard = ARTISTS["Static Orchard"]
    await run_discogs(client, "d-tie", name=orchard.name, mbid=orchard.mbid)
    log = await raw_log(mongo, settings, "d-tie")
    assert (log["status"], log["details"]["outcome"]) == ("skipped", "ambiguous")
    assert [c["score"] for c in log["details"]["candidates"]][:2] == [1.0, 1.0]
    assert await Artist.find_one({"mbid": orchard.mbid}) is None


async def test_stale_musicbrainz_link_falls_back_to_search(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    okonkwo = ARTISTS["Okonkwo Brass Collective"]
    await run_discogs(client, "d-stale", name=okonkwo.name, mbid=okonkwo.mbid, discogs_id=999999)
    details = (await raw_log(mongo, settings, "d-stale"))["details"]
    assert details["matchSource"] == "search"
    assert (details["outcome"], details["discogsId"]) == ("matched", 611203)


async def test_5xx_is_retried_then_a_retryable_failure(
    client: EnrichmentClient, mongo: Any, settings: Settings, providers: LocalProviders
) -> None:
    providers.fail("/discogs/artists/", 500, times=100)
    vela = ARTISTS["Vela Nord"]
    await run_discogs(client, "d-500", name=vela.name, mbid=vela.mbid, discogs_id=402117)
    log = await raw_log(mongo, settings, "d-500")
    assert (log["status"], log["error"]["type"]) == ("failed", "ProviderUnavailableError")
    assert log["error"]["retryable"] is True
    assert log["details"]["requests"] == settings.provider_retry_attempts


async def test_429_is_retried_with_backoff(
    client: EnrichmentClient, mongo: Any, settings: Settings, providers: LocalProviders
) -> None:
    providers.fail("/discogs/artists/518820", 429, times=1)
    mira = ARTISTS["Mira Kestrel"]
    await run_discogs(client, "d-429", name=mira.name, mbid=mira.mbid, discogs_id=518820)
    log = await raw_log(mongo, settings, "d-429")
    assert log["status"] == "success"
    assert log["details"]["requests"] == 3  # 429, the artist again, masters
    statuses = [c.status for c in providers.discogs_requests()]
    assert statuses == [429, 200, 200]


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, "ProviderError"), (403, "ProviderError"), (422, "InvalidRequestError")],
)
async def test_permanent_errors_are_not_retried(
    client: EnrichmentClient,
    mongo: Any,
    settings: Settings,
    providers: LocalProviders,
    status: int,
    error: str,
) -> None:
    providers.fail("/discogs/artists/", status, times=10)
    vela = ARTISTS["Vela Nord"]
    await run_discogs(client, f"d-{status}", name=vela.name, mbid=vela.mbid, discogs_id=402117)
    log = await raw_log(mongo, settings, f"d-{status}")
    assert log["status"] == "failed"
    assert (log["error"]["type"], log["error"]["retryable"]) == (error, False)
    assert str(status) in log["error"]["message"]
    assert len(providers.discogs_requests()) == 1  # permanent: not retried
    assert log["details"]["matchSource"] == "musicbrainz_link"  # what was known before it failed
    assert log["details"]["requests"] == 1


class TestWithoutToken:
    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        return {key: value for key, value in settings_env.items() if key != "DISCOGS_TOKEN"}

    async def test_no_token_is_a_failed_entry_saying_so(
        self, client: EnrichmentClient, mongo: Any, settings: Settings, providers: LocalProviders
    ) -> None:
        assert settings.discogs_token is None
        vela = ARTISTS["Vela Nord"]
        await run_discogs(client, "d-token", name=vela.name, mbid=vela.mbid)
        log = await raw_log(mongo, settings, "d-token")
        assert log["status"] == "failed"
        assert log["error"]["type"] == "ConfigurationError"
        assert "DISCOGS_TOKEN is not set" in log["error"]["message"]
        assert log["error"]["retryable"] is False
        assert providers.discogs_requests() == []
