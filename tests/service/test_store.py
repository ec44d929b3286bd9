"""The store: indexes on the model, legacy logs, the embedded server's lifecycle."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import SON, ObjectId
from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from service.client import EnrichmentClient
from service.config import Settings
from service.embedded_store import ensure_store, is_listening
from service.logbook import write_log
from service.models import DOCUMENT_MODELS, EnrichmentLog, LogEntry
from service.store import CLAIMS, DEAD_LETTERS, LOGS, connect_store, stale_indexes
from tests.helpers import (
    enrichment,
    free_port,
    serve_standby,
    standby_store_process,
    start_store_process,
    stop_store_process,
)

LEGACY_LOGS: list[dict[str, Any]] = [
    # Written before lineage existed: no isRootJob, no parentJobId, no startedAt.
    {
        "jobId": "legacy-1",
        "jobType": "enrich_album",
        "status": "success",
        "createdAt": datetime(2024, 5, 1, tzinfo=UTC),
    },
    {
        "jobId": "legacy-2",
        "jobType": "spotify_sync",
        "status": "partial",
        "details": "free text",
        "timestamp": 1714521600,
    },
    {"jobType": "enrich_artist", "error": "boom", "details": {"mbid": 42}},
]


async def test_model_indexes_exist(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    info = await mongo[settings.mongodb_db][LOGS].index_information()
    keys = {tuple(index["key"]): index.get("unique", False) for index in info.values()}
    assert keys[(("isRootJob", 1), ("startedAt", -1))] is False
    assert keys[(("parentJobId", 1), ("startedAt", 1))] is False
    assert keys[(("jobId", 1), ("attempt", 1))] is True
    assert info["jobId_1_attempt_1"]["partialFilterExpression"] == {"attempt": {"$exists": True}}
    # `{jobId: X}` cannot use a partial index on MongoDB: this one covers every document.
    assert "partialFilterExpression" not in info["jobId_1_attempt_-1"]
    assert keys[(("entityType", 1), ("entityId", 1), ("startedAt", -1))] is False
    # Every view's query on an index of its own (see the README's table).
    assert {(("entitySearch", 1),), (("entityId", 1),), (("legacy", 1), ("startedAt", -1))} <= set(
        keys
    )
    dead = await mongo[settings.mongodb_db][DEAD_LETTERS].index_information()
    assert [("at", -1)] in [index["key"] for index in dead.values()]


async def test_legacy_logs_load_and_query(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    logs = mongo[settings.mongodb_db][LOGS]
    await logs.insert_many([dict(doc) for doc in LEGACY_LOGS])
    root_id = await client.kick_artist(name="Mira Kestrel")
    await client.wait_for_root(root_id, timeout=30)

    everything = await EnrichmentLog.find_all().to_list()
    legacy = {log.job_id: log for log in everything if log.parent_job_id != root_id}
    legacy.pop(root_id)
    assert len(legacy) == len(LEGACY_LOGS)
    assert legacy["legacy-1"].is_root_job is False
    assert legacy["legacy-1"].parent_job_id is None
    assert legacy["legacy-2"].details == {"value": "free text"}
    assert legacy["legacy-2"].status == "partial"
    assert legacy[None].details == {"mbid": 42}  # does not fit ArtistDetails: kept raw
    # Roots never include legacy logs; a legacy id still has a (root-only) timeline.
    assert [r.root.job_id for r in await client.roots()] == [root_id]
    assert [e.job_id for e in (await client.timeline("legacy-1")).entries] == ["legacy-1"]
    # The legacy logs really lack the field (the model's default is not written back).
    assert await EnrichmentLog.find({"isRootJob": {"$exists": False}}).count() == len(LEGACY_LOGS)


def test_ensure_store_starts_one_and_data_survives_restart(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "MONGODB_URL": None,  # the embedded store, even when the suite runs on MongoDB
            "ENRICHMENT_DATA_DIR": str(tmp_path),
            "EMBEDDED_STORE_PORT": str(free_port()),
        }
    )
    try:
        assert ensure_store(settings) == settings.embedded_store_url
        assert is_listening(settings.embedded_store_port)
        first_pid = settings.store_pid_path.read_text()
        assert ensure_store(settings) == settings.embedded_store_url
        assert settings.store_pid_path.read_text() == first_pid  # reused, not restarted
        marker = ObjectId()
        _run_sync(settings, "insert", marker)
        _stop_store(settings)
        assert not is_listening(settings.embedded_store_port)
        ensure_store(settings)
        assert settings.store_pid_path.read_text() != first_pid
        assert _run_sync(settings, "find", marker) == 1
        assert (tmp_path / "store.sqlite").exists()
    finally:
        _stop_store(settings)


async def test_connect_store_binds_models(settings: Settings, mongo: Any) -> None:
    store = await connect_store(settings)
    try:
        assert EnrichmentLog.get_pymongo_collection().name == "enrichment_logs"  # stored data
        assert EnrichmentLog.get_pymongo_collection().database.name == settings.mongodb_db
        assert (store.logs.name, store.logs.database.name) == (LOGS, settings.mongodb_db)
    finally:
        await store.close()


async def test_connect_store_rebuilds_an_index_whose_definition_changed(
    settings: Settings, mongo: Any
) -> None:
    # An earlier release made the attempt key unique over every log, legacy ones included.
    logs = mongo[settings.mongodb_db][LOGS]
    await logs.create_index([("jobId", 1), ("attempt", 1)], unique=True)
    await logs.insert_one({"jobId": "kept", "attempt": 1})
    store = await connect_store(settings)
    try:
        info = await logs.index_information()
        assert info["jobId_1_attempt_1"]["partialFilterExpression"] == {
            "attempt": {"$exists": True}
        }
        await logs.insert_many([{"jobId": "legacy"}, {"jobId": "legacy"}])
        assert await logs.count_documents({}) == 3
        with pytest.raises(DuplicateKeyError):
            await logs.insert_one({"jobId": "kept", "attempt": 1})
    finally:
        await store.close()


async def test_connect_store_leaves_unchanged_indexes_alone(settings: Settings, mongo: Any) -> None:
    for _ in range(2):
        store = await connect_store(settings)
        await store.close()
    database = mongo[settings.mongodb_db]
    for model in DOCUMENT_MODELS:
        existing = await database[model.Settings.name].index_information()
        assert set(existing) > {"_id_"}
        assert stale_indexes(existing, model.Settings.indexes) == []


def test_stale_indexes_reads_what_servers_report() -> None:
    wanted = [
        IndexModel([("a", 1)]),
        IndexModel([("b", 1), ("c", -1)], unique=True, partialFilterExpression={"c": {"$gt": 0}}),
    ]
    mongodb = {  # MongoDB: float directions, a version, no `unique` on plain indexes
        "a_1": {"v": 2, "key": [("a", 1.0)]},
        "b_1_c_-1": {
            "v": 2,
            "key": [("b", 1.0), ("c", -1.0)],
            "unique": True,
            "partialFilterExpression": SON([("c", SON([("$gt", 0)]))]),
        },
    }
    mongoeco = {"a_1": {"key": [("a", 1)], "unique": False, "ns": "db.logs"}}
    assert stale_indexes(mongodb, wanted) == []
    assert stale_indexes(mongoeco, wanted) == []
    changed = {"b_1_c_-1": {"key": [("b", 1), ("c", -1)], "unique": True}}
    assert stale_indexes(changed, wanted) == ["b_1_c_-1"]
    assert stale_indexes({"a_1": {"key": [("a", -1)]}}, wanted) == ["a_1"]


def _run_sync(settings: Settings, action: str, marker: ObjectId) -> int:
    from pymongo import MongoClient

    with MongoClient(settings.embedded_store_url, serverSelectionTimeoutMS=5000) as client:
        collection = client["persist"]["markers"]
        if action == "insert":
            collection.insert_one({"_id": marker})
            return 1
        return collection.count_documents({"_id": marker})


def _stop_store(settings: Settings) -> None:
    if settings.store_pid_path.exists():
        os.kill(int(settings.store_pid_path.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while is_listening(settings.embedded_store_port) and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_log_write_survives_a_brief_store_outage(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.model_validate(
        {
            "MONGODB_URL": f"mongodb://127.0.0.1:{port}/?directConnection=true",
            "MONGODB_DB": "outage",
        }
    )
    process = start_store_process(tmp_path, port)
    standby = standby_store_process(tmp_path, port)  # brings the store back in a moment
    store = await connect_store(settings)
    try:
        stop_store_process(process)
        entry = LogEntry(job_id="outage-job", is_root_job=True, status="success")
        write = asyncio.create_task(write_log(store.logs, entry, timeout=30))
        await asyncio.sleep(1.0)
        assert not write.done()  # still retrying: the job is not acknowledged meanwhile
        serve_standby(standby, tmp_path, port)
        await asyncio.wait_for(write, timeout=30)
        assert await EnrichmentLog.find({"jobId": "outage-job"}).count() == 1
    finally:
        await store.close()
        stop_store_process(process)
        stop_store_process(standby)


@pytest.fixture
def embedded_env(settings_env: dict[str, str], store_env: dict[str, str]) -> dict[str, str]:
    """The test's store reached as the embedded one (no MONGODB_URL), noticing past 3 logs."""
    if "EMBEDDED_STORE_PORT" not in store_env:
        pytest.skip("runs on the embedded store only")
    env = {key: value for key, value in settings_env.items() if key != "MONGODB_URL"}
    return {**env, "EMBEDDED_STORE_NOTICE_LOGS": "3"}


async def test_an_outgrown_embedded_store_says_so_at_start_up(
    embedded_env: dict[str, str], mongo: Any, settings: Settings
) -> None:
    await mongo[settings.mongodb_db][LOGS].insert_many([{"jobId": f"j{i}"} for i in range(4)])
    done = await enrichment(embedded_env, "roots")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The embedded store holds 4 logs" in done.stderr
    assert "docker compose up -d mongo" in done.stderr
    assert "MONGODB_URL" in done.stderr
    quiet = await enrichment({**embedded_env, "EMBEDDED_STORE_NOTICE_LOGS": "4"}, "roots")
    assert "embedded store holds" not in quiet.stderr


def test_copy_store_moves_everything_and_can_run_again(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    from pymongo import MongoClient

    source_port, target_port = free_port(), free_port()
    source = start_store_process(tmp_path, source_port)
    (tmp_path / "target").mkdir()
    target = start_store_process(tmp_path / "target", target_port)
    url = "mongodb://127.0.0.1:{}/?directConnection=true"
    database = settings_env["MONGODB_DB"]
    try:
        with MongoClient(url.format(source_port)) as client:
            client[database][LOGS].insert_many([{"jobId": f"j{i}", "attempt": 1} for i in range(5)])
            client[database]["albums"].insert_one({"mbid": "m1", "title": "Tidal Glass"})
        command = [sys.executable, "-m", "scripts.copy_store", "--from", url.format(source_port),
                   "--to", url.format(target_port)]  # fmt: skip
        env = {**os.environ, **settings_env}
        first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        assert f"{LOGS}: 5 copied, 0 already there" in first.stdout
        assert "albums: 1 copied, 0 already there" in first.stdout
        again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        assert f"{LOGS}: 0 copied, 5 already there" in again.stdout
        with MongoClient(url.format(target_port)) as client:
            assert client[database][LOGS].count_documents({}) == 5
            indexes = client[database][LOGS].index_information()
            assert "jobId_1_attempt_-1" in indexes  # the service's indexes, ensured
    finally:
        stop_store_process(source)
        stop_store_process(target)


async def test_claims_expire_after_the_freshness_window(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    await client.roots()  # connected: every index ensured
    info = await mongo[settings.mongodb_db][CLAIMS].index_information()
    [expiry] = [index for index in info.values() if index["key"] == [("claimedAt", 1)]]
    assert expiry["expireAfterSeconds"] == 30 * 86_400


async def test_entity_search_by_word_prefix_folds_case_and_accents(
    client: EnrichmentClient, mongo: Any, settings: Settings
) -> None:
    from service.executors import AsyncExecutor
    from service.logbook import entry_document
    from service.models import LogEntry
    from service.queries import entity_roots

    names = {"r1": "Björk — Vespertine", "r2": "Northern Drift", "r3": "Vela Nord"}
    await mongo[settings.mongodb_db][LOGS].insert_many([
        entry_document(LogEntry(job_id=job, is_root_job=True, entity_name=name, attempt=1))
        for job, name in names.items()
    ])  # fmt: skip
    await client.roots()  # connected: the indexes are ensured
    reader = AsyncExecutor(mongo[settings.mongodb_db])

    async def found(text: str) -> list[str]:
        return sorted(match.root_job_id for match in await reader.run(entity_roots(text)))

    assert await found("BJORK") == ["r1"]
    assert await found("vesper") == ["r1"]  # any word's start
    assert await found("drift") == ["r2"]
    assert await found("orthern") == []  # a prefix of words, not any substring
    assert await found("n") == ["r2", "r3"]
    assert await found(".*") == []  # text, never a pattern
