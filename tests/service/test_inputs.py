"""Inputs are checked where they enter: the client and the CLI refuse before kicking."""

from typing import Any

import pytest

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ALBUMS
from service.errors import InvalidRequestError
from service.store import LOGS
from tests.helpers import enrichment

MBID = "0383dadf-2a4e-4d10-a46a-e9e041da8eb3"
BAD = {
    "trailing newline": {"mbid": MBID + "\n"},
    "not an mbid": {"mbid": "0383dadf"},
    "too long": {"title": "t" * 513},
    "not encodable": {"title": "Northern \udcff Drift"},  # a Latin-1 byte read as UTF-8
}


@pytest.mark.parametrize("fields", BAD.values(), ids=BAD.keys())
async def test_the_client_refuses_bad_values_before_kicking(
    client: EnrichmentClient, mongo: Any, settings: Settings, fields: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequestError):
        await client.kick_album(**fields)
    assert await mongo[settings.mongodb_db][LOGS].count_documents({}) == 0


async def test_the_cli_refuses_bad_values_with_a_clear_message(
    settings_env: dict[str, str], mongo: Any, settings: Settings, redis: Any
) -> None:
    for args, message in [
        (("--mbid", MBID + "\n"), "not a MusicBrainz id"),
        (("--title", "t" * 513), "at most 512 characters"),
        (("--title", "Northern \udcff Drift"), "title"),
    ]:
        done = await enrichment(settings_env, "kick", "album", *args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert message in done.stdout
        assert "Traceback" not in done.stdout + done.stderr
    assert await mongo[settings.mongodb_db][LOGS].count_documents({}) == 0


async def test_kick_wait_fails_when_the_family_failed(
    settings_env: dict[str, str], worker: Any
) -> None:
    # Copper Wires' cover is not an image and its artist's lookups keep failing.
    mbid = ALBUMS["Copper Wires"].mbid
    done = await enrichment(settings_env, "kick", "album", "--mbid", mbid, "--wait", "60")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeline of" in done.stdout
    assert "job(s) of the family failed" in done.stdout
