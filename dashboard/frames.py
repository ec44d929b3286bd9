"""Pure transforms: read models in, the DataFrames the pages show out.

Tables render cells as text; text that came from providers or users is still clipped, so a
5 MB name stays a short cell.
"""

import pandas as pd

from dashboard.safe import MAX_MESSAGE_CHARS, clip
from service.models import LogEntry
from service.models.views import DeadLetter, EntityMatch, OrphanFamily, RootSummary


def roots_frame(summaries: list[RootSummary]) -> pd.DataFrame:
    """One row per root: when, what, its status and its family roll-up."""
    return pd.DataFrame(
        [
            {
                "started": s.root.started_at,
                "job type": clip(s.root.job_type),
                "entity": clip(s.root.entity_name),
                "status": s.root.status,
                **s.rollup(),
                "job id": s.root.job_id,
            }
            for s in summaries
        ]
    )


def entity_frame(matches: list[EntityMatch]) -> pd.DataFrame:
    """One row per root whose family touched the searched entity."""
    return pd.DataFrame(
        [
            {"root job id": clip(m.root_job_id), "entities": clip(", ".join(m.entities), 400)}
            for m in matches
        ]
    )


def orphans_frame(families: list[OrphanFamily]) -> pd.DataFrame:
    """One row per missing root."""
    return pd.DataFrame(
        [
            {
                "missing root": clip(f.missing_root),
                "entries": f.entries,
                "first started": f.first_started,
                "state": "incomplete family",
            }
            for f in families
        ]
    )


def legacy_frame(entries: list[LogEntry]) -> pd.DataFrame:
    """One row per legacy entry."""
    return pd.DataFrame(
        [
            {
                "started": e.started_at,
                "job id": clip(e.job_id),
                "job type": clip(e.job_type),
                "entity": clip(e.entity_name or e.entity_id),
                "status": e.status,
            }
            for e in entries
        ]
    )


def dead_letters_frame(letters: list[DeadLetter]) -> pd.DataFrame:
    """One row per dead letter."""
    return pd.DataFrame(
        [
            {
                "at": d.at,
                "stream id": d.stream_id,
                "reason": clip(d.reason, MAX_MESSAGE_CHARS),
                "excerpt": clip(d.excerpt, MAX_MESSAGE_CHARS),
            }
            for d in letters
        ]
    )


def highlights_frame(entries: list[LogEntry]) -> pd.DataFrame:
    """The entries of a big family to look at first: failures, then the slowest."""
    return pd.DataFrame(
        [
            {
                "status": e.status,
                "job type": clip(e.job_type),
                "entity": clip(e.entity_name or e.entity_id),
                "attempt": e.attempt,
                "seconds": None if e.duration_ms is None else round(e.duration_ms / 1000, 1),
                "error": clip(f"{e.error.type}: {e.error.message}" if e.error else ""),
                "job id": clip(e.job_id),
            }
            for e in entries
        ]
    )


def counts_frame(counts: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Jobs by job type (rows) and latest status (columns), with totals."""
    frame = pd.DataFrame(counts, columns=["job type", "status", "jobs"])
    if frame.empty:
        return frame
    table = frame.pivot_table(
        index="job type", columns="status", values="jobs", aggfunc="sum", fill_value=0
    )
    table["total"] = table.sum(axis=1)
    return table.reset_index()
