"""The dashboard under Streamlit's AppTest, against a store seeded by real job families."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from scripts.commands import CommandCounter
from service import queries
from service.client import EnrichmentClient
from service.executors import SyncExecutor
from service.queries import RootFilters
from service.store import DEAD_LETTERS, FAMILIES, LOGS, make_sync_client
from tests.helpers import DASHBOARD_APP

APP = DASHBOARD_APP


def shown(markdown: str) -> str:
    """What a reader sees of Markdown whose text the dashboard escaped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


async def test_roots_table_lists_only_roots_with_rollups(seeded: dict[str, str]) -> None:
    at = run(AppTest.from_file(APP, default_timeout=30))
    table = at.dataframe[0].value
    assert set(table["job id"]) == set(seeded.values())
    drift = table[table["job id"] == seeded["Northern Drift"]].iloc[0]
    assert (drift["children"], drift["failed"], drift["matched"], drift["cached"]) == (7, 0, 2, 3)
    wires = table[table["job id"] == seeded["Copper Wires"]].iloc[0]
    assert (wires["children"], wires["failed"]) == (2, 2)
    assert list(table["started"]) == sorted(table["started"], reverse=True)
    labels = [e.label for e in at.expander]
    assert any("Northern Drift" in label for label in labels)


async def test_deep_link_opens_a_family_with_cards_in_order(seeded: dict[str, str]) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = seeded["Copper Wires"]
    run(at)
    assert at.title[0].value == f"Family of {seeded['Copper Wires']}"
    text = shown(" ".join(m.value for m in at.markdown))
    assert text.index("enrich_album") < text.index("cache_image")
    errors = shown(" ".join(e.value for e in at.error))
    assert "NotAnImageError" in errors
    assert "ProviderUnavailableError" in errors


async def test_filter_text_is_data_not_query_syntax(seeded: dict[str, str]) -> None:
    query = RootFilters(entity='{"$ne": null}').query()
    assert query["entityName"]["$regex"] == r'\{"\$ne":\ null\}'
    at = run(AppTest.from_file(APP, default_timeout=30))
    at.text_input[0].set_value('{"$ne": null}')
    run(at)
    assert at.dataframe[0].value.empty
    at.text_input[0].set_value("northern")
    run(at)
    assert list(at.dataframe[0].value["job id"]) == [seeded["Northern Drift"]]


async def test_orphans_show_a_deleted_roots_family(
    seeded: dict[str, str], mongo: Any, settings: Any
) -> None:
    await mongo[settings.mongodb_db][LOGS].delete_many({"jobId": seeded["Copper Wires"]})
    at = run(AppTest.from_function(_orphans_script, default_timeout=30))
    frame = at.dataframe[0].value
    assert list(frame["missing root"]) == [seeded["Copper Wires"]]
    assert frame.iloc[0]["state"] == "incomplete family"


async def test_orphans_cost_the_same_few_queries_however_many_roots_are_missing(
    seeded: dict[str, str], mongo: Any, settings: Any
) -> None:
    await mongo[settings.mongodb_db][LOGS].delete_many({"jobId": {"$in": list(seeded.values())}})
    counter = CommandCounter(only={"find", "aggregate", "getMore", "distinct", "count"})
    with make_sync_client(settings.mongodb_url, event_listeners=[counter]) as client:
        families = SyncExecutor(client[settings.mongodb_db]).run(queries.orphans())
    assert {family.missing_root for family in families} == set(seeded.values())
    # Entries are attempts: Copper Wires' artist failed three times, its cover once.
    assert sorted(family.entries for family in families) == [4, 7]
    # The family records, the roots' ids, one aggregation of the orphans' entries: not one
    # query per missing root.
    assert counter.count == 3


async def test_orphans_read_the_entries_of_missing_roots_only(
    seeded: dict[str, str], mongo: Any, settings: Any
) -> None:
    # A whole-library run's ten thousand entries must not be read to learn that its root is
    # still there: only the families whose root is gone have their entries read.
    gone = seeded["Copper Wires"]
    await mongo[settings.mongodb_db][LOGS].delete_many({"jobId": gone})
    log = CommandCounter(only={"find", "aggregate"}, keep=True)
    with make_sync_client(settings.mongodb_url, event_listeners=[log]) as client:
        families = SyncExecutor(client[settings.mongodb_db]).run(queries.orphans())
    assert [family.missing_root for family in families] == [gone]
    on_logs = [c for c in log.commands if LOGS in (c.get("find"), c.get("aggregate"))]
    filters = [c.get("filter") or c["pipeline"][0]["$match"] for c in on_logs]
    assert filters == [{"isRootJob": True}, {"parentJobId": {"$in": [gone]}}]


async def test_legacy_view_shows_logs_without_lineage(
    seeded: dict[str, str], mongo: Any, settings: Any
) -> None:
    await mongo[settings.mongodb_db][LOGS].insert_one(
        {"jobId": "old-1", "jobType": "spotify_sync", "status": "partial"}
    )
    at = run(AppTest.from_function(_legacy_script, default_timeout=30))
    assert list(at.dataframe[0].value["job id"]) == ["old-1"]


async def test_entity_search_finds_roots_by_a_child_entity(seeded: dict[str, str]) -> None:
    at = run(AppTest.from_function(_search_script, default_timeout=30))
    at.text_input[0].set_value("mira kestrel")
    run(at)
    assert list(at.dataframe[0].value["root job id"]) == [seeded["Northern Drift"]]


def _orphans_script() -> None:
    from dashboard import views

    views.orphans_view()


def _legacy_script() -> None:
    from dashboard import views

    views.legacy_view()


def _search_script() -> None:
    from dashboard import views

    views.search_view()


def _kick_script() -> None:
    from dashboard import views

    views.kick_view()


async def test_kick_form_starts_a_root(client: EnrichmentClient, dashboard_env: None) -> None:
    at = run(AppTest.from_function(_kick_script, default_timeout=30))
    at.text_input[1].set_value("Paper Harbors")
    at.text_input[2].set_value("Harbor Lights")
    at.button[0].click()
    run(at)
    [message] = at.success
    root_id = message.value.split()[2].rstrip(":")
    # The kicked root's family is drawn under the form at once, from its queued entry on.
    cards = [shown(m.value) for m in at.markdown if "attempt" in m.value]
    assert any("enrich_album** · Paper Harbors" in card for card in cards), cards
    family = await client.wait_for_root(root_id, timeout=60)
    assert family.root[0].entity_name == "Paper Harbors"


async def test_read_only_mode_hides_the_kick_form(
    dashboard_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "true")
    at = run(AppTest.from_function(_kick_script, default_timeout=30))
    assert not at.button
    assert "read-only" in at.warning[0].value


async def test_exposed_without_password_refuses(
    dashboard_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_HOST", "0.0.0.0")
    at = run(AppTest.from_file(APP, default_timeout=30))
    assert "refusing" in at.error[0].value
    assert not at.dataframe


async def test_password_gate(dashboard_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_PASSWORD", "open sesame")
    at = run(AppTest.from_file(APP, default_timeout=30))
    assert not at.dataframe
    at.text_input[0].set_value("wrong")
    run(at)
    assert not at.dataframe
    at.text_input[0].set_value("open sesame")
    run(at)
    assert at.dataframe
    shown = [e.value for e in [*at.markdown, *at.caption, *at.error, *at.title]]
    assert not any("open sesame" in str(value) for value in shown)


async def test_legacy_view_shows_documents_the_migration_tagged(
    dashboard_env: None, settings: Any, mongo: Any
) -> None:
    from pymongo import MongoClient

    from service.migration import LegacyMigration

    with MongoClient(settings.mongodb_url, tz_aware=True) as client:
        logs = client[settings.mongodb_db][LOGS]
        logs.insert_many([{"jobId": "pre-1", "status": "success"}, {"jobId": "pre-2"}])
        LegacyMigration(logs).run()
        assert logs.count_documents({"legacy": True}) == 2
    at = run(AppTest.from_function(_legacy_script, default_timeout=30))
    assert sorted(at.dataframe[0].value["job id"]) == ["pre-1", "pre-2"]


async def test_dead_letters_view_lists_what_could_not_be_a_job(
    dashboard_env: None, settings: Any, mongo: Any
) -> None:
    await mongo[settings.mongodb_db][DEAD_LETTERS].insert_one(
        {"streamId": "1-0", "queue": "q", "reason": "the entry has no data field",
         "excerpt": "nothing=here", "at": datetime.now(UTC)}
    )  # fmt: skip
    at = run(AppTest.from_function(_dead_letters_script, default_timeout=30))
    frame = at.dataframe[0].value
    assert list(frame["reason"]) == ["the entry has no data field"]
    assert list(frame["stream id"]) == ["1-0"]


def _dead_letters_script() -> None:
    from dashboard import views

    views.dead_letters_view()


async def test_an_outgrown_embedded_store_is_announced(
    dashboard_env: None,
    monkeypatch: pytest.MonkeyPatch,
    store_env: dict[str, str],
    mongo: Any,
    settings: Any,
) -> None:
    if "EMBEDDED_STORE_PORT" not in store_env:
        pytest.skip("runs on the embedded store only")
    monkeypatch.delenv("MONGODB_URL")  # the store as the embedded one, found by its port
    monkeypatch.setenv("EMBEDDED_STORE_NOTICE_LOGS", "1")
    await mongo[settings.mongodb_db][LOGS].insert_many([{"jobId": "a"}, {"jobId": "b"}])
    at = run(AppTest.from_file(APP, default_timeout=30))
    [notice] = at.warning
    assert "The embedded store holds 2 logs" in notice.value
    assert "docker compose up -d mongo" in notice.value


async def test_a_whole_library_family_is_summarised_and_paged(
    dashboard_env: None, mongo: Any, settings: Any
) -> None:
    from datetime import timedelta

    start = datetime.now(UTC) - timedelta(hours=1)
    root = {"jobId": "lib", "attempt": 1, "isRootJob": True, "parentJobId": None,
            "jobType": "enrich_library", "status": "success", "startedAt": start}  # fmt: skip
    children = [
        {"jobId": f"a{i}", "attempt": 1, "isRootJob": False, "parentJobId": "lib",
         "jobType": "enrich_album", "status": "failed" if i % 25 == 0 else "success",
         "entityName": f"Album {i}", "entitySearch": [f"album {i}", str(i)],
         "startedAt": start + timedelta(seconds=i), "finishedAt": start + timedelta(seconds=i + 1),
         "durationMs": 1000 + i}
        for i in range(250)
    ]  # fmt: skip
    await mongo[settings.mongodb_db][LOGS].insert_many([root, *children])
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = "lib"
    run(at)
    assert "250 jobs · done 240 · failed 10" in at.caption[0].value
    counts = at.dataframe[0].value
    assert counts.iloc[0][["job type", "failed", "success", "total"]].tolist() == [
        "enrich_album",
        10,
        240,
        250,
    ]
    # What to look at first: the latest failures, then the slowest jobs.
    highlights = at.dataframe[1].value
    assert highlights["entity"].tolist() == [
        *(f"Album {i}" for i in (225, 200, 175, 150, 125)),
        *(f"Album {i}" for i in (249, 248, 247, 246, 245)),
    ]
    assert highlights["status"].tolist()[:5] == ["failed"] * 5
    cards = [m.value for m in at.markdown if "attempt" in m.value]
    assert len(cards) == 20  # one page, never the whole family
    at.selectbox(key="fs-lib").set_value("failed")
    run(at)
    failed = [m.value for m in at.markdown if "attempt" in m.value]
    assert len(failed) == 10
    at.selectbox(key="fo-lib").set_value("slowest")
    at.selectbox(key="fs-lib").set_value(None)
    run(at)
    first = next(m.value for m in at.markdown if "attempt" in m.value)
    assert "Album 249" in first  # the slowest first


async def test_a_failed_child_is_re_run_from_its_card(
    seeded: dict[str, str], client: EnrichmentClient
) -> None:
    root_id = seeded["Copper Wires"]
    latest = queries.latest_attempts((await client.timeline(root_id)).children)
    [cache] = [e for e in latest.values() if e.job_type == "cache_image"]
    succeeded = [e.job_id for e in latest.values() if e.status == "success"]
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = root_id
    run(at)
    offered = {button.key for button in at.button if str(button.key).startswith("rerun-")}
    # The failed child and the root offer a re-run; a job that succeeded does not.
    assert {f"rerun-{cache.job_id}-1", f"rerun-{root_id}-1"} <= offered
    assert not any(f"rerun-{job_id}-" in str(key) for job_id in succeeded for key in offered)
    at.button(key=f"rerun-{cache.job_id}-1").click()
    run(at)
    [notice] = at.success
    assert shown(notice.value).startswith(f"Re-running {cache.job_id} as ")
    again = shown(notice.value).split()[-1].rstrip(".")
    await client.wait_for_root(root_id, timeout=30)
    st.cache_data.clear()
    run(at)
    captions = [shown(caption.value) for caption in at.caption]
    assert f"↻ re-run as {again}" in captions
    assert f"↻ re-run of {cache.job_id}" in captions


async def test_read_only_dashboards_offer_no_re_run(
    seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "true")
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = seeded["Copper Wires"]
    run(at)
    assert at.markdown  # the family is shown
    assert not [button for button in at.button if str(button.key).startswith("rerun-")]


# Marks that only an emoji font draws (a stock headless Chromium shows boxes instead).
EMOJI = re.compile("[\u2300-\u23ff\u2600-\u27bf\ufe0f\U0001f000-\U0001faff]")


async def test_status_marks_need_no_emoji_font(seeded: dict[str, str]) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = seeded["Copper Wires"]
    run(at)
    cards = [m.value for m in at.markdown if "attempt" in m.value]
    marks = {card.partition(" ")[0] for card in cards}
    # Streamlit's own Material Symbols font: the root succeeded, its artist and cover failed.
    assert marks == {":green[:material/check_circle:]", ":red[:material/cancel:]"}, cards
    everything = [*(m.value for m in at.markdown), *(c.value for c in at.caption),
                  *(e.value for e in at.error), *(i.value for i in at.info),
                  *(t.value for t in at.title)]  # fmt: skip
    assert not [text for text in everything if EMOJI.search(text)]


def _start() -> datetime:
    from datetime import timedelta

    return datetime.now(UTC) - timedelta(minutes=5)


def _pages_of(at: AppTest, key: str) -> str:
    [caption] = [c.value for c in at.caption if c.value.startswith("page ")]
    assert at.button(key=f"{key}-next")
    return caption


async def test_a_small_familys_cards_and_unfinished_jobs_are_paged(
    dashboard_env: None, mongo: Any, settings: Any
) -> None:
    start = _start()
    root = {"jobId": "big", "attempt": 1, "isRootJob": True, "parentJobId": None,
            "jobType": "enrich_library", "status": "success", "startedAt": start,
            "spawnedJobIds": [f"q{i:02}" for i in range(60)]}  # fmt: skip
    children = [
        {"jobId": f"q{i:02}", "attempt": 1, "isRootJob": False, "parentJobId": "big",
         "jobType": "enrich_album", "status": "queued", "entityName": f"Album {i}",
         "queuedAt": start, "startedAt": start}
        for i in range(60)
    ]  # fmt: skip
    await mongo[settings.mongodb_db][LOGS].insert_many([root, *children])
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["root"] = "big"
    run(at)
    assert len([m for m in at.markdown if "attempt" in m.value]) == 50  # not all 61
    assert len(at.info) == 50  # pending cards: not all 60
    at.button(key="cards-big-next").click()
    run(at)
    assert len([m for m in at.markdown if "attempt" in m.value]) == 11
    at.button(key="pending-big-next").click()
    run(at)
    assert len(at.info) == 10
    assert at.button(key="cards-big-next").disabled


async def test_orphans_are_paged(dashboard_env: None, mongo: Any, settings: Any) -> None:
    start = _start()
    await mongo[settings.mongodb_db][LOGS].insert_many([
        {"jobId": f"o{i:02}", "attempt": 1, "isRootJob": False, "parentJobId": f"gone-{i:02}",
         "jobType": "cache_image", "status": "success", "startedAt": start}
        for i in range(60)
    ])  # fmt: skip
    # The records a worker writes when a root first spawns children.
    families = [{"_id": f"gone-{i:02}"} for i in range(60)]
    await mongo[settings.mongodb_db][FAMILIES].insert_many(families)
    at = run(AppTest.from_function(_orphans_script, default_timeout=30))
    assert len(at.dataframe[0].value) == 50
    assert _pages_of(at, "orphans_page") == "page 1 of 2 · 60 missing roots"
    at.button(key="orphans_page-next").click()
    run(at)
    assert len(at.dataframe[0].value) == 10


async def test_entity_search_results_are_paged(
    dashboard_env: None, mongo: Any, settings: Any
) -> None:
    start = _start()
    await mongo[settings.mongodb_db][LOGS].insert_many([
        {"jobId": f"r{i:02}", "attempt": 1, "isRootJob": True, "parentJobId": None,
         "jobType": "enrich_artist", "status": "success", "entityName": "Mira Kestrel",
         "entitySearch": ["mira kestrel"], "startedAt": start}
        for i in range(60)
    ])  # fmt: skip
    at = run(AppTest.from_function(_search_script, default_timeout=30))
    at.text_input[0].set_value("mira")
    run(at)
    assert len(at.dataframe[0].value) == 50
    assert _pages_of(at, "search-page-mira") == "page 1 of 2 · 60 roots"
    at.button(key="search-page-mira-next").click()
    run(at)
    assert len(at.dataframe[0].value) == 10
