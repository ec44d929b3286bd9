"""Page code: lays out widgets; every query goes through `dashboard.data`."""

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.cards import CardContext, entry_card, pending_card
from dashboard.charts import waterfall
from dashboard.frames import counts_frame
from dashboard.paging import IN_ORDER, in_pages, pager, table_in_pages
from dashboard.safe import plain
from service import queries
from service.client import EnrichmentClient
from service.errors import EnrichmentError
from service.models import JobStatus, LogEntry
from service.models.views import FamilyProgress, PendingJob
from service.queries import RootFilters, latest_attempts, pending_jobs
from service.registry import JOBS

REFRESH_SECONDS = 3
# Up to this many jobs a family is drawn whole; past it, summarised and paged.
WHOLE_FAMILY_LIMIT = 200
RERUN_NOTICE = "rerun-notice"
KICKED = "kicked-root"
ORDER_LABELS = {"start": "in start order", "slowest": "slowest first", "newest": "newest first"}


def roots_view() -> None:
    """Root jobs, newest first, filterable and paged; each expands into its family."""
    st.title("Enrichment jobs")
    filters = _root_filters()
    page = int(st.session_state.get("roots_page", 0))
    frame = data.roots_page(filters, page)
    st.dataframe(frame, hide_index=True, width="stretch", key="roots_table")
    pager("roots_page", page, len(frame), "roots")
    for row in frame.to_dict("records"):
        title = plain(
            f"{row['job type']} · {row['entity']} · {row['status']} · {row['children']} children"
        )
        key = f"family-{row['job id']}"
        # Only an opened expander queries its family: the page itself costs one query and one
        # aggregation, however many roots it lists.
        with st.expander(title, key=key, on_change="rerun"):
            if st.session_state.get(key):
                family_view(str(row["job id"]))


def _root_filters() -> RootFilters:
    cols = st.columns(4)
    statuses = [None, *(str(status) for status in JobStatus)]
    status = cols[0].selectbox("status", statuses, format_func=lambda s: s or "any")
    job_types = [None, *JOBS.job_types]
    job_type = cols[1].selectbox("job type", job_types, format_func=lambda s: s or "any")
    entity = cols[2].text_input("entity", placeholder="name contains…")
    days = cols[3].date_input("started between", value=[], format="YYYY-MM-DD")
    since = until = None
    if isinstance(days, tuple) and len(days) == 2:
        since = datetime.combine(days[0], time.min, UTC)
        until = datetime.combine(days[1], time.max, UTC)
    return RootFilters(status=status, job_type=job_type, entity=entity, since=since, until=until)


def family_view(root_id: str) -> None:
    """A family's waterfall and cards; refreshes itself while any entry is unfinished."""
    progress = data.family_progress(root_id)
    if progress.total > WHOLE_FAMILY_LIMIT:
        # A whole-library run: a summary, then one filtered page at a time.
        large_family_view(root_id, progress)
        return
    entries = data.family(root_id)
    if not entries:
        st.info(f"No log entries for {plain(root_id, 64)}.")
        return
    st.altair_chart(waterfall(entries), width="stretch")
    config = data.settings()
    unfinished = queries.unfinished(
        root_id,
        entries,
        max_attempts=config.job_max_attempts,
        lease_seconds=config.job_lease_seconds,
        now=datetime.now(UTC),
    )
    in_pages(unfinished, f"pending-{root_id}", "unfinished jobs", _pending_cards)
    in_pages(entries, f"cards-{root_id}", "entries", lambda page: _cards(page, family=entries))
    _refresh_while(bool(pending_jobs(root_id, entries, config.job_max_attempts)))


def _pending_cards(jobs: Sequence[PendingJob]) -> None:
    for job in jobs:
        pending_card(job)


def large_family_view(root_id: str, progress: FamilyProgress) -> None:
    """A family too big to draw whole: its counts, then pages of entries, filterable."""
    done = progress.total - progress.remaining
    st.caption(
        f"{progress.total:,} jobs · done {progress.count(JobStatus.SUCCESS):,} · failed "
        f"{progress.count(JobStatus.FAILED):,} · skipped {progress.count(JobStatus.SKIPPED):,}"
        f" · remaining {progress.remaining:,}"
    )
    st.progress(done / progress.total)
    st.dataframe(counts_frame(progress.counts), hide_index=True)
    st.caption("Look here first: the latest failures, then the slowest jobs")
    st.dataframe(data.family_highlights(root_id), hide_index=True)
    view = _family_filters(root_id)
    key = f"family-page-{root_id}-{view!r}"
    page = int(st.session_state.get(key, 0))
    entries = data.family_entries(root_id, view, page)
    if entries:
        st.altair_chart(waterfall(entries), width="stretch")
    _cards(entries)
    pager(key, page, len(entries), "entries", labels=IN_ORDER, size=data.FAMILY_PAGE_SIZE)
    _refresh_while(progress.remaining > 0)


def _cards(entries: Sequence[LogEntry], *, family: Sequence[LogEntry] = ()) -> None:
    """Cards for `entries`, re-run buttons decided over the whole `family` when given.

    A job's latest attempt may be on another page than the attempt shown.
    """
    config = data.settings()
    ids = tuple(dict.fromkeys(entry.job_id for entry in entries if entry.job_id))
    context = CardContext(
        config.image_cache_dir,
        config.image_max_pixels,
        reruns=data.reruns(ids) if ids else {},
        rerunnable=frozenset(
            (job_id, latest.attempt)
            for job_id, latest in latest_attempts(list(family or entries)).items()
            if _rerunnable(latest)
        ),
        on_rerun=None if config.dashboard_read_only else _rerun,
    )
    if notice := st.session_state.pop(RERUN_NOTICE, None):
        kind, text = notice
        (st.error if kind == "error" else st.success)(text)
    for entry in entries:
        entry_card(entry, context)


def _rerunnable(latest: LogEntry) -> bool:
    """A failed child, or a finished root, can be re-run from its card."""
    if latest.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return False
    return latest.is_root_job or latest.status == JobStatus.FAILED


def _rerun(job_id: str) -> None:
    # A button callback: the page reruns after it, with the notice and the new job shown.
    try:
        new_id = asyncio.run(_rerun_job(job_id))
    except EnrichmentError as exc:
        st.session_state[RERUN_NOTICE] = ("error", plain(exc, 1_000))
        return
    st.session_state[RERUN_NOTICE] = (
        "success",
        f"Re-running {plain(job_id, 64)} as {plain(new_id, 64)}.",
    )
    st.cache_data.clear()


async def _rerun_job(job_id: str) -> str:
    async with EnrichmentClient(data.settings()) as client:
        return await client.rerun(job_id)


def _refresh_while(running: bool) -> None:
    if running:
        st.caption(f"Still running: refreshing every {REFRESH_SECONDS} s…")
        _refresh_soon()


def _family_filters(root_id: str) -> queries.FamilyView:
    cols = st.columns(4)
    statuses = [None, *(str(status) for status in JobStatus)]
    status = cols[0].selectbox(
        "status", statuses, format_func=lambda s: s or "any", key=f"fs-{root_id}"
    )
    job_types = [None, *JOBS.job_types]
    job_type = cols[1].selectbox(
        "job type", job_types, format_func=lambda s: s or "any", key=f"ft-{root_id}"
    )
    entity = cols[2].text_input("entity", placeholder="name starts…", key=f"fe-{root_id}")
    orders: list[str] = list(queries.FAMILY_ORDERS)
    order = cols[3].selectbox(
        "order", orders, format_func=lambda o: ORDER_LABELS[o], key=f"fo-{root_id}"
    )
    return queries.FamilyView(
        status=status, job_type=job_type, entity=entity, order=order or "start"
    )


@st.fragment(run_every=REFRESH_SECONDS)
def _refresh_soon() -> None:
    # Re-runs on its own; a full rerun picks up the family's new entries.
    if st.session_state.get("_refresh_armed"):
        st.session_state["_refresh_armed"] = False
        st.rerun()
    st.session_state["_refresh_armed"] = True


def deep_link_view(root_id: str) -> None:
    """`?root=<jobId>`: one family on its own page."""
    st.title(f"Family of {plain(root_id, 64)}")
    family_view(root_id)


def kick_view() -> None:
    """A form that starts an album or artist enrichment as a new root."""
    st.title("Start an enrichment")
    if data.settings().dashboard_read_only:
        st.warning("This dashboard is read-only (DASHBOARD_READ_ONLY).")
        return
    with st.form("kick"):
        kind = st.radio("what", ["album", "artist"], horizontal=True)
        mbid = st.text_input("MusicBrainz id (optional)")
        # One fixed label: a label that changed with `kind` made Streamlit see a new widget
        # inside the form, which dropped what had been typed (an artist's name).
        name = st.text_input("album title or artist name", key="kick-name")
        artist = st.text_input("artist (albums)")
        force = st.checkbox("refresh even if enriched recently (ENRICH_FRESH_DAYS)")
        submitted = st.form_submit_button("Kick")
    if submitted:
        try:
            root_id = asyncio.run(_kick(kind, mbid or None, name or None, artist or None, force))
        except EnrichmentError as exc:
            st.error(plain(exc, 1_000))
        else:
            st.session_state[KICKED] = root_id
    # The latest kick's family, drawn live under the form (it is on the Roots page as well).
    if kicked := st.session_state.get(KICKED):
        st.success(f"Kicked root {kicked}: its family fills in below as a worker runs it.")
        family_view(str(kicked))


async def _kick(
    kind: str, mbid: str | None, name: str | None, artist: str | None, force: bool
) -> str:
    async with EnrichmentClient(data.settings(), read_logs=False) as client:
        if kind == "album":
            return await client.kick_album(mbid=mbid, title=name, artist=artist, force=force)
        return await client.kick_artist(mbid=mbid, name=name, force=force)


def search_view() -> None:
    """Every root whose family touched an artist or album (by name or id)."""
    st.title("Entity search")
    text = st.text_input("artist or album name, or id")
    if text.strip():
        # A page of its own per search: a new search starts on its first page.
        table_in_pages(data.entity_roots(text), f"search-page-{text}", "roots")


def orphans_view() -> None:
    """Entries whose root log is gone: incomplete families."""
    st.title("Orphans")
    table_in_pages(data.orphans(), "orphans_page", "missing roots")


def dead_letters_view() -> None:
    """Stream entries that could not be jobs: why, and what they held."""
    _paged_table("Dead letters", "dead_letters_page", data.dead_letters, "dead letters")


def legacy_view() -> None:
    """Entries written before lineage existed, or tagged legacy."""
    _paged_table("Legacy logs", "legacy_page", data.legacy, "entries")


def _paged_table(title: str, key: str, load: Callable[[int], pd.DataFrame], noun: str) -> None:
    st.title(title)
    page = int(st.session_state.get(key, 0))
    frame = load(page)
    st.dataframe(frame, hide_index=True, width="stretch")
    pager(key, page, len(frame), noun)
