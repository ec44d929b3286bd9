"""Adding a processor takes a payload, a details model, the processor and one registry line.

Everything else derives from the registry: the task, the typed details read back, the CLI's
and the dashboard's job-type choices, the generic card, and the start-up check that every
provider budget a processor spends has its own setting.
"""

from typing import Any

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from service import cli
from service.broker import create_broker
from service.client import EnrichmentClient
from service.config import Settings
from service.errors import ConfigurationError
from service.models import JobStatus
from service.models.base import CamelModel
from service.models.jobs import JobPayload
from service.processing import AnySpec, JobRegistry, JobRun, JobSpec
from service.providers.ratelimit import RateLimit
from service.resources import Providers
from tests.helpers import DASHBOARD_APP


# 1. The payload and details models (a real one goes in service/models/jobs.py).
class EchoJob(JobPayload):
    """Test-only: echo a word."""

    word: str


class EchoDetails(CamelModel):
    """Test-only: what the echo processor reports."""

    echoed: str | None = None
    length: int = 0


# 2. The processor (a real one goes in service/processors/).
async def echo(job: EchoJob, run: JobRun[EchoDetails], providers: Providers) -> None:
    run.entity_id = run.entity_name = job.word
    run.details.echoed, run.details.length = job.word.upper(), len(job.word)


# 3. The registry line (a real one goes in service/registry.py).
ECHO = JobSpec("test_echo", "album", EchoJob, EchoDetails, echo)


@pytest.fixture
def extra_specs() -> tuple[AnySpec, ...]:
    return (ECHO,)


async def test_a_registered_processor_runs_and_its_details_read_back_typed(
    client: EnrichmentClient,
) -> None:
    root_id = await client.kick("test_echo", EchoJob(word="tidal"))
    family = await client.wait_for_root(root_id, timeout=30)

    [entry] = family.root
    assert (entry.job_type, entry.status, entry.entity_name) == ("test_echo", "success", "tidal")
    assert isinstance(entry.details, EchoDetails)  # never `{}`, never a raw dict
    assert (entry.details.echoed, entry.details.length) == ("TIDAL", 5)
    [summary] = await client.roots(job_type="test_echo")
    assert summary.root.job_id == root_id


def test_the_cli_and_the_dashboard_offer_the_new_job_type(
    registry: JobRegistry,
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["roots", "--job-type", "test_echo"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["roots", "--help"])
    assert "test_echo" in capsys.readouterr().out

    st.cache_resource.clear()  # the dashboard reads the settings set above
    address = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")  # as `enrichment dashboard` binds it
    try:
        at = AppTest.from_file(DASHBOARD_APP, default_timeout=30)
        at.run()
    finally:
        config.set_option("server.address", address)
        st.cache_resource.clear()
    assert not at.exception, at.exception
    job_type = next(box for box in at.selectbox if box.label == "job type")
    assert "test_echo" in job_type.options
    status = next(box for box in at.selectbox if box.label == "status")
    assert set(status.options) >= set(JobStatus)


def test_a_job_type_is_registered_once() -> None:
    registry = JobRegistry([ECHO])
    with pytest.raises(ValueError, match="'test_echo' is already registered"):
        registry.register(ECHO)
    assert registry.job_types == ["test_echo"]


async def test_a_provider_budget_without_its_own_setting_stops_the_worker_at_start_up(
    settings: Settings, mongo: Any, redis: Any
) -> None:
    spotify = RateLimit("Spotify", "spotify", "spotify_rate_limit")
    spec = JobSpec("test_spotify", "artist", EchoJob, EchoDetails, echo, (spotify,))
    broker = create_broker(settings, registry=JobRegistry([spec]))
    broker.is_worker_process = True
    with pytest.raises(ConfigurationError, match="no rate limit setting 'spotify_rate_limit'"):
        await broker.startup()
    await broker.shutdown()
