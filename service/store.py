"""The document store: MongoDB when `MONGODB_URL` is set, else the embedded mongoeco server."""

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from service.config import Settings
from service.errors import StoreUnavailableError
from service.models import DOCUMENT_MODELS

logger = logging.getLogger(__name__)

STORE_START_TIMEOUT_SECONDS = 30.0
# The options that make two indexes of one name different indexes.
INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")
INDEX_NOT_FOUND = 27  # the server error code
# The embedded store refuses an `$in` of about 500 values ("expression tree is too large"):
# longer lists go in chunks.
IN_LIMIT = 200


def chunks(values: list[Any], size: int = IN_LIMIT) -> Iterator[list[Any]]:
    """`values` in lists of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


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


async def serve_embedded_store(
    settings: Settings, on_ready: Callable[[str], Awaitable[None] | None] | None = None
) -> None:
    """Serve the MongoDB wire protocol from SQLite at `store_path` until cancelled."""
    # Imported here: only the `store` command needs the server side of mongoeco.
    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = SQLiteEngine(str(settings.store_path))
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


def make_mongo_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    """A PyMongo async client that reads timestamps back as UTC-aware datetimes."""
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000)


async def connect_store(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """Connect to the store, bind the Beanie models to it and ensure their indexes."""
    url = await asyncio.to_thread(ensure_store, settings)
    client = make_mongo_client(url)
    try:
        await drop_stale_indexes(client[settings.mongodb_db])
        await init_beanie(database=client[settings.mongodb_db], document_models=DOCUMENT_MODELS)
    except PyMongoError as exc:
        await client.close()
        raise StoreUnavailableError(f"cannot reach the document store: {exc}") from exc
    return client


def stale_indexes(
    existing: Mapping[str, Mapping[str, Any]], wanted: Sequence[IndexModel]
) -> list[str]:
    """Names in `existing` (`index_information()`) that `wanted` now defines differently.

    An index keeps its name when a release changes its options, and the server refuses to
    create it again over the old definition: such an index has to be dropped first.
    """
    stale = []
    for model in wanted:
        spec = model.document
        current = existing.get(spec["name"])
        if current is None:
            continue
        same_key = [(field, direction) for field, direction in current["key"]] == list(
            spec["key"].items()
        )
        same_options = _options(current) == _options(spec)
        if not (same_key and same_options):
            stale.append(spec["name"])
    return stale


def _options(index: Mapping[str, Any]) -> dict[str, Any]:
    # Servers differ in what they report (mongoeco says `unique: False` where MongoDB says
    # nothing): an option that is absent and one that is false are the same.
    # `is`, not `==`: `expireAfterSeconds: 0` is a real option, and 0 == False.
    return {
        option: value
        for option in INDEX_OPTIONS
        if (value := index.get(option)) is not None and value is not False
    }


async def drop_stale_indexes(database: AsyncDatabase[dict[str, Any]]) -> None:
    """Drop every model index whose definition changed, so Beanie builds it anew."""
    for model in DOCUMENT_MODELS:
        collection = database[model.Settings.name]
        existing = await collection.index_information()
        for name in stale_indexes(existing, model.Settings.indexes):
            logger.warning("rebuilding index %s.%s: its definition changed", collection.name, name)
            try:
                await collection.drop_index(name)
            except OperationFailure as exc:
                # Several workers start at once: another one may have dropped it first.
                if exc.code != INDEX_NOT_FOUND:
                    raise
