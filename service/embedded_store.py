"""The embedded store: a mongoeco wire server over SQLite, started on demand, shared by all."""

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from service.config import Settings
from service.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

STORE_START_TIMEOUT_SECONDS = 90.0  # a cold start on two busy cores takes 15 s and more


def embedded_notice(settings: Settings, logs: int) -> str | None:
    """What to tell a user whose embedded store has grown past its use, or None."""
    if settings.mongodb_url or logs <= settings.embedded_store_notice_logs:
        return None
    return (
        f"The embedded store holds {logs:,} logs. It is for the demo and the tests: it "
        "decodes every document it reads in Python and runs aggregations there (measured "
        "at 25,000 logs on two cores: the Roots page while a 10,000-job run runs 1.0 s, "
        "the run's progress 0.6 s, where MongoDB reads a few fields from an index). "
        "For real work run MongoDB "
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


async def serve_embedded_store(
    settings: Settings, on_ready: Callable[[str], Awaitable[None] | None] | None = None
) -> None:
    """Serve the MongoDB wire protocol from SQLite at `store_path` until cancelled."""
    # Imported here: only the `store` command needs the server side of mongoeco.
    from mongoeco.wire import AsyncMongoEcoProxyServer

    from service.embedded_engine import EmbeddedEngine

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = EmbeddedEngine(str(settings.store_path))
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
