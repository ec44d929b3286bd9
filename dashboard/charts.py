"""Pure chart builders: data in, an Altair chart out."""

from datetime import datetime

import altair as alt
import pandas as pd

from service.models import JobStatus, LogEntry

STATUS_COLOURS: dict[str, str] = {
    JobStatus.SUCCESS: "#2e9d5b",
    JobStatus.FAILED: "#d1453b",
    JobStatus.SKIPPED: "#d9a21b",
}


def timeline_frame(entries: list[LogEntry]) -> pd.DataFrame:
    """One row per entry: its bar (start to finish), label, colour and hover text."""
    rows = []
    for order, entry in enumerate(entries):
        start = entry.started_at
        if start is None:
            continue  # a legacy entry without a start cannot be placed on the axis
        end = entry.finished_at or start
        rows.append({
            "order": order,
            "label": f"{order + 1}. {entry.job_type} · {_entity(entry)}",
            "start": start,
            "end": max(end, start),
            "status": entry.status or "unknown",
            "duration ms": entry.duration_ms,
            "error": f"{entry.error.type}: {entry.error.message}" if entry.error else "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _entity(entry: LogEntry) -> str:
    return entry.entity_name or entry.entity_id or ""


def waterfall(entries: list[LogEntry]) -> alt.Chart:
    """A Gantt/waterfall of a family: bars from start to finish, coloured by status."""
    frame = timeline_frame(entries)
    if frame.empty:
        frame = pd.DataFrame(
            {
                "order": [],
                "label": [],
                "start": [],
                "end": [],
                "status": [],
                "duration ms": [],
                "error": [],
            }
        )
    origin: datetime | None = frame["start"].min() if not frame.empty else None
    title = f"started {origin:%Y-%m-%d %H:%M:%S} UTC" if origin is not None else "no timed entries"
    colours = alt.Scale(
        domain=[str(s) for s in STATUS_COLOURS], range=list(STATUS_COLOURS.values())
    )
    chart: alt.Chart = (
        alt.Chart(frame, title=title)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", title=None),
            x2="end:T",
            y=alt.Y(
                "label:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelLimit=360)
            ),
            color=alt.Color("status:N", scale=colours, legend=alt.Legend(orient="bottom")),
            tooltip=["label:N", "status:N", "duration ms:Q", "error:N"],
        )
        .properties(height=alt.Step(24))
    )
    return chart
