"""Never ask a provider twice for what we know: freshness across families, and forcing."""

from typing import Any

import pytest

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS
from service.demo.providers import LocalProviders
from service.models import JobStatus
from service.models.views import Timeline
from tests.helpers import enrichment


def by_type(family: Timeline, job_type: str) -> list[Any]:
    return [entry for entry in family.entries if entry.job_type == job_type]


async def test_a_second_family_relies_on_the_first(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    first = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    await client.wait_for_root(first, timeout=60)
    asked = len(providers.requests)
    # By MBID this time: the first family marked the album under both of its keys.
    again = await client.kick_album(mbid=ALBUMS["Northern Drift"].mbid)
    family = await client.wait_for_root(again, timeout=60)
    [root] = family.root
    assert root.relied_on is not None
    assert root.relied_on.outcome == "fresh"
    assert root.relied_on.job_id == first
    # Its children come again, and each relies on its own fresh answer: not one request.
    assert len(family.children) == 7
    assert {e.status for e in family.entries} == {JobStatus.SKIPPED}
    assert all(e.relied_on is not None for e in family.entries)
    assert len(providers.requests) == asked


async def test_a_fresh_root_still_retries_what_failed_in_its_family(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    # Copper Wires' cover is not an image: its cache_image failed, so it is not fresh.
    first = await client.kick_album(mbid=ALBUMS["Copper Wires"].mbid)
    await client.wait_for_root(first, timeout=60)
    covers = [r for r in providers.requests if r.path.endswith("not-an-image.jpg")]
    again = await client.kick_album(mbid=ALBUMS["Copper Wires"].mbid)
    family = await client.wait_for_root(again, timeout=60)
    assert family.root[0].status == JobStatus.SKIPPED
    [cover] = by_type(family, "cache_image")
    assert cover.relied_on is None
    assert cover.status == JobStatus.FAILED  # it ran again (and the file is still no image)
    assert len([r for r in providers.requests if r.path.endswith("not-an-image.jpg")]) == (
        len(covers) + 1
    )


async def test_an_artist_is_fetched_once_across_albums(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    first = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    first_family = await client.wait_for_root(first, timeout=60)
    [vela] = by_type(first_family, "enrich_artist")
    discogs_before = len(providers.discogs_requests())
    # Northern Drift credits Vela Nord too: its enrich_artist relies on the first family's.
    second = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    family = await client.wait_for_root(second, timeout=60)
    artists = {e.entity_name: e for e in by_type(family, "enrich_artist")}
    assert artists["Vela Nord"].status == JobStatus.SKIPPED
    assert artists["Vela Nord"].relied_on is not None
    assert artists["Vela Nord"].relied_on.job_id == vela.job_id
    assert artists["Mira Kestrel"].status == JobStatus.SUCCESS
    matches = {e.entity_name: e for e in by_type(family, "discogs_artist")}
    assert matches["Vela Nord"].relied_on is not None  # its match is not searched again
    assert matches["Mira Kestrel"].status == JobStatus.SUCCESS
    assert len(providers.discogs_requests()) > discogs_before


async def test_force_refreshes_the_whole_family(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    first = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    first_family = await client.wait_for_root(first, timeout=60)
    asked = len(providers.musicbrainz_requests())
    forced = await client.kick_album(title="Tidal Glass", artist="Vela Nord", force=True)
    family = await client.wait_for_root(forced, timeout=60)
    assert all(entry.relied_on is None for entry in family.entries)
    # The same jobs ran again (their start order may differ under load).
    assert sorted(e.job_type for e in family.entries) == sorted(
        e.job_type for e in first_family.entries
    )
    assert by_type(family, "discogs_artist")[0].status == JobStatus.SUCCESS
    assert len(providers.musicbrainz_requests()) > asked


class TestFreshnessOff:
    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        return {**settings_env, "ENRICH_FRESH_DAYS": "0"}

    async def test_zero_days_always_asks(self, client: EnrichmentClient) -> None:
        for _ in range(2):
            root = await client.kick_artist(name="Mira Kestrel")
            family = await client.wait_for_root(root, timeout=60)
            assert family.root[0].status == JobStatus.SUCCESS


async def test_the_cli_forces_and_shows_what_was_relied_on(
    settings_env: dict[str, str], client: EnrichmentClient
) -> None:
    first = await client.kick_artist(name="Mira Kestrel")
    await client.wait_for_root(first, timeout=60)
    again = await enrichment(
        settings_env, "kick", "artist", "--name", "Mira Kestrel", "--wait", "30"
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"fresh: relied on {first[:8]}" in again.stdout
    forced = await enrichment(
        settings_env, "kick", "artist", "--name", "Mira Kestrel", "--force", "--wait", "30"
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "fresh: relied on" not in forced.stdout
    assert "discogs_artist" in forced.stdout


class TestDiscogsMatches:
    @pytest.fixture
    def settings_env(self, settings_env: dict[str, str]) -> dict[str, str]:
        # Freshness off: the second family reaches Discogs, and shows what it reuses there.
        return {**settings_env, "ENRICH_FRESH_DAYS": "0"}

    async def test_a_confirmed_match_is_reused_without_searching(
        self, client: EnrichmentClient, providers: LocalProviders
    ) -> None:
        # Okonkwo Brass Collective has no Discogs link on MusicBrainz: the first family searches.
        first = await client.kick_album(mbid=ALBUMS["Lagos Night Shift"].mbid)
        [matched] = by_type(await client.wait_for_root(first, timeout=60), "discogs_artist")
        assert (matched.details.match_source, matched.details.outcome) == ("search", "matched")
        searches = len([r for r in providers.discogs_requests() if "database/search" in r.path])
        again = await client.kick_album(mbid=ALBUMS["Lagos Night Shift"].mbid)
        [reused] = by_type(await client.wait_for_root(again, timeout=60), "discogs_artist")
        assert (reused.details.match_source, reused.details.outcome) == (
            "previous_match",
            "matched",
        )
        assert reused.details.discogs_id == matched.details.discogs_id
        after = len([r for r in providers.discogs_requests() if "database/search" in r.path])
        assert after - searches == 1  # the masters (genres and styles) only: no artist search

    async def test_force_searches_again(
        self, client: EnrichmentClient, providers: LocalProviders
    ) -> None:
        first = await client.kick_album(mbid=ALBUMS["Lagos Night Shift"].mbid)
        await client.wait_for_root(first, timeout=60)
        forced = await client.kick_album(mbid=ALBUMS["Lagos Night Shift"].mbid, force=True)
        [again] = by_type(await client.wait_for_root(forced, timeout=60), "discogs_artist")
        assert again.details.match_source == "search"  # a wrong match can be corrected
