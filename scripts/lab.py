"""What the scripts that drive real worker processes share: ports, processes, their logs.

Every process here is started by the script and stopped by it, by its own id (a worker by
its process group): nothing else on the machine is touched.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.config import Settings
from service.embedded_store import store_command


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30) -> None:
    """Until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A private redis-server on `port` with AOF, fsync every second (as docker-compose runs it)."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return process


def start_store(directory: Path, port: int, seconds: float = 30) -> subprocess.Popen[bytes]:
    """`enrichment store` on `port`, its SQLite file in `directory`."""
    settings = Settings.model_validate(
        {"ENRICHMENT_DATA_DIR": directory, "EMBEDDED_STORE_PORT": port}
    )
    process = subprocess.Popen(
        store_command(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, seconds)
    except RuntimeError:
        stop(process)
        raise
    return process


def start_worker(
    env: dict[str, str], log_path: Path, processes: int, max_async_tasks: int = 20
) -> subprocess.Popen[bytes]:
    """`enrichment worker` (`processes` worker processes) in its own process group."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--log-level", "INFO", "worker",
             "--workers", str(processes), "--max-async-tasks", str(max_async_tasks)],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_listening(log_path: Path, processes: int = 1, seconds: float = 60) -> None:
    """Until `processes` worker processes logging to `log_path` say they listen."""
    # A blocked XREADGROUP registers no consumer in Redis: read the workers' own log instead.
    deadline = time.monotonic() + seconds
    while log_path.read_text().count("Listening started") < processes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers logging to {log_path.name} did not start")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    """SIGTERM a process started here (a worker: its whole group) and wait for it."""
    if process.poll() is not None:
        return
    if os.getpgid(process.pid) == process.pid:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.terminate()
    process.wait(seconds)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker's whole process group."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
