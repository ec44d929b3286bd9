"""One card per timeline entry; what it shows of the details depends on their model."""

from functools import singledispatch
from pathlib import Path
from typing import Any

import streamlit as st

from service.models import JobStatus, LogEntry
from service.models.base import CamelModel
from service.models.jobs import CacheDetails, DiscogsDetails, MusicBrainzDetails
from service.models.views import PendingJob, PendingState

STATUS_ICONS: dict[str, str] = {
    JobStatus.QUEUED: "⏳",
    JobStatus.RUNNING: "▶️",
    JobStatus.SUCCESS: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.SKIPPED: "⏭️",
}


def entry_card(entry: LogEntry, image_cache_dir: Path | None) -> None:
    """Show one entry: header, then what its processor did."""
    with st.container(border=True):
        icon = STATUS_ICONS.get(entry.status or "", "❔")
        entity = entry.entity_name or entry.entity_id or "—"
        took = f"{entry.duration_ms} ms" if entry.duration_ms is not None else "unfinished"
        st.markdown(f"{icon} **{entry.job_type}** · {entity} · attempt {entry.attempt} · {took}")
        if entry.error is not None:
            kind = "retryable" if entry.error.retryable else "permanent"
            st.error(f"**{entry.error.type}** ({kind}): {entry.error.message}")
        show_details(entry.details, entry, image_cache_dir)


def pending_card(job: PendingJob) -> None:
    """An unfinished job as Temporal shows a pending activity: where it is, and why."""
    with st.container(border=True):
        show = st.warning if job.state == PendingState.LOST else st.info
        show(f"{job.state}: {job.job_type or '?'} · {job.entity_name or job.job_id}")
        st.caption(job.describe())


@singledispatch
def show_details(details: Any, entry: LogEntry, image_cache_dir: Path | None) -> None:
    """What the processor reported: raw details (legacy logs) as JSON."""
    if details:
        st.json(details, expanded=False)


@show_details.register
def _any_model(details: CamelModel, entry: LogEntry, image_cache_dir: Path | None) -> None:
    # A processor whose details have no card of their own: every field, as JSON.
    st.json(details.model_dump(mode="json", by_alias=True), expanded=False)


@show_details.register
def _musicbrainz(
    details: MusicBrainzDetails, entry: LogEntry, image_cache_dir: Path | None
) -> None:
    found = f"{details.match_source or '—'} · outcome {details.outcome or '—'}"
    st.caption(f"MusicBrainz {details.mbid or ''} · {found} · {details.requests} requests")
    if entry.fields_enriched:
        st.markdown("Fields written: " + ", ".join(f"`{f}`" for f in entry.fields_enriched))


@show_details.register
def _discogs(details: DiscogsDetails, entry: LogEntry, image_cache_dir: Path | None) -> None:
    left, right = st.columns([2, 3])
    with left:
        outcome = f"{details.outcome or '—'} via {details.match_source or '—'}"
        st.markdown(f"**{details.matched_name or '—'}** · {outcome}")
        st.progress(details.confidence or 0.0, text=f"confidence {details.confidence or 0:.2f}")
        chips = " ".join(f"`{g}`" for g in [*details.genres, *details.styles])
        if chips:
            st.markdown(chips)
        st.caption(f"{details.images_found} images · {details.requests} requests")
        if details.discogs_url:
            st.markdown(f"[Discogs page]({details.discogs_url})")
    with right:
        if details.candidates:
            st.dataframe(
                [{"id": c.id, "name": c.name, "score": c.score} for c in details.candidates],
                hide_index=True,
            )
        if details.profile:
            st.caption(details.profile[:280] + ("…" if len(details.profile) > 280 else ""))


@show_details.register
def _cache(details: CacheDetails, entry: LogEntry, image_cache_dir: Path | None) -> None:
    before, after, facts = st.columns(3)
    with before:
        st.caption("before")
        if details.before_url:
            st.image(details.before_url, width=140)
    with after:
        st.caption("after")
        shown = _cached_image(details, image_cache_dir)
        if shown is not None:
            st.image(shown, width=140)
    with facts:
        size = f"{details.size_bytes:,} bytes" if details.size_bytes is not None else "—"
        dims = f"{details.width}×{details.height}" if details.width else "—"
        st.markdown(
            f"{details.format or '—'} · {dims} · {size}  \n"
            f"location **{details.cache_location or '—'}**"
            + (" · deduplicated" if details.deduplicated else "")
        )
        if details.cloudflare_id:
            st.caption(f"Cloudflare id {details.cloudflare_id}")
        if details.source_url:
            st.caption(f"source {details.source_url}")


def _cached_image(details: CacheDetails, image_cache_dir: Path | None) -> str | None:
    # Local cache entries carry a path-only URL: the dashboard reads the file itself.
    if details.cache_location == "local" and details.cache_path and image_cache_dir is not None:
        path = (image_cache_dir / details.cache_path).resolve()
        inside = path.is_relative_to(image_cache_dir.resolve())
        return str(path) if inside and path.exists() else None
    return details.after_url
