"""Pure chart builders: data in, an Altair chart out."""

from dataclasses import dataclass
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

    A queued entry's wait grows to `now`, and so does a running entry's bar. `from` and `to`
    are each bar's ends in seconds from the family's first moment (the root's queue time).
    """
    now = now or datetime.now(UTC)
    spans: list[Span] = []
    for order, entry in enumerate(entries):
        start = entry.started_at
        if start is None:
            continue  # a legacy entry without a start cannot be placed on the axis
        label = f"{order + 1}. {clip(entry.job_type, 40)} · {_entity(entry)}"
        waited_from = entry.queued_at
        if entry.status == JobStatus.QUEUED:
            spans.append(Span("wait", order, label, waited_from or start, now, entry))
            continue
        if waited_from is not None and waited_from < start:
            spans.append(Span("wait", order, label, waited_from, start, entry))
        end = now if entry.status == JobStatus.RUNNING else entry.finished_at or start
        spans.append(Span("run", order, label, start, end, entry))
    origin = min((span.start for span in spans), default=now)
    return pd.DataFrame([span.row(origin) for span in spans], columns=COLUMNS)


def offset_label(seconds: float) -> str:
    """An offset from the root's start as the axis shows it: `+1.2 s`."""
    return f"+{seconds:.1f} s"


@dataclass(frozen=True)
class Span:
    """One bar: an entry's queue wait or its run."""

    kind: str
    order: int
    label: str
    start: datetime
    end: datetime
    entry: LogEntry

    def row(self, origin: datetime) -> dict[str, object]:
        """The bar as a chart row, its ends also as seconds from `origin`."""
        entry, end = self.entry, max(self.end, self.start)
        status = JobStatus.QUEUED if self.kind == "wait" else entry.status or "unknown"
        if self.kind == "run" and entry.error is not None and entry.error.type in INTERRUPTED:
            status = INTERRUPTED[entry.error.type]  # not the job's fault: drawn apart
        offset = (self.start - origin).total_seconds()
        return {
            "kind": self.kind,
            "order": self.order,
            "label": self.label,
            "start": self.start,
            "end": end,
            "from": offset,
            "to": (end - origin).total_seconds(),
            "at": offset_label(offset),
            "status": str(status),
            "attempt": entry.attempt,
            "duration ms": entry.duration_ms,
            "error": clip(f"{entry.error.type}: {entry.error.message}", 300) if entry.error else "",
        }


COLUMNS = [
    "kind", "order", "label", "start", "end", "from", "to", "at",
    "status", "attempt", "duration ms", "error",
]  # fmt: skip
# Vega's own formatting, so every tick reads like `offset_label`: `+0.0 s`, `+1.2 s`.
OFFSET_LABEL = "'+' + format(datum.value, '.1f') + ' s'"


def _entity(entry: LogEntry) -> str:
    return clip(entry.entity_name or entry.entity_id or "", 80)


def waterfall(entries: list[LogEntry]) -> alt.LayerChart:
    """A Gantt/waterfall of a family: bars from start to finish, coloured by status.

    The time axis reads as offsets from the family's start: clock times differ in their
    fractions only (`.900`, `.300`), which says nothing about how long anything took.
    """
    frame = timeline_frame(entries)
    origin: datetime | None = frame["start"].min() if not frame.empty else None
    # What +0.0 s is: the family's first moment (the root's queue time), or a page's first.
    title = (
        f"seconds from {origin:%Y-%m-%d %H:%M:%S} UTC" if origin is not None else "no timed entries"
    )
    colours = alt.Scale(
        domain=[str(s) for s in STATUS_COLOURS], range=list(STATUS_COLOURS.values())
    )
    base = alt.Chart(frame, title=title).encode(
        x=alt.X(
            "from:Q",
            title=None,
            axis=alt.Axis(labelExpr=OFFSET_LABEL, tickMinStep=0.1),
        ),
        x2="to:Q",
        y=alt.Y("label:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelLimit=360)),
        color=alt.Color("status:N", scale=colours, legend=alt.Legend(orient="bottom")),
        tooltip=[
            "label:N",
            alt.Tooltip("at:N", title="started"),
            "status:N",
            "attempt:Q",
            "duration ms:Q",
            "error:N",
        ],
    )
    # The queue wait is a thinner, lighter line up to the start; the run is the bar.
    waits = base.transform_filter(alt.datum.kind == "wait").mark_rule(strokeWidth=6, opacity=0.8)
    runs = base.transform_filter(alt.datum.kind == "run").mark_bar(cornerRadius=2)
    return alt.LayerChart(layer=[waits, runs], height=alt.Step(24))
