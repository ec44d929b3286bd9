"""Helpers the tests share: ports, store processes, the test secrets, settings variants."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from service.config import Settings
from service.embedded_store import is_listening, store_command
from tests.fake_cloudflare import ACCOUNT, ACCOUNT_HASH

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The local MusicBrainz declares this rate; the tests' limiter stays just under it.
TEST_SERVER_RATE = 50
# Secrets the tests configure: nothing the service writes may ever contain them.
DISCOGS_TEST_TOKEN = "discogs-test-token-6f1d2c"
CLOUDFLARE_TEST_TOKEN = "cloudflare-test-token-93ab7e"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_store_process(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`enrichment store` in a child process on `port`, its SQLite file in `data_dir`."""
    with (data_dir / "store.log").open("ab") as log:
        process = subprocess.Popen(
            store_command(_store_settings(data_dir, port)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _until_serving(process, data_dir, port)
    return process


# `enrichment store` with its modules already imported, serving once told to (a line on
# stdin). A cold start takes seconds of CPU (15 s and more on two busy cores): a test that
# restarts the store uses a standby, so the outage lasts as long as the test says.
STANDBY = """\
import os, sys
import mongoeco.engines.sqlite, mongoeco.wire  # what serving imports
from service import cli
print("ready", flush=True)
os.dup2(2, 1)  # from here on, the command's output goes to the store's log
sys.stdin.readline()
sys.exit(cli.main(sys.argv[1:]))
"""


def standby_store_process(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`enrichment store` for `port`, imported but not serving yet: see `serve_standby`."""
    command = store_command(_store_settings(data_dir, port))
    assert command[1:3] == ["-m", "service.cli"], command
    with (data_dir / "store.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", STANDBY, *command[3:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    ready = process.stdout.readline()
    process.stdout.close()
    assert ready == b"ready\n", (data_dir / "store.log").read_text()
    return process


def serve_standby(process: subprocess.Popen[bytes], data_dir: Path, port: int) -> None:
    """Let a standby store serve, and wait until it does."""
    assert process.stdin is not None
    process.stdin.write(b"serve\n")
    process.stdin.close()
    _until_serving(process, data_dir, port)


def _store_settings(data_dir: Path, port: int) -> Settings:
    return Settings.model_validate({"ENRICHMENT_DATA_DIR": data_dir, "EMBEDDED_STORE_PORT": port})


# A cold start imports for seconds of CPU: 12 s and more on two cores under load.
STORE_START_SECONDS = 120


def _until_serving(process: subprocess.Popen[bytes], data_dir: Path, port: int) -> None:
    deadline = time.monotonic() + STORE_START_SECONDS
    while not is_listening(port):
        assert process.poll() is None, (data_dir / "store.log").read_text()
        if time.monotonic() >= deadline:
            process.kill()  # never leave a half-started store behind
            raise AssertionError("embedded store did not start")
        time.sleep(0.05)


def stop_store_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a store started by `start_store_process` or `standby_store_process`."""
    process.terminate()
    process.wait(10)
    if process.stdin is not None:
        process.stdin.close()


def cloudflare_env(settings_env: dict[str, str], base_url: str) -> dict[str, str]:
    """Test settings with image caching sent to the fake Cloudflare at `base_url`."""
    return {
        **settings_env,
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "CLOUDFLARE_API_TOKEN": CLOUDFLARE_TEST_TOKEN,
        "CLOUDFLARE_ACCOUNT_HASH": ACCOUNT_HASH,
        "CLOUDFLARE_API_BASE_URL": base_url,
    }


# The dashboard's entry point, for AppTest and `streamlit run`.
DASHBOARD_APP = str(Path(__file__).parents[1] / "dashboard" / "app.py")


def start_worker(
    env: dict[str, str], log_path: Path, processes: int, *, max_async_tasks: int = 20
) -> subprocess.Popen[bytes]:
    """`enrichment worker` in its own process group, logging to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "--log-level",
                "INFO",
                "worker",
                "--workers",
                str(processes),
                "--max-async-tasks",
                str(max_async_tasks),
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group and wait for it."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


async def wait_until_listening(log_path: Path, processes: int) -> None:
    # A blocked XREADGROUP registers no consumer in Redis: read the workers' own log instead.
    text = ""
    for _ in range(1200):  # two minutes: workers import for seconds on two busy cores
        text = await asyncio.to_thread(log_path.read_text)
        if text.count("Listening started") >= processes:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"workers did not start listening:\n{text}")


async def enrichment(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `enrichment` command with the test's environment."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def until[T](read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], seconds: float) -> T:
    """Poll `read` until `ok` holds of its value."""
    deadline = time.monotonic() + seconds
    while True:
        value = await read()
        if ok(value) or time.monotonic() > deadline:
            assert ok(value), value
            return value
        await asyncio.sleep(0.1)
