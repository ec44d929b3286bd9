"""Pure chart builders: data in, an Altair chart out."""

from datetime import UTC, datetime

import altair as alt
import pandas as pd

from dashboard.safe import clip
from service.errors import JobCancelledError, WorkerLostError
from service.models import JobStatus, LogEntry

STATUS_COLOURS: dict[str, str] = {
    JobStatus.QUEUED: "#c9ced6",  # lighter: waiting, not working
    JobStatus.RUNNING: "#3b7dd8",
    JobStatus.SUCCESS: "#2e9d5b",
    JobStatus.FAILED: "#d1453b",
    JobStatus.SKIPPED: "#d9a21b",
    "lost": "#7a3e9d",
    "cancelled": "#8c8c8c",
}
# Attempts that ended because their worker did, shown apart from the job's own failures.
INTERRUPTED = {WorkerLostError.__name__: "lost", JobCancelledError.__name__: "cancelled"}


def timeline_frame(entries: list[LogEntry], now: datetime | None = None) -> pd.DataFrame:
    """Bars per entry: its queue wait (lighter) up to its start, then its run.

    A queued entry's wait grows to `now`, and so does a running entry's bar.
    """
    now = now or datetime.now(UTC)
    rows = []
    for order, entry in enumerate(entries):
        start = entry.started_at
        if start is None:
            continue  # a legacy entry without a start cannot be placed on the axis
        label = f"{order + 1}. {clip(entry.job_type, 40)} · {_entity(entry)}"
        waited_from = entry.queued_at
        if entry.status == JobStatus.QUEUED:
            rows.append(_bar("wait", order, label, waited_from or start, now, entry))
            continue
        if waited_from is not None and waited_from < start:
            rows.append(_bar("wait", order, label, waited_from, start, entry))
        end = now if entry.status == JobStatus.RUNNING else entry.finished_at or start
        rows.append(_bar("run", order, label, start, end, entry))
    return pd.DataFrame(rows, columns=COLUMNS)


def _bar(
    kind: str, order: int, label: str, start: datetime, end: datetime, entry: LogEntry
) -> dict[str, object]:
    status = JobStatus.QUEUED if kind == "wait" else entry.status or "unknown"
    if kind == "run" and entry.error is not None and entry.error.type in INTERRUPTED:
        status = INTERRUPTED[entry.error.type]  # not the job's fault: drawn apart
    return {
        "kind": kind,
        "order": order,
        "label": label,
        "start": start,
        "end": max(end, start),
        "status": str(status),
        "attempt": entry.attempt,
        "duration ms": entry.duration_ms,
        "error": clip(f"{entry.error.type}: {entry.error.message}", 300) if entry.error else "",
    }


COLUMNS = ["kind", "order", "label", "start", "end", "status", "attempt", "duration ms", "error"]


def _entity(entry: LogEntry) -> str:
    return clip(entry.entity_name or entry.entity_id or "", 80)


def waterfall(entries: list[LogEntry]) -> alt.LayerChart:
    """A Gantt/waterfall of a family: bars from start to finish, coloured by status."""
    frame = timeline_frame(entries)
    origin: datetime | None = frame["start"].min() if not frame.empty else None
    title = f"started {origin:%Y-%m-%d %H:%M:%S} UTC" if origin is not None else "no timed entries"
    colours = alt.Scale(
        domain=[str(s) for s in STATUS_COLOURS], range=list(STATUS_COLOURS.values())
    )
    base = alt.Chart(frame, title=title).encode(
        x=alt.X("start:T", title=None),
        x2="end:T",
        y=alt.Y("label:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelLimit=360)),
        color=alt.Color("status:N", scale=colours, legend=alt.Legend(orient="bottom")),
        tooltip=["label:N", "status:N", "attempt:Q", "duration ms:Q", "error:N"],
    )
    # The queue wait is a thinner, lighter line up to the start; the run is the bar.
    waits = base.transform_filter(alt.datum.kind == "wait").mark_rule(strokeWidth=6, opacity=0.8)
    runs = base.transform_filter(alt.datum.kind == "run").mark_bar(cornerRadius=2)
    return alt.LayerChart(layer=[waits, runs], height=alt.Step(24))
