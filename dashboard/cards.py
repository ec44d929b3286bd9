"""One card per timeline entry; what it shows of the details depends on their model.

Every value from the store goes through `dashboard.safe`: text is inert, images vouched for.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, singledispatch
from pathlib import Path
from typing import Any
from urllib.parse import quote

import streamlit as st
from PIL import Image, ImageDraw

from dashboard.safe import MAX_MESSAGE_CHARS, cached_thumbnail, clip, image_uri, plain
from service.models import JobStatus, LogEntry
from service.models.base import CamelModel
from service.models.jobs import CacheDetails, DiscogsDetails, MusicBrainzDetails
from service.models.views import PendingJob, PendingState

DISCOGS_ARTIST_URL = "https://www.discogs.com/artist/"
# Material Symbols come with Streamlit's front end, so they render in any browser; emoji
# need an emoji font, and a stock headless Chromium draws them as empty boxes. The colours
# are the waterfall's.
STATUS_MARKS: dict[str, str] = {
    JobStatus.QUEUED: ":gray[:material/schedule:]",
    JobStatus.RUNNING: ":blue[:material/play_circle:]",
    JobStatus.SUCCESS: ":green[:material/check_circle:]",
    JobStatus.FAILED: ":red[:material/cancel:]",
    JobStatus.SKIPPED: ":orange[:material/skip_next:]",
}
UNKNOWN_MARK = ":gray[:material/help:]"
THUMBNAIL_WIDTH = 140


@dataclass(frozen=True)
class CardContext:
    """What cards need besides the entry: where cached images live and how big they may be."""

    image_cache_dir: Path | None
    max_pixels: int
    # The jobs that re-run each job (by the job they repeat), for "re-run as" links.
    reruns: Mapping[str, list[str]] = field(default_factory=dict)
    # The attempts offered a Re-run button (a failed child's or a root's latest), and what
    # the button does; None on a read-only dashboard.
    rerunnable: frozenset[tuple[str, int]] = frozenset()
    on_rerun: Callable[[str], None] | None = None


def entry_card(entry: LogEntry, context: CardContext) -> None:
    """Show one entry: header, then what its processor did."""
    with st.container(border=True):
        mark = STATUS_MARKS.get(entry.status or "", UNKNOWN_MARK)
        entity = plain(entry.entity_name or entry.entity_id or "—")
        took = f"{entry.duration_ms} ms" if entry.duration_ms is not None else "unfinished"
        kind = plain(entry.job_type)
        st.markdown(f"{mark} **{kind}** · {entity} · attempt {entry.attempt} · {took}")
        if entry.error is not None:
            retry = "retryable" if entry.error.retryable else "permanent"
            message = plain(entry.error.message, MAX_MESSAGE_CHARS)
            st.error(f"**{plain(entry.error.type)}** ({retry}): {message}")
        _rerun_links(entry, context)
        if entry.relied_on is not None:
            relied = entry.relied_on
            st.caption(
                f"fresh: relied on job {plain(relied.job_id, 64)} of "
                f"{relied.enriched_at:%Y-%m-%d %H:%M} UTC (ENRICH_FRESH_DAYS); nothing fetched"
            )
            return
        show_details(entry.details, entry, context)


def _rerun_links(entry: LogEntry, context: CardContext) -> None:
    """Where a re-run came from and where a job was re-run, both ways; the Re-run button."""
    if entry.rerun_of:
        st.caption(f"↻ re-run of {_job_link(entry.rerun_of, root=entry.is_root_job)}")
    for again in context.reruns.get(entry.job_id or "", []):
        st.caption(f"↻ re-run as {_job_link(again, root=entry.is_root_job)}")
    key = (entry.job_id or "", entry.attempt)
    if context.on_rerun is not None and key in context.rerunnable:
        st.button(
            "Re-run", key=f"rerun-{key[0]}-{key[1]}", on_click=context.on_rerun, args=(key[0],)
        )


def _job_link(job_id: str, *, root: bool) -> str:
    # A root's re-run is a family of its own: link to it. A child's is on this timeline.
    shown = plain(job_id, 64)
    return f"[{shown}](?root={quote(job_id, safe='')})" if root else shown


def pending_card(job: PendingJob) -> None:
    """An unfinished job as Temporal shows a pending activity: where it is, and why."""
    with st.container(border=True):
        show = st.warning if job.state == PendingState.LOST else st.info
        show(plain(f"{job.state}: {job.job_type or '?'} · {job.entity_name or job.job_id}"))
        st.caption(plain(job.describe(), MAX_MESSAGE_CHARS))


@singledispatch
def show_details(details: Any, entry: LogEntry, context: CardContext) -> None:
    """What the processor reported: raw details (legacy logs) as JSON."""
    if details:
        st.json(details, expanded=False)


@show_details.register
def _any_model(details: CamelModel, entry: LogEntry, context: CardContext) -> None:
    # A processor whose details have no card of their own: every field, as JSON.
    st.json(details.model_dump(mode="json", by_alias=True), expanded=False)


@show_details.register
def _musicbrainz(details: MusicBrainzDetails, entry: LogEntry, context: CardContext) -> None:
    found = f"{details.match_source or '—'} · outcome {details.outcome or '—'}"
    st.caption(plain(f"MusicBrainz {details.mbid or ''} · {found} · {details.requests} requests"))
    if entry.fields_enriched:
        st.caption("Fields written: " + plain(", ".join(entry.fields_enriched), MAX_MESSAGE_CHARS))


@show_details.register
def _discogs(details: DiscogsDetails, entry: LogEntry, context: CardContext) -> None:
    left, right = st.columns([2, 3])
    with left:
        outcome = plain(f"{details.outcome or '—'} via {details.match_source or '—'}")
        st.markdown(f"**{plain(details.matched_name or '—')}** · {outcome}")
        confidence = min(max(details.confidence or 0.0, 0.0), 1.0)
        st.progress(confidence, text=f"confidence {confidence:.2f}")
        tags = [*details.genres, *details.styles]
        if tags:
            st.caption(" · ".join(plain(tag, 60) for tag in tags[:30]))
        st.caption(f"{details.images_found} images · {details.requests} requests")
        if details.discogs_id is not None:
            # Built from the id, never taken from the provider: a link is only ever Discogs'.
            st.link_button("Discogs page", f"{DISCOGS_ARTIST_URL}{details.discogs_id}")
    with right:
        if details.candidates:
            st.dataframe(
                [{"id": c.id, "name": clip(c.name), "score": c.score} for c in details.candidates],
                hide_index=True,
            )
        if details.profile:
            st.caption(plain(details.profile, 280))


@show_details.register
def _cache(details: CacheDetails, entry: LogEntry, context: CardContext) -> None:
    before, after, facts = st.columns(3)
    with before:
        st.caption("before")
        _thumbnail(None, details.before_url)  # the provider's copy: never loaded, see below
    with after:
        st.caption("after")
        _thumbnail(_cached_thumbnail(details, context), details.after_url)
    with facts:
        size = f"{details.size_bytes:,} bytes" if details.size_bytes is not None else "—"
        dims = f"{details.width}×{details.height}" if details.width else "—"
        st.markdown(
            f"{plain(details.format or '—')} · {dims} · {size}  \n"
            f"location **{plain(details.cache_location or '—')}**"
            + (" · deduplicated" if details.deduplicated else "")
        )
        if details.cloudflare_id:
            st.caption(f"Cloudflare id {plain(details.cloudflare_id)}")
        if details.source_url:
            st.caption(f"source {plain(details.source_url, MAX_MESSAGE_CHARS)}")


def _thumbnail(image: str | None, url: str | None) -> None:
    """A thumbnail we made and vouched for, else a placeholder with the URL as inert text.

    A URL is never handed to the browser as an image: when it does not load (the demo's
    providers have stopped, a signed URL expired, a CDN is down) Streamlit draws a broken-image
    icon, and no markup that could catch the error is rendered. Nothing is fetched here either.
    """
    st.image(placeholder_image() if image is None else image, width=THUMBNAIL_WIDTH)
    if image is None and url:
        st.caption(plain(url, MAX_MESSAGE_CHARS))


def _cached_thumbnail(details: CacheDetails, context: CardContext) -> str | None:
    if details.cache_location != "local":
        return None  # a Cloudflare copy is a URL: shown as text
    # The dashboard reads the local cache itself, and only inside IMAGE_CACHE_DIR.
    return cached_thumbnail(
        details.cache_path, context.image_cache_dir, context.max_pixels, THUMBNAIL_WIDTH
    )


@cache
def placeholder_image() -> str:
    """A grey picture frame (a PNG `data:` URI): where a thumbnail goes when we hold none."""
    image = Image.new("RGB", (THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 3 // 4), "#eef0f3")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width - 1, image.height - 1), outline="#c9ced6", width=2)
    draw.polygon([(22, 84), (58, 42), (82, 70), (96, 56), (118, 84)], fill="#c9ced6")
    draw.ellipse((92, 22, 110, 40), fill="#c9ced6")
    return image_uri(image, lossless=True)
