"""The dashboard's only door to the store: the service's read plans, run with sync PyMongo.

Every query is defined once in `service.queries`; this module runs it, caches the result
briefly and hands pages their DataFrames (built by `dashboard.frames`).
"""

import pandas as pd
import streamlit as st

from dashboard import frames
from service import queries
from service.config import Settings
from service.embedded_store import embedded_notice
from service.executors import SyncExecutor
from service.models import LogEntry
from service.models.views import FamilyProgress
from service.queries import RootFilters
from service.redaction import protect
from service.store import LOGS, connect_sync_database

PAGE_SIZE = 50
# A big family's cards, a page at a time: each card is dozens of elements for the browser to
# lay out, and 50 of them took 5.1 s to draw in Chromium where 20 take 2.6 s (two cores).
FAMILY_PAGE_SIZE = 20
HIGHLIGHTS = 5  # failures and slowest jobs a big family shows first, each
QUERY_TTL_SECONDS = 3
NOTICE_TTL_SECONDS = 60


@st.cache_resource
def settings() -> Settings:
    """The dashboard's settings (read once per server process)."""
    config = Settings()
    protect(*config.secret_values())
    return config


def _close(reader: SyncExecutor) -> None:
    reader.database.client.close()


@st.cache_resource(on_release=_close)
def reader() -> SyncExecutor:
    """Runs read plans on the store, starting the embedded store when nothing else is set."""
    return SyncExecutor(connect_sync_database(settings()))


@st.cache_data(ttl=NOTICE_TTL_SECONDS, show_spinner=False)
def store_notice() -> str | None:
    """A notice when the embedded store has outgrown the demo (counted once a minute)."""
    config = settings()
    if config.mongodb_url:
        return None
    # From the collection's metadata: a count must not scan what it warns about.
    return embedded_notice(config, reader().database[LOGS].estimated_document_count())


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def roots_page(filters: RootFilters, page: int) -> pd.DataFrame:
    """One page of roots with their family roll-ups: one query, one aggregation."""
    plan = queries.roots_page(
        filters,
        limit=PAGE_SIZE,
        skip=page * PAGE_SIZE,
        max_attempts=settings().job_max_attempts,
    )
    return frames.roots_frame(reader().run(plan))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def family(root_id: str) -> list[LogEntry]:
    """The root's attempts, then every descendant's by `startedAt` (two indexed queries)."""
    return reader().run(queries.timeline(root_id)).entries


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def family_progress(root_id: str) -> FamilyProgress:
    """A family in numbers (one aggregation): how big it is decides how it is shown."""
    return reader().run(queries.family_progress(root_id))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def family_entries(root_id: str, view: queries.FamilyView, page: int) -> list[LogEntry]:
    """One page of a big family's entries, filtered and ordered as asked."""
    skip = page * FAMILY_PAGE_SIZE
    plan = queries.family_entries(root_id, view, limit=FAMILY_PAGE_SIZE, skip=skip)
    return reader().run(plan)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def reruns(job_ids: tuple[str, ...]) -> dict[str, list[str]]:
    """The jobs that re-run each of these (one indexed query per 500 ids)."""
    return reader().run(queries.reruns(list(job_ids)))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def family_highlights(root_id: str) -> pd.DataFrame:
    """A big family's latest failures, then its slowest entries: what to look at first."""
    failed = queries.FamilyView(status="failed", order="newest")
    slowest = queries.FamilyView(order="slowest")
    entries = reader().run(queries.family_entries(root_id, failed, limit=HIGHLIGHTS))
    entries += reader().run(queries.family_entries(root_id, slowest, limit=HIGHLIGHTS))
    return frames.highlights_frame(entries)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def entity_roots(text: str) -> pd.DataFrame:
    """Roots whose family touched an entity, found by name or id (literal text)."""
    return frames.entity_frame(reader().run(queries.entity_roots(text)))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def orphans() -> pd.DataFrame:
    """Entries whose root has no log (deleted): grouped by the missing root's id."""
    return frames.orphans_frame(reader().run(queries.orphans()))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def legacy(page: int) -> pd.DataFrame:
    """Entries without lineage (written before it existed, or tagged legacy), newest first."""
    plan = queries.legacy_logs(limit=PAGE_SIZE, skip=page * PAGE_SIZE)
    return frames.legacy_frame(reader().run(plan))


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def dead_letters(page: int) -> pd.DataFrame:
    """Stream entries that could not be jobs, newest first."""
    plan = queries.dead_letters(limit=PAGE_SIZE, skip=page * PAGE_SIZE)
    return frames.dead_letters_frame(reader().run(plan))
