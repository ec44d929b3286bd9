"""`enrichment prune`: whole old families go; working ones, recent ones and orphans stay."""

from datetime import UTC, datetime, timedelta
from typing import Any

from service.config import Settings
from service.store import CLAIMS, FAMILIES, LOGS
from tests.helpers import enrichment

OLD = datetime.now(UTC) - timedelta(days=100)
RECENT = datetime.now(UTC) - timedelta(days=1)


def entry(job_id: str, root: str | None, status: str, at: datetime) -> dict[str, Any]:
    return {"jobId": job_id, "attempt": 1, "isRootJob": root is None, "parentJobId": root,
            "status": status, "startedAt": at, "finishedAt": at}  # fmt: skip


async def test_prune_deletes_whole_old_families_only(
    settings_env: dict[str, str], mongo: Any, settings: Settings
) -> None:
    database = mongo[settings.mongodb_db]
    await database[LOGS].insert_many([
        # Old and finished: goes, with its claims.
        entry("old", None, "success", OLD), entry("old-1", "old", "success", OLD),
        entry("old-2", "old", "failed", OLD),
        # Old, but a job of it still waits: stays.
        entry("waiting", None, "success", OLD), entry("waiting-1", "waiting", "queued", OLD),
        # An old root whose family was busy yesterday: stays.
        entry("busy", None, "success", OLD), entry("busy-1", "busy", "success", RECENT),
        # Soft orphans of a root deleted by hand: stay visible.
        entry("orphan-1", "deleted-by-hand", "success", OLD),
    ])  # fmt: skip
    await database[CLAIMS].insert_many([
        {"_id": "old/enrich_artist/artist:a", "jobId": "old-1"},
        {"_id": "busy/enrich_artist/artist:a", "jobId": "busy-1"},
        {"_id": "older/enrich_artist/artist:a", "jobId": "x"},  # another root, same prefix
    ])  # fmt: skip
    families = ["old", "waiting", "busy", "deleted-by-hand"]
    await database[FAMILIES].insert_many([{"_id": root} for root in families])

    dry = await enrichment(settings_env, "prune", "--older-than", "90d", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would delete 1 families" in dry.stdout
    assert "3 log entries, 1 claims" in dry.stdout
    assert "kept 1 old families with queued or running work" in dry.stdout
    assert await database[LOGS].count_documents({}) == 8

    done = await enrichment(settings_env, "prune", "--older-than", "90d")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deleted 1 families" in done.stdout
    left = {doc["jobId"] async for doc in database[LOGS].find({})}
    assert left == {"waiting", "waiting-1", "busy", "busy-1", "orphan-1"}
    claims = {doc["_id"] async for doc in database[CLAIMS].find({})}
    assert claims == {"busy/enrich_artist/artist:a", "older/enrich_artist/artist:a"}
    # The family's record goes with it; the orphans' record stays, so they stay visible.
    assert {doc["_id"] async for doc in database[FAMILIES].find({})} == set(families) - {"old"}


async def test_prune_refuses_a_malformed_age(settings_env: dict[str, str], mongo: Any) -> None:
    done = await enrichment(settings_env, "prune", "--older-than", "ninety days")
    assert done.returncode == 2
    assert "give a whole number and d, h or m" in done.stderr
