"""The dashboard against hostile store data and hostile visitors (AppTest, real store)."""

import logging
import re
import time
from base64 import b64decode
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from streamlit import config
from streamlit.testing.v1 import AppTest

from dashboard.cards import STATUS_MARKS, UNKNOWN_MARK
from service.client import EnrichmentClient
from service.config import Settings
from service.store import LOGS
from tests.dashboard.hostile import HOSTILE, LINK, TRACKER, cache_entry, seed_family
from tests.helpers import DASHBOARD_APP as APP


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def image_sources(at: AppTest) -> list[str]:
    """Every image URL the page hands the browser (Streamlit's media URLs included)."""
    return [image.url for element in at.get("image") for image in element.proto.imgs]


def decoded(source: str) -> Image.Image:
    """The picture in a `data:image/...;base64,` URI."""
    header, payload = source.split(",", 1)
    assert header.endswith(";base64"), header
    return Image.open(BytesIO(b64decode(payload))).convert("RGB")


def family_page(root_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = root_id
    return run(at)


async def test_paths_in_documents_never_reach_the_servers_files(
    dashboard_env: None, mongo: Any, settings: Settings, tmp_path: Path
) -> None:
    secret_svg = tmp_path / "secret.svg"
    secret_svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>TOPSECRET</text></svg>')
    assert settings.image_cache_dir is not None
    cache = settings.image_cache_dir
    (cache / "ab").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(cache / "ab" / "good.png")
    outside = Path("..") / ".." / tmp_path.name / "secret.svg"
    await seed_family(
        mongo, settings, "root-files",
        cache_entry("c1", beforeUrl=str(secret_svg), beforeUrlFetched=True,
                    cachePath="/etc/hostname"),
        cache_entry("c2", beforeUrl="/etc/passwd", cachePath=str(outside), afterUrl="/etc/passwd"),
        cache_entry("c3", beforeUrl="https://intranet.example/a.png", beforeUrlFetched=False,
                    cacheLocation="cloudflare", afterUrl="file:///etc/passwd"),
        cache_entry("c4", beforeUrl="https://img.example/ok.png", beforeUrlFetched=True,
                    cachePath="ab/good.png"),
    )  # fmt: skip
    at = family_page("root-files")
    sources = image_sources(at)
    # Eight thumbnails: the one cached file and placeholders, each inside the page (a media
    # URL Streamlit serves can be dropped before the browser asks: a broken image).
    # No URL from a document reaches the browser, not even one the worker fetched.
    assert len(sources) == 8, sources
    assert len(set(sources)) == 2, sources
    assert all(source.startswith("data:image/") for source in sources), sources
    pixels = {decoded(source).getpixel((0, 0)) for source in sources}
    assert (254, 0, 0) in pixels or (255, 0, 0) in pixels, pixels  # the red file, re-encoded
    captions = " ".join(c.value for c in at.caption).replace("\\", "").replace("\u2060", "")
    assert "/etc/passwd" in captions  # shown as inert text instead
    assert "intranet.example" in captions
    assert "https://img.example/ok.png" in captions


async def test_provider_text_is_escaped_everywhere(
    dashboard_env: None, mongo: Any, settings: Settings
) -> None:
    discogs = {"jobId": "d1", "jobType": "discogs_artist", "status": "success",
               "entityName": HOSTILE,
               "details": {"discogsId": 7, "matchedName": LINK, "outcome": "matched",
                           "genres": [TRACKER], "styles": ["`x` [a](http://e.x)"],
                           "profile": HOSTILE, "discogsUrl": "javascript:alert(1)"}}  # fmt: skip
    failed = {"jobId": "f1", "jobType": "enrich_artist", "status": "failed", "entityName": LINK,
              "error": {"type": LINK, "message": HOSTILE, "retryable": False}}  # fmt: skip
    await seed_family(mongo, settings, "root-text", discogs, failed)
    at = family_page("root-text")
    sources = [
        *(m.value for m in at.markdown), *(c.value for c in at.caption),
        *(e.value for e in at.error), *(t.value for t in at.title),
    ]  # fmt: skip
    assert sources
    # A card opens with its status mark: ours, so Markdown on purpose.
    marks = [*STATUS_MARKS.values(), UNKNOWN_MARK]
    own_mark = re.compile(f"^(?:{'|'.join(map(re.escape, marks))}) ")
    for source in sources:
        # Without its escaped characters, nothing of the hostile markup is left.
        bare = re.sub(r"\\[!-/:-@\[-`{-~]", "", own_mark.sub("", source))
        for markup in ("](", "![", ":red[", "<img", "$x"):
            assert markup not in bare, source
    assert not [b for b in at.get("link_button") if "javascript" in str(b.proto)]

    roots = run(AppTest.from_file(APP, default_timeout=30))
    [label] = [e.label for e in roots.expander]
    assert "\\[Re\\-login here\\]\\(https\u2060\\:" in label


async def test_a_deep_link_title_is_text(dashboard_env: None) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = f"{LINK}{'x' * 5000}"
    run(at)
    [title] = at.title
    assert "](" not in title.value
    assert len(title.value) < 300


async def test_huge_values_are_truncated_for_display(
    dashboard_env: None, mongo: Any, settings: Settings
) -> None:
    huge = "N" * 5_000_000
    await seed_family(
        mongo, settings, "root-huge",
        {"jobId": "h1", "jobType": "enrich_artist", "status": "failed", "entityName": huge,
         "error": {"type": "ProviderError", "message": huge, "retryable": False}},
    )  # fmt: skip
    await mongo[settings.mongodb_db][LOGS].update_one(
        {"jobId": "root-huge"}, {"$set": {"entityName": huge}}
    )
    roots = run(AppTest.from_file(APP, default_timeout=30))
    assert all(len(e.label) < 400 for e in roots.expander)
    assert roots.dataframe[0].value["entity"].str.len().max() <= 200
    at = family_page("root-huge")
    texts = [*(m.value for m in at.markdown), *(e.value for e in at.error)]
    assert texts
    assert max(len(text) for text in texts) < 3_000


async def test_any_bind_address_but_loopback_needs_a_login(dashboard_env: None) -> None:
    # `streamlit run dashboard/app.py` with no --server.address listens on every interface.
    config.set_option("server.address", None)
    at = run(AppTest.from_file(APP, default_timeout=30))
    assert "refusing" in at.error[0].value
    assert not at.dataframe
    config.set_option("server.address", "0.0.0.0")
    at = run(AppTest.from_file(APP, default_timeout=30))
    assert not at.dataframe
    config.set_option("server.address", "::1")
    assert run(AppTest.from_file(APP, default_timeout=30)).dataframe


async def test_the_gate_takes_any_text_and_slows_guessing(
    dashboard_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DASHBOARD_PASSWORD", "clé secrète")
    caplog.set_level(logging.WARNING, logger="dashboard.gate")
    at = run(AppTest.from_file(APP, default_timeout=30))
    started = time.monotonic()
    for guess in ("naïve guess", "日本語"):
        at.text_input[0].set_value(guess)
        run(at)  # a TypeError with a traceback before
        assert not at.dataframe
        assert "Wrong password" in at.error[0].value
    assert time.monotonic() - started >= 3  # 1 s after the first failure, 2 s after the second
    attempts = [r.getMessage() for r in caplog.records if "wrong password" in r.getMessage()]
    assert attempts == [
        "dashboard: wrong password (attempt 1 in this session)",
        "dashboard: wrong password (attempt 2 in this session)",
    ]
    assert "naïve" not in caplog.text
    assert "日本語" not in caplog.text
    at.text_input[0].set_value("clé secrète")
    run(at)
    assert at.dataframe
    assert config.get_option("client.showErrorDetails") == "none"


OIDC = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a-cookie-secret-of-some-length",
    "client_id": "enrichment",
    "client_secret": "client-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


async def test_oidc_login_replaces_the_password(
    dashboard_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_ALLOWED_USERS", "lead@example.org, @ops.example.com")
    config.set_option("server.address", "0.0.0.0")  # exposed, and no password
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["auth"] = OIDC
    run(at)
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.dataframe
    assert not at.error
    # Any account the identity provider knows is not enough: it must be on the list.
    at.user = {"is_logged_in": True, "email": "stranger@gmail.example"}
    run(at)
    assert not at.dataframe
    assert "may not use this dashboard" in at.error[0].value
    at.user = {"is_logged_in": True, "email": "Night.Shift@ops.example.com"}
    run(at)
    assert at.dataframe


def _kick_script() -> None:
    from dashboard import views

    views.kick_view()


async def test_kick_form_kicks_an_artist_by_name(
    client: EnrichmentClient, dashboard_env: None
) -> None:
    at = run(AppTest.from_function(_kick_script, default_timeout=30))
    at.radio[0].set_value("artist")
    at.text_input[1].set_value("Mira Kestrel")
    at.button[0].click()
    run(at)
    [message] = at.success  # before: the name was dropped and the kick refused
    root_id = message.value.split()[2].rstrip(":")
    family = await client.wait_for_root(root_id, timeout=60)
    assert family.root[0].job_type == "enrich_artist"
    assert family.root[0].entity_name == "Mira Kestrel"


async def test_kick_form_refuses_bad_values_before_kicking(
    client: EnrichmentClient, dashboard_env: None, mongo: Any, settings: Settings
) -> None:
    at = run(AppTest.from_function(_kick_script, default_timeout=30))
    at.text_input[0].set_value("0383dadf-2a4e-4d10-a46a-e9e041da8eb3\n")
    at.button[0].click()
    run(at)
    assert "not a MusicBrainz id" in at.error[0].value
    at.text_input[0].set_value("")
    at.text_input[1].set_value("t" * 513)
    at.button[0].click()
    run(at)
    assert "at most 512 characters" in at.error[0].value
    assert not at.success
    assert await mongo[settings.mongodb_db][LOGS].count_documents({}) == 0
