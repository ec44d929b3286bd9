"""Terminal tables for roots and timelines (the CLI and the demo print these)."""

from datetime import datetime

from rich.table import Table
from rich.text import Text

from service.models import LogEntry
from service.models.logs import CacheDetails, DiscogsDetails, MusicBrainzDetails
from service.models.views import RootSummary, Timeline

STATUS_STYLES = {"success": "green", "failed": "red", "skipped": "yellow"}


def roots_table(roots: list[RootSummary]) -> Table:
    """One row per root job with its family roll-up."""
    table = Table(title="Root jobs", title_justify="left")
    for column in (
        "started",
        "job id",
        "type",
        "entity",
        "status",
        "children",
        "failed",
    ):
        table.add_column(column)
    for summary in roots:
        root = summary.root
        table.add_row(
            _time(root.started_at),
            root.job_id or "?",
            root.job_type or "?",
            root.entity_name or "",
            _status(root.status),
            str(summary.children_total),
            str(summary.children_failed),
        )
    return table


def timeline_table(timeline: Timeline) -> Table:
    """The root's attempts, then its family's, in start order, with the offset from the root."""
    table = Table(title=f"Timeline of {timeline.root_id}", title_justify="left")
    for column in (
        "+ms",
        "job",
        "type",
        "entity",
        "try",
        "status",
        "ms",
        "fields / error",
    ):
        table.add_column(column, overflow="fold")
    origin = next((e.started_at for e in timeline.entries if e.started_at), None)
    for entry in timeline.entries:
        table.add_row(
            _offset(entry.started_at, origin),
            ("● " if entry.is_root_job else "  └ ") + (entry.job_id or "?")[:8],
            entry.job_type or "?",
            entry.entity_name or entry.entity_id or "",
            str(entry.attempt),
            _status(entry.status),
            str(entry.duration_ms if entry.duration_ms is not None else ""),
            _outcome(entry),
        )
    if not timeline.entries:
        table.caption = "no log entries for this job id"
    return table


def _outcome(entry: LogEntry) -> str:
    if entry.error is not None:
        retry = "retryable" if entry.error.retryable else "permanent"
        return f"{entry.error.type} ({retry}): {entry.error.message}"
    details = entry.details
    if isinstance(details, DiscogsDetails) and details.outcome != "matched":
        score = f" (confidence {details.confidence:.2f})" if details.confidence else ""
        return f"{details.outcome}{score}: nothing written"
    if isinstance(details, CacheDetails) and details.deduplicated:
        return f"already cached: {details.after_url}"
    if entry.status == "skipped" and isinstance(details, MusicBrainzDetails):
        return f"{details.outcome or 'skipped'}: nothing written"
    return ", ".join(entry.fields_enriched)


def _status(status: str | None) -> Text:
    return Text(status or "?", style=STATUS_STYLES.get(status or "", ""))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _offset(value: datetime | None, origin: datetime | None) -> str:
    if value is None or origin is None:
        return "—"
    return f"{(value - origin).total_seconds() * 1000:+.0f}"
