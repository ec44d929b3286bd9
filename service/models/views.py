"""Read models the client returns: roots with their family roll-up, and timelines."""

from datetime import datetime

from service.models.base import CamelModel
from service.models.logs import LogEntry


class RootSummary(CamelModel):
    """A root job and how its family is doing."""

    root: LogEntry
    children_total: int = 0
    children_failed: int = 0
    children_skipped: int = 0
    matched: int = 0
    no_match: int = 0
    ambiguous: int = 0
    cached: int = 0
    last_finished_at: datetime | None = None


class Timeline(CamelModel):
    """A root's log entries (one per attempt) followed by its family's, by `startedAt`."""

    root_id: str
    root: list[LogEntry]
    children: list[LogEntry]

    @property
    def entries(self) -> list[LogEntry]:
        """Root first, then every child, in the order they started."""
        return [*self.root, *self.children]
