"""Terminal tables for roots and timelines (the CLI and the demo print these)."""

from datetime import datetime
from functools import singledispatch
from typing import Any

from rich.table import Table
from rich.text import Text

from service.models import JobStatus, LogEntry
from service.models.jobs import CacheDetails, DiscogsDetails, MusicBrainzDetails
from service.models.views import RootSummary, Timeline

STATUS_STYLES: dict[str, str] = {
    JobStatus.QUEUED: "dim",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCESS: "green",
    JobStatus.FAILED: "red",
    JobStatus.SKIPPED: "yellow",
}


def roots_table(roots: list[RootSummary]) -> Table:
    """One row per root job with its family roll-up (the dashboard's columns)."""
    table = Table(title="Root jobs", title_justify="left")
    table.add_column("started", overflow="fold")
    # Whole, on one line: the job id is what `enrichment timeline` takes.
    table.add_column("job id", no_wrap=True, min_width=32)
    for column in ("type", "entity", "status"):
        table.add_column(column, overflow="fold")
    # The dashboard's roll-up columns, as "label value" pairs: a terminal is narrower.
    table.add_column("family", overflow="fold", ratio=1)
    for summary in roots:
        root = summary.root
        rollup = summary.rollup().items()
        family = ", ".join(f"{label} {'—' if value is None else value}" for label, value in rollup)
        _add_row(
            table,
            _time(root.started_at),
            root.job_id or "?",
            root.job_type or "?",
            root.entity_name or "",
            _status(root.status),
            family,
        )
    return table


def timeline_table(timeline: Timeline) -> Table:
    """The root's attempts, then its family's, in start order, with the offset from the root."""
    table = Table(title=Text(f"Timeline of {timeline.root_id}"), title_justify="left")
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
    rerun_as = {e.rerun_of: e.job_id for e in timeline.entries if e.rerun_of and e.job_id}
    for entry in timeline.entries:
        _add_row(
            table,
            _offset(entry.started_at, origin),
            ("● " if entry.is_root_job else "  └ ") + (entry.job_id or "?")[:8],
            entry.job_type or "?",
            entry.entity_name or entry.entity_id or "",
            str(entry.attempt),
            _status(entry.status),
            str(entry.duration_ms if entry.duration_ms is not None else ""),
            _rerun_note(entry, rerun_as.get(entry.job_id or "")) + _outcome(entry),
        )
    if not timeline.entries:
        table.caption = "no log entries for this job id"
    return table


def _add_row(table: Table, *cells: str | Text) -> None:
    # Entity names, errors and ids come from providers and users: text, never console markup.
    table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in cells))


def _rerun_note(entry: LogEntry, rerun_as: str | None) -> str:
    note = f"re-run of {entry.rerun_of[:8]}; " if entry.rerun_of else ""
    return note + (f"re-run as {rerun_as[:8]}; " if rerun_as else "")


def _outcome(entry: LogEntry) -> str:
    if entry.status == JobStatus.QUEUED:
        if entry.due_at is not None:
            return f"retry due at {_time(entry.due_at)}"
        return f"queued since {_time(entry.queued_at or entry.started_at)}"
    if entry.status == JobStatus.RUNNING:
        worker = f"{entry.worker.host}:{entry.worker.pid}" if entry.worker else "?"
        return f"running on {worker}, last alive {_time(entry.heartbeat_at or entry.started_at)}"
    if entry.relied_on is not None:
        relied = entry.relied_on
        return f"fresh: relied on {relied.job_id[:8]} of {_time(relied.enriched_at)}"
    if entry.error is not None:
        retry = "retryable" if entry.error.retryable else "permanent"
        return f"{entry.error.type} ({retry}): {entry.error.message}"
    return outcome(entry.details, entry) or ", ".join(entry.fields_enriched)


@singledispatch
def outcome(details: Any, entry: LogEntry) -> str | None:
    """What an entry's details say beyond the fields it wrote; None when nothing more."""
    return None


@outcome.register
def _discogs(details: DiscogsDetails, entry: LogEntry) -> str | None:
    if details.outcome == "matched":
        return None
    score = f" (confidence {details.confidence:.2f})" if details.confidence else ""
    return f"{details.outcome}{score}: nothing written"


@outcome.register
def _cache(details: CacheDetails, entry: LogEntry) -> str | None:
    return f"already cached: {details.after_url}" if details.deduplicated else None


@outcome.register
def _musicbrainz(details: MusicBrainzDetails, entry: LogEntry) -> str | None:
    if entry.status != JobStatus.SKIPPED:
        return None
    return f"{details.outcome or JobStatus.SKIPPED}: nothing written"


def _status(status: str | None) -> Text:
    return Text(status or "?", style=STATUS_STYLES.get(status or "", ""))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _offset(value: datetime | None, origin: datetime | None) -> str:
    if value is None or origin is None:
        return "—"
    return f"{(value - origin).total_seconds() * 1000:+.0f}"
