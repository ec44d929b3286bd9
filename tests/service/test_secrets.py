"""No token ever reaches a log line, a stored document or a stored error message."""

import json
import logging
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.providers import LocalProviders
from tests.fake_cloudflare import FakeCloudflare
from tests.helpers import CLOUDFLARE_TEST_TOKEN, DISCOGS_TEST_TOKEN, cloudflare_env

SECRETS = (DISCOGS_TEST_TOKEN, CLOUDFLARE_TEST_TOKEN)


@pytest.fixture
def settings_env(
    settings_env: dict[str, str], cloudflare_api: tuple[FakeCloudflare, str]
) -> dict[str, str]:
    return cloudflare_env(settings_env, cloudflare_api[1])


async def test_tokens_appear_nowhere_after_successes_and_failures(
    client: EnrichmentClient,
    providers: LocalProviders,
    cloudflare_api: tuple[FakeCloudflare, str],
    mongo: AsyncMongoClient[dict[str, Any]],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Successes: Discogs with the token, Cloudflare uploads with the other.
    ok = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    await client.wait_for_root(ok, timeout=60)
    # Failures: Discogs refusing the token, Cloudflare quoting the Authorization header back.
    echo = {"message": f"Invalid token: Discogs token={DISCOGS_TEST_TOKEN}"}
    providers.fail("/discogs/", 401, times=100, body=echo)
    cloudflare_api[0].mode = "400-echo"
    failing = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    family = await client.wait_for_root(failing, timeout=60)
    assert {e.status for e in family.children} >= {"failed"}
    assert len(cloudflare_api[0].uploads) >= 2

    stored = []
    database = mongo[settings.mongodb_db]
    for name in await database.list_collection_names():
        stored += [doc async for doc in database[name].find({})]
    written = json.dumps(stored, default=str) + caplog.text
    assert len(stored) > 10
    for secret in SECRETS:
        assert secret not in written
    # What the providers received proves the tokens were really in use.
    assert any(DISCOGS_TEST_TOKEN in (r.authorization or "") for r in providers.requests)
    assert all(CLOUDFLARE_TEST_TOKEN in u.authorization for u in cloudflare_api[0].uploads)
