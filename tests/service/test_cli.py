"""The `enrichment` command line against a running worker."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from service.client import EnrichmentClient
from service.config import Settings
from service.errors import BrokerUnavailableError
from service.models.views import ROLLUP_COLUMNS
from tests.helpers import enrichment, free_port


async def test_kick_roots_and_timeline(
    settings_env: dict[str, str], client: EnrichmentClient
) -> None:
    kicked = await enrichment(
        settings_env, "kick", "album", "--title", "Tidal Glass", "--artist", "Vela Nord"
    )
    assert kicked.returncode == 0, kicked.stderr
    root_id = kicked.stdout.strip()
    assert len(root_id) == 32
    await client.wait_for_root(root_id, timeout=30)

    roots = await enrichment(settings_env, "roots")
    assert roots.returncode == 0, roots.stderr
    assert root_id in roots.stdout
    assert "Tidal Glass" in roots.stdout

    timeline = await enrichment(settings_env, "timeline", root_id)
    assert timeline.returncode == 0, timeline.stderr
    lines = timeline.stdout.splitlines()
    root_line = next(i for i, line in enumerate(lines) if "enrich_album" in line)
    artist_line = next(i for i, line in enumerate(lines) if "enrich_artist" in line)
    assert root_line < artist_line
    assert "Vela Nord" in lines[artist_line]


async def test_kick_with_wait_prints_the_timeline(
    settings_env: dict[str, str], worker: Any
) -> None:
    done = await enrichment(
        settings_env, "kick", "artist", "--name", "Mira Kestrel", "--wait", "30"
    )
    assert done.returncode == 0, done.stderr
    assert "Timeline of" in done.stdout
    assert "success" in done.stdout


async def test_bad_input_is_a_clear_error(
    settings_env: dict[str, str], mongo: Any, redis: Any
) -> None:
    done = await enrichment(settings_env, "kick", "album", "--artist", "Vela Nord")
    assert done.returncode == 1
    assert "error: an album job needs an mbid or a title" in done.stdout
    unknown = await enrichment(settings_env, "timeline", "no-such-job")
    assert unknown.returncode == 1
    assert "no log entries" in unknown.stdout


async def test_unreachable_redis_is_a_clear_error(settings_env: dict[str, str], mongo: Any) -> None:
    env = {**settings_env, "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    done = await enrichment(env, "kick", "artist", "--name", "Mira Kestrel")
    assert done.returncode == 1
    assert "error: cannot reach Redis at redis://***@127.0.0.1:1/0" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


async def test_reading_needs_no_redis(
    settings_env: dict[str, str], client: EnrichmentClient
) -> None:
    root_id = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    await client.wait_for_root(root_id, timeout=30)
    # Redis stopped: nothing listens where the commands are told to find it.
    stopped = {**settings_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "COLUMNS": "300"}

    roots = await enrichment(stopped, "roots")
    assert roots.returncode == 0, roots.stdout + roots.stderr
    assert root_id in roots.stdout
    shown = " ".join(roots.stdout.split())
    for column in ROLLUP_COLUMNS:  # the dashboard's roll-up, field for field
        assert re.search(rf"{column} (\d|—)", shown), column
    timeline = await enrichment(stopped, "timeline", root_id)
    assert timeline.returncode == 0, timeline.stdout + timeline.stderr
    assert "enrich_artist" in timeline.stdout
    async with EnrichmentClient(Settings.model_validate(stopped)) as offline:
        assert [r.root.job_id for r in await offline.roots()] == [root_id]
        with pytest.raises(BrokerUnavailableError, match="cannot reach Redis"):
            await offline.kick_artist(name="Mira Kestrel")


def test_the_dashboard_command_serves_the_app_with_its_imports_done(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "dashboard.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "dashboard", "--port", str(port)],
            env={**os.environ, **settings_env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=1
                )
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
                continue
            with health:
                assert health.status == 200
            break
        # Before any page was asked for, what the pages need is loaded (Arrow for tables,
        # pandas for frames), so the first visitor does not wait for it.
        loaded = Path(f"/proc/{server.pid}/maps").read_text()
        assert "pyarrow" in loaded
        assert "pandas/_libs" in loaded
    finally:
        server.terminate()
        server.wait(30)


def test_an_exposed_dashboard_without_a_login_is_refused(settings_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "dashboard", "--port", str(free_port())],
        env={**os.environ, **settings_env, "DASHBOARD_HOST": "0.0.0.0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "DASHBOARD_HOST=0.0.0.0 is reachable from other machines" in done.stdout
