"""How the dashboard is served: the `streamlit run` command line, and the check before it."""

import sys
from pathlib import Path

from service.config import Settings
from service.errors import ConfigurationError

APP = Path(__file__).resolve().parent / "app.py"


# `streamlit run`, with what the app's pages import already imported: the first visitor
# would otherwise wait for pandas, Altair, Arrow (tables), the dashboard's modules and the
# service to load (and, in a fresh environment, to compile): 20 s on two busy cores, and
# 9.1 s against 2.7 s for a first visit of a 10,000-entry family (measured). The server
# starts that much later instead, before anyone can ask for a page.
PRELOADED_STREAMLIT = """\
import logging, sys

import altair, pandas, pyarrow  # noqa: F401 - for the first page's sake
# Each cached function defined before the server runs would warn "No runtime found".
caching = logging.getLogger("streamlit.runtime.caching.cache_data_api")
caching.disabled = True
import dashboard.views  # noqa: F401
caching.disabled = False
from streamlit.web.cli import main

sys.exit(main(args=sys.argv[1:], prog_name="streamlit"))
"""


def check_exposure(settings: Settings) -> None:
    """Refuse a dashboard reachable from other machines that has no login."""
    if not settings.dashboard_exposed or settings.dashboard_password is not None:
        return
    from dashboard.gate import oidc_configured  # imports Streamlit: only when it matters

    if not oidc_configured():
        raise ConfigurationError(
            f"DASHBOARD_HOST={settings.dashboard_host} is reachable from other machines: "
            "set DASHBOARD_PASSWORD or configure OIDC login (or bind to 127.0.0.1)"
        )


def streamlit_command(settings: Settings, port: int, *, preload: bool = False) -> list[str]:
    """`streamlit run dashboard/app.py` on DASHBOARD_HOST and `port`, quiet and headless.

    `preload` imports what the first page needs before the server starts.
    """
    streamlit = ("-c", PRELOADED_STREAMLIT) if preload else ("-m", "streamlit")
    return [
        *(sys.executable, *streamlit, "run", str(APP)),
        *("--server.address", settings.dashboard_host),
        *("--server.port", str(port)),
        *("--server.headless", "true", "--browser.gatherUsageStats", "false"),
        *("--client.toolbarMode", "minimal", "--server.fileWatcherType", "none"),
        *("--client.showErrorDetails", "none"),
    ]


def reachable_host(settings: Settings) -> str:
    """The address this machine reaches the dashboard on (loopback when it listens on all)."""
    host = settings.dashboard_host
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared


def local_url(settings: Settings, port: int) -> str:
    """The dashboard's URL from this machine."""
    host = reachable_host(settings)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
