"""A settled family's roll-up and progress are kept in its record and read back, while true."""

from datetime import UTC, datetime
from typing import Any

from service import queries
from service.config import Settings
from service.executors import AsyncExecutor, Find, Operation, Record, UpdateOne
from service.logbook import touch_family
from service.store import FAMILIES, LOGS
from tests.dashboard.hostile import seed_family

# What the tests look for among the operations a plan sent: a read of the family's entries.
ENTRIES = "entries"


class Recording(AsyncExecutor):
    """The async executor, noting which operations each plan sent (a family's entries read
    as `ENTRIES`, every other operation by its type).
    """

    def __init__(self, database: Any) -> None:
        super().__init__(database)
        self.sent: list[str] = []

    async def _execute(self, operation: Operation) -> list[Record]:
        if isinstance(operation, Find) and "parentJobId" in operation.filter:
            self.sent.append(ENTRIES)
        else:
            self.sent.append(type(operation).__name__)
        return await super()._execute(operation)


def child(job_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"jobId": job_id, "jobType": "enrich_artist", "status": status, **fields}


async def family(mongo: Any, settings: Settings, root_id: str, *children: dict[str, Any]) -> Any:
    """A root with these children and its family record, as a worker leaves them."""
    await seed_family(mongo, settings, root_id, *children)
    database = mongo[settings.mongodb_db]
    await database[FAMILIES].insert_one({"_id": root_id, "since": datetime.now(UTC)})
    return database


async def roll_up(database: Any, root_id: str) -> tuple[dict[str, Any], list[str]]:
    executor = Recording(database)
    page = queries.roots_page(queries.RootFilters(), limit=50, max_attempts=3)
    [summary] = [s for s in await executor.run(page) if s.root.job_id == root_id]
    return summary.model_dump(exclude={"root"}), executor.sent


async def test_a_settled_familys_roll_up_is_read_back_until_it_gains_an_entry(
    mongo: Any, settings: Settings
) -> None:
    database = await family(
        mongo, settings, "root-s",
        child("a", "success"), child("b", "skipped"),
        child("c", "failed", error={"type": "NotFoundError", "message": "x", "retryable": False}),
    )  # fmt: skip
    first, sent = await roll_up(database, "root-s")
    assert ENTRIES in sent
    assert "UpdateOne" in sent
    assert (first["children_total"], first["children_failed"], first["children_skipped"]) == (
        3, 1, 1,
    )  # fmt: skip
    again, sent = await roll_up(database, "root-s")
    assert again == first
    assert ENTRIES not in sent  # one count of the family's entries instead
    assert "Count" in sent

    # A re-run of a child: a new entry, queued, then run. Never a stale roll-up.
    logs = database[LOGS]
    await logs.insert_one({**child("d", "queued"), "parentJobId": "root-s", "attempt": 1})
    queued, sent = await roll_up(database, "root-s")
    assert (queued["children_total"], queued["children_queued"]) == (4, 1)
    assert "UpdateOne" not in sent  # unfinished work: nothing kept
    await logs.update_one({"jobId": "d"}, {"$set": {"status": "success"}})
    done, _ = await roll_up(database, "root-s")
    assert (done["children_total"], done["children_queued"]) == (4, 0)
    kept, sent = await roll_up(database, "root-s")
    assert kept == done
    assert ENTRIES not in sent


async def test_a_family_with_running_work_is_rolled_up_every_time(
    mongo: Any, settings: Settings
) -> None:
    database = await family(mongo, settings, "root-r", child("a", "success"), child("b", "running"))
    for _ in range(2):
        summary, sent = await roll_up(database, "root-r")
        assert summary["children_running"] == 1
        assert ENTRIES in sent
        assert "UpdateOne" not in sent


async def test_an_entry_overwritten_in_place_is_seen_once_the_family_is_touched(
    mongo: Any, settings: Settings
) -> None:
    database = await family(mongo, settings, "root-t", child("a", "success"))
    await roll_up(database, "root-t")
    # As a poison message's failed entry replaces an attempt that exists (the runner's reject).
    await database[LOGS].update_one({"jobId": "a"}, {"$set": {"status": "failed"}})
    await touch_family(database[FAMILIES], "root-t", timeout=5)
    summary, sent = await roll_up(database, "root-t")
    assert summary["children_failed"] == 1
    assert ENTRIES in sent


async def test_a_settled_familys_progress_is_read_back(mongo: Any, settings: Settings) -> None:
    database = await family(mongo, settings, "root-p", child("a", "success"), child("b", "success"))
    first = Recording(database)
    progress = await first.run(queries.family_progress("root-p"))
    assert progress.counts == [("enrich_artist", "success", 2)]
    assert ENTRIES in first.sent
    second = Recording(database)
    assert await second.run(queries.family_progress("root-p")) == progress
    assert ENTRIES not in second.sent
    await database[LOGS].insert_one(
        {**child("c", "running"), "parentJobId": "root-p", "attempt": 1}
    )
    third = Recording(database)
    grown = await third.run(queries.family_progress("root-p"))
    assert ("enrich_artist", "running", 1) in grown.counts


async def test_a_snapshot_the_store_refuses_leaves_the_read_standing(
    mongo: Any, settings: Settings
) -> None:
    # As for a login that may only read: keeping a roll-up is a cache, never the read's failure.
    def plan() -> Any:
        kept = yield UpdateOne(FAMILIES, {"_id": "root-x"}, {"$notAnOperator": {"a": 1}})
        return kept

    assert await AsyncExecutor(mongo[settings.mongodb_db]).run(plan()) == [{"matched": 0}]


async def test_roll_up_and_progress_count_each_jobs_latest_attempt(
    mongo: Any, settings: Settings
) -> None:
    retry = {"type": "ProviderUnavailableError", "message": "503", "retryable": True}
    late = datetime(2030, 1, 1, tzinfo=UTC)  # finished last, but a retry followed it
    database = await family(
        mongo, settings, "root-l",
        child("a", "failed", error=retry), child("a", "success", attempt=2),
        child("b", "failed", error=retry),  # attempt 1 of 3: another is on its way
        *(child("c", "failed", error=retry, attempt=n) for n in (1, 2, 3)),  # the last one
        child("d", "success", jobType="discogs_artist", details={"outcome": "matched"}),
        child("e", "success", jobType="discogs_artist", details={"outcome": "no_match"}),
        child("f", "success", jobType="enrich_album", details={"outcome": "matched"}),
        child("g", "success", jobType="cache_image"),
        child("h", "failed", error=retry, finishedAt=late),
        child("h", "running", attempt=2, finishedAt=None),
    )  # fmt: skip
    summary, _ = await roll_up(database, "root-l")
    last = summary.pop("last_finished_at")
    assert summary == {
        "children_total": 8, "children_queued": 0, "children_running": 1,
        "children_failed": 2, "children_skipped": 0, "still_running": 1, "matched": 1,
        "no_match": 1, "ambiguous": 0, "cached": 1,
    }  # fmt: skip
    assert last is not None
    assert last.replace(tzinfo=UTC) < late
    progress = await Recording(database).run(queries.family_progress("root-l"))
    assert progress.counts == [
        ("cache_image", "success", 1), ("discogs_artist", "success", 2),
        ("enrich_album", "success", 1), ("enrich_artist", "failed", 2),
        ("enrich_artist", "running", 1), ("enrich_artist", "success", 1),
    ]  # fmt: skip
