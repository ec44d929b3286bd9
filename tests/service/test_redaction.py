"""Secrets never leave the process: redaction of text, of every log record, of settings errors."""

import json
import logging
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pymongo import AsyncMongoClient

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.providers import LocalProviders
from service.redaction import Redactor, protect
from tests.helpers import DISCOGS_TEST_TOKEN, enrichment

TOKEN = "Sk+9/ab=Xy7Qw3Zr_LmN0pQ"


def echoes(secret: str) -> list[str]:
    """The forms a provider has echoed a secret back in."""
    return [
        secret, secret.upper(), secret.lower(), quote(secret, safe=""), quote_plus(secret),
        quote(secret, safe="").lower(), secret[3:11], secret[-9:],
    ]  # fmt: skip


@pytest.mark.parametrize("echo", echoes(TOKEN))
def test_any_echo_of_a_secret_is_redacted(echo: str) -> None:
    redacted = Redactor([TOKEN]).redact(f"401: bad token {echo} (check it)")
    assert redacted == "401: bad token [redacted] (check it)"


def test_url_credentials_and_signing_parameters_are_redacted() -> None:
    text = (
        "GET https://user:pa55word@img.example/a.jpg?size=2&sig=abc123&X-Amz-Signature=ffee "
        "and redis://:hunter2@cache:6379/0 and https://cdn.example/b.png?token=t0k3n"
    )
    redacted = Redactor().redact(text)
    for secret in ("pa55word", "abc123", "ffee", "hunter2", "t0k3n"):
        assert secret not in redacted
    assert "https://***@img.example/a.jpg?size=2&sig=[redacted]" in redacted
    assert "redis://***@cache:6379/0" in redacted


def test_a_short_secret_is_matched_as_a_word() -> None:
    redactor = Redactor(["admin"])
    assert redactor.redact("user ADMIN logged in as administrator") == (
        "user [redacted] logged in as administrator"
    )


def test_ordinary_text_is_left_alone() -> None:
    text = "Vela Nord — Northern Drift (2019), 12 tracks; see https://musicbrainz.org/artist/1"
    assert Redactor([TOKEN]).redact(text) == text


def test_every_log_record_passes_through_redaction(caplog: pytest.LogCaptureFixture) -> None:
    protect(TOKEN)
    caplog.set_level(logging.DEBUG)
    # As httpcore logs a provider's headers at DEBUG, and as a library logs a failure.
    headers = [(b"X-Echo", TOKEN.upper().encode()), (b"Location", b"https://u:pw@h/x?sig=s1")]
    logging.getLogger("httpcore.http11").debug("receive_response_headers %s", headers)
    logging.getLogger("taskiq.receiver").info("fetching %s", f"https://cdn/x?token={quote(TOKEN)}")
    try:
        raise RuntimeError(f"provider said {TOKEN[2:12]}")
    except RuntimeError:
        logging.getLogger("service.runner").exception("job failed")
    written = caplog.text
    assert written.count("[redacted]") >= 4
    for echo in [*echoes(TOKEN), ":pw@", "sig=s1"]:
        assert echo not in written, echo


async def test_settings_errors_never_echo_secrets(settings_env: dict[str, str], mongo: Any) -> None:
    secrets = {
        "CLOUDFLARE_API_TOKEN": "cf-token-that-must-stay-secret",  # without its account id
        "DASHBOARD_PASSWORD": "dashboard-password-that-must-stay-secret",
    }
    # A field's error, then a cross-field one: pydantic used to quote every input in the latter.
    for bad, named in [
        ({"DASHBOARD_PORT": "must-stay-secret"}, "DASHBOARD_PORT"),
        ({}, "CLOUDFLARE_ACCOUNT_ID"),
    ]:
        done = await enrichment({**settings_env, **secrets, **bad}, "roots")
        assert done.returncode == 2
        shown = done.stdout + done.stderr
        assert "invalid settings" in shown
        assert named in shown
        assert "must-stay-secret" not in shown
        assert "Traceback" not in shown


async def test_echoed_tokens_never_reach_the_store_or_the_timeline(
    settings_env: dict[str, str],
    client: EnrichmentClient,
    providers: LocalProviders,
    mongo: AsyncMongoClient[dict[str, Any]],
    settings: Settings,
) -> None:
    variants = [v for v in echoes(DISCOGS_TEST_TOKEN) if v != DISCOGS_TEST_TOKEN]
    echo = {"message": "Invalid token: " + " / ".join(variants)}
    providers.fail("/discogs/", 401, times=100, body=echo)
    root_id = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    family = await client.wait_for_root(root_id, timeout=60)
    assert any(e.error and "Invalid token" in e.error.message for e in family.entries)

    database = mongo[settings.mongodb_db]
    stored = []
    for name in await database.list_collection_names():
        stored += [doc async for doc in database[name].find({})]
    shown = await enrichment(settings_env, "timeline", root_id)
    written = json.dumps(stored, default=str) + shown.stdout
    assert "[redacted]" in written
    for variant in variants:
        assert variant not in written, variant
