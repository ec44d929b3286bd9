"""Seed N legacy logs in the embedded store and time the migration over them.

    uv run python -m scripts.bench_migration --count 10000 --batch-size 500

Prints documents/second and the store round trips the migration used (a PyMongo command
listener counts them). Asserts nothing.
"""

import argparse
import os
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from scripts.commands import CommandCounter
from scripts.seed_legacy_logs import legacy_documents
from service.config import Settings
from service.embedded_store import ensure_store
from service.migration import LegacyMigration
from service.store import LOGS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(count: int, batch_size: int) -> None:
    """Seed a throw-away database, migrate it, print the figures, drop it."""
    trips = CommandCounter()
    settings = Settings()
    if settings.mongodb_url is None:
        # A private embedded store: the benchmark neither waits on nor fills the user's one.
        private = Path(tempfile.mkdtemp(prefix="bench-migration-"))
        settings = settings.model_copy(
            update={"data_dir": private, "embedded_store_port": _free_port()}
        )
    database_name = f"bench_migration_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]] = MongoClient(
        ensure_store(settings), tz_aware=True, event_listeners=[trips]
    )
    logs = client[database_name][LOGS]
    try:
        started = time.perf_counter()
        documents = legacy_documents(count)
        for start in range(0, count, 1000):
            logs.insert_many(documents[start : start + 1000])
            print(f"  seeded {start + 1000} in {time.perf_counter() - started:.0f}s", flush=True)
        print(f"seeded {count} legacy logs in {time.perf_counter() - started:.1f}s")
        before, started = trips.count, time.perf_counter()
        report = LegacyMigration(logs, batch_size=batch_size).run()
        elapsed = time.perf_counter() - started
        rate = report.seen / elapsed
        print(f"migrated {report.seen} documents in {elapsed:.1f}s: {rate:.0f} docs/s")
        print(f"store round trips: {trips.count - before} (batch size {batch_size})")
        print(f"changes: {dict(report.changed)}")
        steps = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in report.seconds.items())
        print(f"by step: {steps}")
    finally:
        client.drop_database(database_name)
        client.close()
        if settings.store_pid_path.exists():
            os.kill(int(settings.store_pid_path.read_text()), signal.SIGTERM)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    main(args.count, args.batch_size)
