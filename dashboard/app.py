"""The Streamlit entry point: access check, then one view by navigation or deep link."""

import hmac

import streamlit as st

from dashboard import data, views

st.set_page_config(page_title="Enrichment jobs", layout="wide")


def _allowed() -> bool:
    config = data.settings()
    if config.dashboard_password is None:
        if config.dashboard_exposed:
            st.error("DASHBOARD_HOST is not loopback and DASHBOARD_PASSWORD is not set: refusing.")
            return False
        return True
    given = st.text_input("password", type="password")
    return hmac.compare_digest(given, config.dashboard_password.get_secret_value())


if _allowed():
    root = st.query_params.get("root")
    if root:
        views.deep_link_view(root)
    else:
        st.navigation(
            [
                st.Page(views.roots_view, title="Roots", url_path="roots", default=True),
                st.Page(views.kick_view, title="Kick", url_path="kick"),
                st.Page(views.search_view, title="Entity search", url_path="search"),
                st.Page(views.orphans_view, title="Orphans", url_path="orphans"),
                st.Page(views.dead_letters_view, title="Dead letters", url_path="dead-letters"),
                st.Page(views.legacy_view, title="Legacy", url_path="legacy"),
            ]
        ).run()
