"""Log documents as a hostile provider, user or document could leave them (dashboard tests)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from service.config import Settings
from service.store import LOGS

LINK = "[Re-login here](https://evil.example/login)"
TRACKER = "![t](https://tracker.example/p.gif)"
HOSTILE = f"{LINK} {TRACKER} :red[alarm] <img src=x onerror=alert(1)> $x^2$"


async def seed_family(
    mongo: Any, settings: Settings, root_id: str, *children: dict[str, Any]
) -> None:
    """A root and its children as a hostile provider or document could leave them."""
    start = datetime.now(UTC) - timedelta(seconds=30)
    root = {"jobId": root_id, "attempt": 1, "jobType": "enrich_album", "status": "success",
            "isRootJob": True, "parentJobId": None, "entityName": HOSTILE,
            "startedAt": start, "finishedAt": start + timedelta(seconds=1), "durationMs": 1000,
            "spawnedJobIds": [child["jobId"] for child in children]}  # fmt: skip
    for offset, child in enumerate(children, start=2):
        child.setdefault("attempt", 1)
        child.setdefault("isRootJob", False)
        child.setdefault("parentJobId", root_id)
        child.setdefault("startedAt", start + timedelta(seconds=offset))
        child.setdefault("finishedAt", start + timedelta(seconds=offset + 1))
    await mongo[settings.mongodb_db][LOGS].insert_many([root, *children])


def cache_entry(job_id: str, **details: Any) -> dict[str, Any]:
    return {"jobId": job_id, "jobType": "cache_image", "status": "success",
            "entityName": "photo", "details": {"cacheLocation": "local", **details}}  # fmt: skip
