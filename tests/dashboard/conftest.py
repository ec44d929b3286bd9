"""Dashboard fixtures: the app reads the test's settings; two real families seeded."""

from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit import config

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS


@pytest.fixture
def dashboard_env(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app reads its settings from the environment: give it the test's."""
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    # AppTest runs no server: say it listens on loopback, as `enrichment dashboard` does.
    address = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    config.set_option("server.address", address)
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
async def seeded(client: EnrichmentClient, dashboard_env: None) -> dict[str, str]:
    """Two real families: one that succeeds, one with failures."""
    roots = {
        "Northern Drift": await client.kick_album(title="Northern Drift", artist="Vela Nord"),
        "Copper Wires": await client.kick_album(mbid=ALBUMS["Copper Wires"].mbid),
    }
    for root_id in roots.values():
        await client.wait_for_root(root_id, timeout=60)
    return roots
