"""A library-size store for benchmarks: many ordinary families and one whole-library run.

The embedded store's wire server takes an insert one document at a time, so a benchmark
seeds its own, fresh store in-process, on mongoeco's bulk path: it serves the empty store
once to build the service's indexes (as `connect_store` does), stops it, inserts, and
serves the result. On MongoDB (`MONGODB_URL`) it inserts in batches over the driver.
"""

import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scripts.bench_family_queries import log_document, seed_documents
from service.config import Settings
from service.embedded_engine import EmbeddedEngine
from service.embedded_store import STORE_START_TIMEOUT_SECONDS, is_listening, store_command
from service.errors import StoreUnavailableError
from service.executors import Record
from service.models import DOCUMENT_MODELS
from service.models.logs import search_keys
from service.store import FAMILIES, LOGS, ensure_indexes, make_sync_client, run_sync

BATCH = 2_500
LIBRARY_START = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Library:
    """What was seeded: the ordinary roots, the library run's root, how long each step took."""

    roots: list[str]
    library_root: str
    logs: int
    seconds: dict[str, float] = field(default_factory=dict)


def library_documents(root_id: str, albums: int, seed: int = 12) -> list[Record]:
    """A whole-library run: its root and one album enrichment per row, as a worker logs them."""
    rng = random.Random(seed)
    documents = [log_document(root_id, None, "enrich_library", LIBRARY_START)]
    for index in range(albums):
        at = LIBRARY_START + timedelta(seconds=index * 1.1)
        entry = log_document(uuid.uuid4().hex, root_id, "enrich_album", at)
        entry["entityName"] = f"Album {index:05} by Artist {index % 2_000:04}"
        entry["entitySearch"] = search_keys(entry["entityName"])
        entry["durationMs"] = rng.randint(300, 4_000)
        roll = rng.random()
        if roll < 0.03:
            entry["status"] = "failed"
            entry["error"] = {"type": "NotFoundError", "message": "no release group matches",
                              "retryable": False}  # fmt: skip
        elif roll < 0.05:
            entry["status"] = "skipped"
        documents.append(entry)
    return documents


def seed(database: Any, roots: int, children: int, albums: int) -> Library:
    """Insert the ordinary families and the library run, and every family's record."""
    documents, root_ids = seed_documents(roots, children)
    library_root = uuid.uuid4().hex
    documents += library_documents(library_root, albums)
    started = time.perf_counter()
    for start in range(0, len(documents), BATCH):
        database[LOGS].insert_many(documents[start : start + BATCH])
    records = [{"_id": root, "since": LIBRARY_START} for root in [*root_ids, library_root]]
    database[FAMILIES].insert_many(records)
    library = Library(root_ids, library_root, len(documents))
    library.seconds["insert"] = time.perf_counter() - started
    return library


@contextmanager
def library_store(
    settings: Settings, roots: int, children: int, albums: int, listeners: list[Any]
) -> Iterator[tuple[Any, Library]]:
    """A seeded, indexed store for `settings` (a fresh embedded one unless MONGODB_URL)."""
    if settings.mongodb_url:
        with make_sync_client(settings.mongodb_url, event_listeners=listeners) as client:
            database = client[settings.mongodb_db]
            run_sync(database, ensure_indexes(DOCUMENT_MODELS))
            try:
                yield database, seed(database, roots, children, albums)
            finally:
                client.drop_database(settings.mongodb_db)
        return
    with _serving(settings, []) as database:  # indexes first: an empty store builds them at once
        started = time.perf_counter()
        run_sync(database, ensure_indexes(DOCUMENT_MODELS))
        indexes = time.perf_counter() - started
    library = _seed_in_process(settings, roots, children, albums)
    library.seconds["indexes"] = indexes
    with _serving(settings, listeners) as database:
        yield database, library


@contextmanager
def _serving(settings: Settings, listeners: list[Any]) -> Iterator[Any]:
    """The embedded store of `settings`, served by its own process while in use."""
    process = subprocess.Popen(store_command(settings), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STORE_START_TIMEOUT_SECONDS
        while not is_listening(settings.embedded_store_port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"the benchmark's store did not start on {settings.embedded_store_port}"
                )
            time.sleep(0.2)
        with make_sync_client(settings.embedded_store_url, event_listeners=listeners) as client:
            yield client[settings.mongodb_db]
    finally:
        process.terminate()
        process.wait(30)


def _seed_in_process(settings: Settings, roots: int, children: int, albums: int) -> Library:
    from mongoeco import MongoClient  # the benchmark's own engine, before any server

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    client = MongoClient(engine=EmbeddedEngine(str(settings.store_path)))
    try:
        return seed(client[settings.mongodb_db], roots, children, albums)
    finally:
        client.close()
