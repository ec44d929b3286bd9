"""`enrichment demo --serve`: the demo, then its providers and worker kept up behind the dashboard.

The dashboard is a `streamlit run` child process given the demo's settings, so it reads the
demo's store and its Kick form sends jobs to the demo's own Redis queue, where the demo's
worker takes them. That is also why serving needs Redis: the in-process broker the demo
falls back to cannot be reached from another process.
"""

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console

from dashboard.command import check_exposure, local_url, reachable_host, streamlit_command
from service.config import Settings
from service.demo.run import demo_session, open_store, redis_reachable, run_families
from service.embedded_store import is_listening
from service.errors import BrokerUnavailableError, ConfigurationError
from service.urls import redact_url

DASHBOARD_START_SECONDS = 90.0  # a cold Streamlit start takes seconds on two busy cores
STOP_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve_demo(settings: Settings, console: Console, *, port: int) -> int:
    """Run the demo, then serve the dashboard on its store and queue until Ctrl-C or SIGTERM."""
    await _check_can_serve(settings, port)
    with _cancelled_by_signals() as received:
        try:
            await _serve(settings, console, port)
        except asyncio.CancelledError:
            if not received:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancellation was ours, and it has done its work
    console.print("Stopped the dashboard, the worker and the local providers.")
    return 0


async def _check_can_serve(settings: Settings, port: int) -> None:
    # Checked before anything starts: a refusal should not follow a minute of demo output.
    if not await redis_reachable(settings.redis_url):
        raise BrokerUnavailableError(
            f"demo --serve needs Redis, and {redact_url(settings.redis_url)} does not answer: "
            "the dashboard runs in a process of its own and its Kick form reaches the demo's "
            "worker through a Redis stream. Start Redis (`docker compose up -d redis`) and "
            "run it again, or run `uv run enrichment demo` without --serve (in-process)."
        )
    check_exposure(settings)
    if is_listening(port, reachable_host(settings)):
        raise ConfigurationError(
            f"port {port} is in use: give the dashboard another with --port (or DASHBOARD_PORT)"
        )


async def _serve(settings: Settings, console: Console, port: int) -> None:
    await open_store(settings, console)
    # The dashboard starts first: Streamlit boots while the demo's families run.
    async with (
        demo_session(settings, console, use_redis=True) as session,
        dashboard_process(session.config, port) as dashboard,
    ):
        await run_families(session, console)
        await dashboard.ready()
        console.print(
            f"\nDashboard: {dashboard.url}\n"
            "Kick an album or an artist on its Kick page and watch the family fill in: "
            "the local providers and a worker stay up for it, offline.\n"
            "Ctrl-C stops the dashboard, the worker and the local providers."
        )
        await dashboard.exited()


@dataclass(frozen=True)
class Dashboard:
    """The dashboard's process: where it answers, and where it logs."""

    process: asyncio.subprocess.Process
    url: str
    health_url: str
    log_path: Path

    async def ready(self) -> None:
        """Wait until Streamlit answers its health check (or fails to start)."""
        deadline = asyncio.get_running_loop().time() + DASHBOARD_START_SECONDS
        async with httpx.AsyncClient(timeout=1.0) as http:
            while not await self._healthy(http):
                if self.process.returncode is not None:
                    raise self._failure(f"it exited with status {self.process.returncode}")
                if asyncio.get_running_loop().time() > deadline:
                    raise self._failure(f"it did not answer in {DASHBOARD_START_SECONDS:g} s")
                await asyncio.sleep(0.2)

    async def exited(self) -> None:
        """Wait while the dashboard runs; its ending on its own is an error."""
        status = await self.process.wait()
        raise self._failure(f"it stopped with status {status}")

    async def _healthy(self, http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get(self.health_url)).status_code == httpx.codes.OK
        except httpx.TransportError:
            return False

    def _failure(self, what: str) -> ConfigurationError:
        return ConfigurationError(f"the dashboard failed: {what}; see {self.log_path}")


@asynccontextmanager
async def dashboard_process(config: Settings, port: int) -> AsyncIterator[Dashboard]:
    """`streamlit run` with the demo's settings as its environment; stopped on exit."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.data_dir / "dashboard.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *streamlit_command(config, port, preload=True),
            env=settings_environment(config),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a terminal's Ctrl-C reaches the demo alone, which stops it.
            start_new_session=True,
        )
    url = local_url(config, port)
    try:
        yield Dashboard(process, url, f"{url}/_stcore/health", log_path)
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


def settings_environment(config: Settings) -> dict[str, str]:
    """This process's environment with every setting replaced by `config`'s value."""
    environment = dict(os.environ)
    for name, field in Settings.model_fields.items():
        key = field.alias or name.upper()
        value = getattr(config, name)
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = _as_variable(value)
    return environment


def _as_variable(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, frozenset):
        return ",".join(sorted(str(item) for item in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@contextmanager
def _cancelled_by_signals() -> Iterator[list[signal.Signals]]:
    """SIGINT (Ctrl-C) and SIGTERM cancel this task, so every context unwinds in order.

    The first signal is handled; a second one acts as it would without this (Ctrl-C again
    stops at once).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[signal.Signals] = []

    def handle(number: signal.Signals) -> None:
        received.append(number)
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)
        if task is not None:
            task.cancel()

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, handle, number)
    try:
        yield received
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)
