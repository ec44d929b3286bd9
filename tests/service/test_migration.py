"""The legacy migration: every rule, dry run, idempotence, interruption, live writes, odd shapes."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from scripts.seed_legacy_logs import legacy_documents
from service import queries
from service.config import Settings
from service.executors import Record, SyncExecutor
from service.migration import LegacyMigration, keep_existing, started_from
from service.models import LogEntry
from service.store import FAMILIES, LOGS


@pytest.fixture
def logs(settings: Settings) -> Iterator[Collection[Record]]:
    assert settings.mongodb_url
    with MongoClient(settings.mongodb_url, tz_aware=True) as client:
        yield client[settings.mongodb_db][LOGS]
        client.drop_database(settings.mongodb_db)


def by_job(logs: Collection[Record]) -> dict[str, Record]:
    return {doc.get("jobId", ""): doc for doc in logs.find({}, {"_id": 0})}


def test_each_rule(logs: Collection[Record]) -> None:
    created = datetime(2024, 3, 1, tzinfo=UTC)
    oid = ObjectId.from_datetime(datetime(2023, 7, 1, tzinfo=UTC))
    logs.insert_many([
        {"jobId": "legacy", "status": "success", "createdAt": created},
        {"jobId": "root", "status": "success", "timestamp": 1714521600},
        {"jobId": "child", "parentJobId": "root", "status": "failed", "entityName": "Björk"},
        {"jobId": "self", "parentJobId": "self", "isRootJob": False, "startedAt": created},
        {"_id": oid, "jobId": "bare"},
        {"jobId": "new", "isRootJob": False, "parentJobId": "elsewhere", "startedAt": created},
    ])  # fmt: skip
    report = LegacyMigration(logs, batch_size=2).run()
    docs = by_job(logs)
    assert (docs["legacy"]["isRootJob"], docs["legacy"]["legacy"]) == (False, True)
    assert docs["legacy"]["startedAt"] == created
    assert docs["root"]["isRootJob"] is True
    assert "legacy" not in docs["root"]
    assert docs["root"]["startedAt"] == datetime(2024, 5, 1, tzinfo=UTC)
    assert (docs["child"]["isRootJob"], "legacy" in docs["child"]) == (False, False)
    assert docs["child"]["entitySearch"] == ["bjork"]  # findable by entity search
    assert (docs["self"]["isRootJob"], docs["self"]["parentJobId"]) == (True, None)
    assert docs["bare"]["startedAt"] == datetime(2023, 7, 1, tzinfo=UTC)
    assert docs["new"] == {
        "jobId": "new",
        "isRootJob": False,
        "parentJobId": "elsewhere",
        "startedAt": created,
    }
    assert report.changed == {
        "tagged legacy": 2,
        "tagged root": 2,
        "tagged child": 1,
        "startedAt filled": 4,
        "search keys filled": 1,
        "families recorded": 2,
    }
    assert {doc["_id"] for doc in logs.database[FAMILIES].find({})} == {"root", "elsewhere"}
    assert report.seen == 6
    assert set(report.seconds) == {"indexes", *report.changed}
    assert report.unchanged == 1
    assert {"isRootJob_1_startedAt_-1", "parentJobId_1_startedAt_1"} <= set(
        logs.index_information()
    )


def test_dry_run_changes_nothing(logs: Collection[Record]) -> None:
    logs.insert_many([
        *legacy_documents(60),
        {"jobId": "self", "parentJobId": "self"},  # a root twice over: self-named and named
        {"jobId": "middle", "parentJobId": "top"},  # a child that is also named as parent
        {"jobId": "below", "parentJobId": "middle"},
        {"jobId": "x", "parentJobId": "x"},  # names "x" as parent, so the other "x" is a root
        {"jobId": "x"},
    ])  # fmt: skip
    before = list(logs.find({}))
    report = LegacyMigration(logs, dry_run=True, batch_size=7).run()
    assert list(logs.find({})) == before
    # It reports what a real run then does.
    assert report.changed == LegacyMigration(logs, batch_size=7).run().changed
    assert report.changed["tagged root"] > 0
    assert [d["isRootJob"] for d in logs.find({"jobId": "x"})] == [True, True]
    assert logs.find_one({"jobId": "middle"}) == {
        **logs.find_one({"jobId": "middle"}, {"isRootJob": 0, "startedAt": 0}),
        "isRootJob": True,  # named as a parent: a root, its own parentJobId kept
        "startedAt": ANY,
    }


def test_second_run_changes_nothing_and_batches_not_documents(logs: Collection[Record]) -> None:
    logs.insert_many(legacy_documents(600))
    # A batch larger than the embedded store's `$in` limit must still work (chunked).
    first = LegacyMigration(logs, batch_size=1000).run()
    assert first.round_trips < 600 / 10  # batched: far fewer round trips than documents
    second = LegacyMigration(logs, batch_size=1000).run()
    assert sum(second.changed.values()) == 0
    assert second.unchanged == 600


# A migration that SIGKILLs its own process once it has reported 120 documents: no exception
# handler, `finally` or driver clean-up runs, as when an operator or the OOM killer stops it.
KILLED_PART_WAY = """
import os, signal, sys
from pymongo import MongoClient
from service.migration import LegacyMigration
from service.store import FAMILIES, LOGS

seen = 0
def die_part_way(rule, count):
    global seen
    seen += count
    if seen > 120:
        os.kill(os.getpid(), signal.SIGKILL)

logs = MongoClient(sys.argv[1], tz_aware=True)[sys.argv[2]][LOGS]
LegacyMigration(logs, batch_size=10, progress=die_part_way).run()
"""


def test_killed_run_reaches_the_same_end_state(
    settings: Settings, logs: Collection[Record]
) -> None:
    # The same _ids in both: a log without a date takes its ObjectId's time.
    documents = [{**d, "_id": ObjectId()} for d in legacy_documents(150)]
    other = logs.database["enrichment_logs_control"]
    logs.insert_many([dict(d) for d in documents])
    other.insert_many([dict(d) for d in documents])
    LegacyMigration(other, batch_size=10).run()

    assert settings.mongodb_url
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PART_WAY, settings.mongodb_url, settings.mongodb_db],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert logs.count_documents({"isRootJob": {"$exists": False}}) > 0  # really part-way
    LegacyMigration(logs, batch_size=10).run()
    assert list(logs.find({}, sort=[("_id", 1)])) == list(other.find({}, sort=[("_id", 1)]))


def test_new_logs_written_during_the_run_are_never_tagged_legacy(
    logs: Collection[Record],
) -> None:
    logs.insert_many(legacy_documents(80))
    written = []

    def worker_writes(rule: str, count: int) -> None:
        job = f"live-{len(written)}"
        logs.insert_one(
            {"jobId": job, "isRootJob": True, "parentJobId": None, "startedAt": datetime.now(UTC)}
        )
        written.append(job)

    LegacyMigration(logs, batch_size=10, progress=worker_writes).run()
    assert written
    assert logs.count_documents({"jobId": {"$in": written}, "legacy": True}) == 0


def test_odd_shapes_migrate_and_still_load(logs: Collection[Record]) -> None:
    logs.insert_many([
        {"jobId": "a", "parentJobId": 42, "createdAt": "2024-02-02T10:00:00"},
        {"jobId": "b", "timestamp": 1714521600123, "status": "exploded", "jobType": "mystery"},
        {"jobId": "c", "parentJobId": "", "details": "text", "error": "boom"},
        {"noJobId": True},
        # _ids of other types: `$gt` compares within one type, each must still be reached.
        *({"_id": i, "jobId": f"int-{i}"} for i in (1, 2, 3.5)),
        *({"_id": f"s{i}", "jobId": f"str-{i}"} for i in range(4)),
        {"_id": {"k": 1}, "jobId": "doc"},
    ])  # fmt: skip
    LegacyMigration(logs, batch_size=3).run()
    docs = list(logs.find({}))
    assert len(docs) == 12
    assert all("isRootJob" in d and "startedAt" in d for d in docs)
    entries = [LogEntry.model_validate(d) for d in docs]
    assert {e.status for e in entries} >= {"exploded"}
    assert by_job(logs)["b"]["startedAt"] == datetime(2024, 5, 1, 0, 0, 0, 123000, tzinfo=UTC)


def test_a_refused_batch_stops_with_a_clear_error_and_loses_nothing(
    settings_env: dict[str, str], logs: Collection[Record]
) -> None:
    # A validator that refuses the legacy tag: that rule's first batch fails.
    logs.database.create_collection(logs.name, validator={"legacy": {"$exists": False}})
    logs.insert_many(legacy_documents(40))
    before = logs.count_documents({})
    env = {**os.environ, **settings_env, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate-legacy", "--batch-size", "8"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "migration stopped at 'tagged legacy'" in done.stdout
    assert "run it again to finish" in done.stdout
    assert logs.count_documents({}) == before
    assert logs.count_documents({"isRootJob": False, "parentJobId": {"$type": "string"}}) > 0
    assert logs.count_documents({"legacy": True}) == 0


def test_start_time_from_unusable_numbers_falls_back_to_the_object_id() -> None:
    # (Not stored: the embedded store cannot index a document holding NaN.)
    oid = ObjectId.from_datetime(datetime(2023, 7, 1, tzinfo=UTC))
    for bad in (float("nan"), float("inf"), 1e300):
        assert started_from({"_id": oid, "createdAt": bad, "timestamp": bad}) == oid.generation_time


def test_repeated_job_ids_beyond_the_in_limit_are_all_tagged(logs: Collection[Record]) -> None:
    logs.insert_many([{"jobId": "retried"} for _ in range(520)] + [{"parentJobId": "retried"}])
    report = LegacyMigration(logs, batch_size=1000).run()
    assert report.changed["tagged root"] == 520
    assert logs.count_documents({"jobId": "retried", "isRootJob": True}) == 520


def test_a_start_time_written_meanwhile_is_kept(logs: Collection[Record]) -> None:
    worker_wrote, derived = datetime(2026, 1, 2, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
    logs.insert_many([{"jobId": "rewritten", "startedAt": worker_wrote}, {"jobId": "legacy"}])
    for doc in logs.find({}):
        logs.update_one({"_id": doc["_id"]}, keep_existing({"startedAt": derived}))
    assert by_job(logs)["rewritten"]["startedAt"] == worker_wrote
    assert by_job(logs)["legacy"]["startedAt"] == derived


ATTEMPT_INDEX = "jobId_1_attempt_1"
ONLY_ATTEMPTS = {"attempt": {"$exists": True}}


def test_repeated_or_missing_job_ids_do_not_block_the_attempt_index(
    logs: Collection[Record],
) -> None:
    # Before lineage a retried job could log twice under one jobId, or log with none.
    logs.insert_many([{"jobId": "twice"}, {"jobId": "twice"}, {"status": "ok"}, {"status": "ok"}])
    report = LegacyMigration(logs).run()
    assert report.changed["tagged legacy"] == 4
    index = logs.index_information()[ATTEMPT_INDEX]
    assert (index["unique"], index["partialFilterExpression"]) == (True, ONLY_ATTEMPTS)
    logs.insert_one({"jobId": "new", "attempt": 1})
    with pytest.raises(DuplicateKeyError):
        logs.insert_one({"jobId": "new", "attempt": 1})


def test_an_earlier_releases_attempt_index_is_rebuilt(logs: Collection[Record]) -> None:
    logs.create_index([("jobId", 1), ("attempt", 1)], unique=True)
    logs.insert_many(legacy_documents(20))
    LegacyMigration(logs).run()
    assert logs.index_information()[ATTEMPT_INDEX]["partialFilterExpression"] == ONLY_ATTEMPTS
    assert logs.count_documents({"legacy": True}) > 0


def test_cli_reports_and_exits_non_zero_when_unreachable(
    settings_env: dict[str, str], logs: Collection[Record]
) -> None:
    logs.insert_many(legacy_documents(30))
    env = {**os.environ, **settings_env, "COLUMNS": "120"}
    command = [sys.executable, "scripts/migrate_legacy_logs.py"]
    done = subprocess.run(
        [*command, "--batch-size", "8"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "tagged legacy" in done.stdout
    assert re.search(r"indexes ensured\s.*\s\d+\.\d", done.stdout)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert "0 documents changed" in again.stdout
    down = subprocess.run(
        [*command, "--mongodb-url", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 1
    assert "cannot reach the store" in down.stdout


def test_families_are_recorded_so_orphans_of_older_logs_show(logs: Collection[Record]) -> None:
    # Children written before family records existed; one family's root was deleted by hand.
    created = datetime(2025, 6, 1, tzinfo=UTC)
    logs.insert_many([
        {"jobId": "kept", "isRootJob": True, "attempt": 1, "startedAt": created},
        {"jobId": "kept-1", "isRootJob": False, "parentJobId": "kept", "startedAt": created},
        {"jobId": "gone-1", "isRootJob": False, "parentJobId": "gone", "startedAt": created},
        {"jobId": "gone-2", "isRootJob": False, "parentJobId": "gone", "startedAt": created},
    ])  # fmt: skip
    families = logs.database[FAMILIES]
    dry = LegacyMigration(logs, dry_run=True).run()
    assert (dry.changed["families recorded"], families.count_documents({})) == (2, 0)
    assert LegacyMigration(logs).run().changed["families recorded"] == 2
    assert {doc["_id"] for doc in families.find({})} == {"kept", "gone"}
    orphans = SyncExecutor(logs.database).run(queries.orphans())
    assert [(family.missing_root, family.entries) for family in orphans] == [("gone", 2)]
    assert LegacyMigration(logs).run().changed["families recorded"] == 0
