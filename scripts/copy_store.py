"""Copy an embedded store's data into MongoDB, for when the demo has become real work.

    uv run python -m scripts.copy_store --to "mongodb://127.0.0.1:27017/?directConnection=true"

Copies every collection of the database (`MONGODB_DB`) in batches, then ensures the
service's indexes on the target. Documents keep their `_id`, so running it again copies only
what is new (a document already there is counted, not overwritten). The source is the
embedded store (started if needed) unless `--from` names another server.
"""

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from service.config import Settings
from service.embedded_store import ensure_store
from service.models import DOCUMENT_MODELS
from service.store import ensure_indexes, make_sync_client, run_sync

BATCH = 1_000
DUPLICATE_KEY = 11000


def copy_collection(source: Collection[Any], target: Collection[Any]) -> tuple[int, int]:
    """Copy every document; return (copied, already there)."""
    copied = present = 0
    for batch in _batches(source):
        try:
            copied += len(target.insert_many(batch, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != DUPLICATE_KEY for error in errors):
                raise
            present += len(errors)
            copied += exc.details["nInserted"]
    return copied, present


def _batches(source: Collection[Any]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for document in source.find({}, sort=[("_id", 1)]):
        batch.append(document)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: list[str] | None = None) -> int:
    """Copy the database; print a line per collection."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", required=True, help="the MongoDB URI to copy into")
    parser.add_argument("--from", dest="source", help="the source URI (default: embedded store)")
    args = parser.parse_args(argv)
    settings = Settings()
    source_url = args.source or ensure_store(settings.model_copy(update={"mongodb_url": None}))
    with make_sync_client(source_url) as source, make_sync_client(args.to) as target:
        source_db, target_db = source[settings.mongodb_db], target[settings.mongodb_db]
        run_sync(target_db, ensure_indexes(DOCUMENT_MODELS))
        for name in sorted(source_db.list_collection_names()):
            copied, present = copy_collection(source_db[name], target_db[name])
            print(f"{name}: {copied} copied, {present} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
