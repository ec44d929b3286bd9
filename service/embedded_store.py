"""The embedded store: a mongoeco wire server over SQLite, started on demand, shared by all."""

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service.config import Settings
from service.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

STORE_START_TIMEOUT_SECONDS = 90.0  # a cold start on two busy cores takes 15 s and more


def embedded_notice(settings: Settings, logs: int) -> str | None:
    """What to tell a user whose embedded store has grown past its use, or None."""
    if settings.mongodb_url or logs <= settings.embedded_store_notice_logs:
        return None
    return (
        f"The embedded store holds {logs:,} logs. It is for the demo and the tests: each write "
        "there costs time proportional to the collection (measured 110 ms at 1,000 logs, "
        "1.1 s at 10,000) and every query scans it. For real work run MongoDB "
        "(`docker compose up -d mongo`), set "
        "`MONGODB_URL=mongodb://127.0.0.1:27017/?directConnection=true`, and copy what is here "
        'with `uv run python -m scripts.copy_store --to "$MONGODB_URL"`.'
    )


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_store(settings: Settings) -> str:
    """Return the store's URI, starting the embedded store in the background if needed."""
    if settings.mongodb_url:
        return settings.mongodb_url
    if not is_listening(settings.embedded_store_port):
        _spawn_embedded_store(settings)
    return settings.embedded_store_url


def store_command(settings: Settings) -> list[str]:
    """The command line that serves this embedded store."""
    return [
        sys.executable,
        *("-m", "service.cli", "store"),
        *("--port", str(settings.embedded_store_port)),
        *("--data-dir", str(settings.data_dir)),
    ]


def _spawn_embedded_store(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "store.log"
    logger.info("starting the embedded store on port %d", settings.embedded_store_port)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # A detached session (posix_spawn, setsid): the store outlives the command that
        # started it, so the demo, workers and dashboard share it and its data survives their
        # restarts. No Popen object: nothing here will ever wait for it.
        os.posix_spawn(
            sys.executable,
            store_command(settings),
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + STORE_START_TIMEOUT_SECONDS
    while not is_listening(settings.embedded_store_port):
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"the embedded store did not start on port {settings.embedded_store_port}; "
                f"see {log_path}"
            )
        time.sleep(0.1)


def indexed_id_engine(path: str) -> Any:
    """mongoeco's SQLite engine, with two of its costs that grow with the collection removed.

    mongoeco 4.11 (the newest release) makes every write cost time proportional to the
    collection (measured 110 ms at 1,000 logs, 1.1 s at 10,000). No setting changes either
    cause, hence this subclass; `tests/service/test_embedded_store.py` fails if a release
    renames what it touches.
    - Each insert and upsert looks for a duplicate `_id` by decoding every document
      (`scan_payload_id=True`). The scan is for numeric ids, where 1, 1.0 and Int64(1) are
      one id under different storage keys; an ObjectId or a string has one storage key, which
      the engine's own keyed lookup checks exactly. Numbers are still scanned for.
    - Its table of multikey index entries (`entitySearch`) has no index by document, so
      replacing one document's entries scans every entry of every document.
    """
    from mongoeco.core.identity import id_contains_numeric_value
    from mongoeco.engines.sqlite import SQLiteEngine

    class IndexedIdEngine(SQLiteEngine):
        def _connect_sync(self) -> None:
            super()._connect_sync()
            if self._connection is None:  # pragma: no cover - connected just above
                return
            self._connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_multikey_entries_storage"
                " ON multikey_entries (collection_id, storage_key, index_name)"
            )

        def _validate_document_against_unique_indexes(
            self, db_name: str, coll_name: str, document: Any, **options: Any
        ) -> None:
            if options.get("scan_payload_id"):
                options["scan_payload_id"] = id_contains_numeric_value(document.get("_id"))
            super()._validate_document_against_unique_indexes(
                db_name, coll_name, document, **options
            )

    return IndexedIdEngine(path)


async def serve_embedded_store(
    settings: Settings, on_ready: Callable[[str], Awaitable[None] | None] | None = None
) -> None:
    """Serve the MongoDB wire protocol from SQLite at `store_path` until cancelled."""
    # Imported here: only the `store` command needs the server side of mongoeco.
    from mongoeco.wire import AsyncMongoEcoProxyServer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = indexed_id_engine(str(settings.store_path))
    server = AsyncMongoEcoProxyServer(
        engine=engine, host="127.0.0.1", port=settings.embedded_store_port
    )
    async with server:
        settings.store_pid_path.write_text(str(os.getpid()))
        try:
            if on_ready is not None:
                ready = on_ready(settings.embedded_store_url)
                if ready is not None:
                    await ready
            await asyncio.Event().wait()
        finally:
            settings.store_pid_path.unlink(missing_ok=True)
