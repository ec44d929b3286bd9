"""Who may see the dashboard: loopback viewers, or anyone past the password or OIDC login.

The decision uses the address Streamlit really listens on (`server.address`), not only
DASHBOARD_HOST: `streamlit run dashboard/app.py` without `--server.address` listens on every
interface, and must not serve an open dashboard there.
"""

import hmac
import ipaddress
import logging
import time

import streamlit as st

from service.config import Settings

logger = logging.getLogger(__name__)

# After the n-th failed password, the next answer waits 2**(n-1) s, up to this.
MAX_DELAY_SECONDS = 30.0
_FAILURES = "_gate_failures"


def listens_on_loopback_only() -> bool:
    """Whether Streamlit's server is bound to a loopback address (unset means every one)."""
    address = st.get_option("server.address")
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(address).strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def oidc_configured() -> bool:
    """Whether Streamlit's built-in OIDC login (`[auth]` in secrets.toml) is set up."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def admitted(config: Settings) -> bool:
    """Whether this session may see the pages; draws the login or the refusal otherwise."""
    exposed = config.dashboard_exposed or not listens_on_loopback_only()
    if oidc_configured():
        return _oidc_login(config)
    if config.dashboard_password is not None:
        return _password(config.dashboard_password.get_secret_value())
    if exposed:
        st.error(
            "This dashboard is reachable from other machines and has no login: refusing. "
            "Set DASHBOARD_PASSWORD (or configure OIDC login), or bind it to 127.0.0.1."
        )
        return False
    return True


def _oidc_login(config: Settings) -> bool:
    if not st.user.get("is_logged_in"):
        st.button("Log in", on_click=st.login)
        return False
    email = st.user.get("email")
    if config.dashboard_admits(str(email) if email else None):
        return True
    # The identity provider vouches for who this is, not for whether they may look.
    logger.warning("dashboard: a signed-in account not on DASHBOARD_ALLOWED_USERS was refused")
    st.error("This account may not use this dashboard (DASHBOARD_ALLOWED_USERS).")
    st.button("Log out", on_click=st.logout)
    return False


def _password(expected: str) -> bool:
    given = st.text_input("password", type="password")
    if not given:
        return False
    # Bytes, so any text a visitor types compares (str compare_digest refuses non-ASCII).
    if hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        st.session_state[_FAILURES] = 0
        return True
    failures = int(st.session_state.get(_FAILURES, 0)) + 1
    st.session_state[_FAILURES] = failures
    # Never the typed value: it may be a colleague's real password, one key off.
    logger.warning("dashboard: wrong password (attempt %d in this session)", failures)
    # Each wrong guess costs more time than the last: guessing stays slow per session.
    time.sleep(min(2.0 ** (failures - 1), MAX_DELAY_SECONDS))
    st.error("Wrong password.")
    return False
