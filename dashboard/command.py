"""How the dashboard is served: the `streamlit run` command line, and the check before it."""

import sys
from pathlib import Path

from service.config import Settings
from service.errors import ConfigurationError

APP = Path(__file__).resolve().parent / "app.py"


def check_exposure(settings: Settings) -> None:
    """Refuse a dashboard reachable from other machines that has no login."""
    from dashboard.gate import oidc_configured  # imports Streamlit: only when serving

    open_to_all = settings.dashboard_password is None and not oidc_configured()
    if settings.dashboard_exposed and open_to_all:
        raise ConfigurationError(
            f"DASHBOARD_HOST={settings.dashboard_host} is reachable from other machines: "
            "set DASHBOARD_PASSWORD or configure OIDC login (or bind to 127.0.0.1)"
        )


def streamlit_command(settings: Settings, port: int) -> list[str]:
    """`streamlit run dashboard/app.py` on DASHBOARD_HOST and `port`, quiet and headless."""
    return [
        *(sys.executable, "-m", "streamlit", "run", str(APP)),
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
