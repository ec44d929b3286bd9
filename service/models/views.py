"""Read models: what every reader (client, CLI, dashboard) gets back from `service.queries`."""

from datetime import datetime

from service.models.base import CamelModel
from service.models.logs import LogEntry

# The roll-up columns, as the CLI and the dashboard both label them.
ROLLUP_COLUMNS = (
    "children",
    "failed",
    "skipped",
    "still running",
    "matched",
    "no match",
    "ambiguous",
    "cached",
    "family s",
)


class RootSummary(CamelModel):
    """A root job and how its family is doing."""

    root: LogEntry
    children_total: int = 0
    children_failed: int = 0
    children_skipped: int = 0
    # Children whose last attempt failed with a retry still to come.
    still_running: int = 0
    matched: int = 0
    no_match: int = 0
    ambiguous: int = 0
    cached: int = 0
    last_finished_at: datetime | None = None

    @property
    def family_seconds(self) -> float | None:
        """From the root's start to the last finish in its family."""
        ends = [t for t in (self.root.finished_at, self.last_finished_at) if t is not None]
        if not ends or self.root.started_at is None:
            return None
        return round((max(ends) - self.root.started_at).total_seconds(), 2)

    def rollup(self) -> dict[str, int | float | None]:
        """The family roll-up as every view shows it: `ROLLUP_COLUMNS` label → value."""
        values = (
            self.children_total,
            self.children_failed,
            self.children_skipped,
            self.still_running,
            self.matched,
            self.no_match,
            self.ambiguous,
            self.cached,
            self.family_seconds,
        )
        return dict(zip(ROLLUP_COLUMNS, values, strict=True))


class Timeline(CamelModel):
    """A root's log entries (one per attempt) followed by its family's, by `startedAt`."""

    root_id: str
    root: list[LogEntry]
    children: list[LogEntry]

    @property
    def entries(self) -> list[LogEntry]:
        """Root first, then every child, in the order they started."""
        return [*self.root, *self.children]


class EntityMatch(CamelModel):
    """A root whose family touched entities matching a search, and their names."""

    root_job_id: str
    entities: list[str]


class OrphanFamily(CamelModel):
    """Entries whose root log is gone (deleted): an incomplete family."""

    missing_root: str
    entries: int
    first_started: datetime | None = None
