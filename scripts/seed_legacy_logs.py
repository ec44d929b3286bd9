"""Write realistic pre-lineage `enrichment_logs` documents (no isRootJob, no parentJobId).

    uv run python scripts/seed_legacy_logs.py --count 1000 [--mongodb-url URL]

Shapes vary as old deployments' did: createdAt, or a numeric timestamp, or nothing at all;
some child logs already carry a parentJobId (lineage half deployed), some name themselves as
their parent, and a few hold unknown job types or statuses.
"""

import argparse
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from service.config import Settings
from service.embedded_store import ensure_store
from service.store import LOGS

JOB_TYPES = ["enrich_album", "enrich_artist", "spotify_sync"]
STATUSES = ["success", "failed", "partial"]


def legacy_documents(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` pre-lineage documents: families of a parent and its referencing children."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    docs: list[dict[str, Any]] = []
    while len(docs) < count:
        parent = uuid.uuid4().hex
        at = start + timedelta(minutes=len(docs))
        docs.append(_doc(rng, parent, at))
        for _ in range(rng.randint(0, 3)):
            child = _doc(rng, uuid.uuid4().hex, at + timedelta(seconds=5))
            child["parentJobId"] = parent
            docs.append(child)
        if rng.random() < 0.05:
            docs[-1]["parentJobId"] = docs[-1]["jobId"]  # named itself as its root
    return docs[:count]


def _doc(rng: random.Random, job_id: str, at: datetime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "jobId": job_id,
        "jobType": rng.choice(JOB_TYPES),
        "status": rng.choice(STATUSES),
        "entityName": f"entity {job_id[:6]}",
    }
    shape = rng.random()
    if shape < 0.5:
        doc["createdAt"] = at
    elif shape < 0.8:
        doc["timestamp"] = int(at.timestamp())
    return doc


def main() -> None:
    """Seed the configured store (or --mongodb-url)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--mongodb-url", help="instead of MONGODB_URL / the embedded store")
    args = parser.parse_args()
    settings = Settings()
    url = args.mongodb_url or ensure_store(settings)
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    with client:
        logs = client[settings.mongodb_db][LOGS]
        documents = legacy_documents(args.count)
        for start in range(0, len(documents), 1000):
            logs.insert_many(documents[start : start + 1000])
    print(f"wrote {len(documents)} legacy logs to {settings.mongodb_db}.enrichment_logs")


if __name__ == "__main__":
    main()
