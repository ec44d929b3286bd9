"""The Streamlit entry point: access check, then one view by navigation or deep link."""

import streamlit as st

from dashboard import data, gate, views

st.set_page_config(page_title="Enrichment jobs", layout="wide")
# Visitors never see tracebacks, whoever started the server and with whatever flags.
st.set_option("client.showErrorDetails", "none")

if gate.admitted(data.settings()):
    notice = data.store_notice()
    if notice is not None:
        st.warning(notice)
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
