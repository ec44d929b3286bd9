"""Read models: what every reader (client, CLI, dashboard) gets back from `service.queries`."""

from datetime import datetime
from enum import StrEnum

from service.models.base import CamelModel
from service.models.logs import JobStatus, LogEntry

# The roll-up columns, as the CLI and the dashboard both label them.
ROLLUP_COLUMNS = (
    "children",
    "queued",
    "running",
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
    children_queued: int = 0
    children_running: int = 0
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
            self.children_queued,
            self.children_running,
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


class FamilyProgress(CamelModel):
    """A family in numbers: its root's status, its jobs by job type and latest status."""

    root_status: str | None = None
    # (job type, latest status, jobs), sorted.
    counts: list[tuple[str, str, int]] = []

    def count(self, *statuses: str) -> int:
        """Jobs whose latest attempt has one of these statuses."""
        return sum(jobs for _, status, jobs in self.counts if status in statuses)

    @property
    def total(self) -> int:
        """Every job of the family known so far (it grows as jobs spawn theirs)."""
        return sum(jobs for _, _, jobs in self.counts)

    @property
    def remaining(self) -> int:
        """Jobs still queued or running."""
        return self.count(JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def finished(self) -> bool:
        """Whether the root and every job known so far are done."""
        root_done = self.root_status not in (None, JobStatus.QUEUED, JobStatus.RUNNING)
        return root_done and self.remaining == 0


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


class DeadLetter(CamelModel):
    """A stream entry that could not be a job: where it was, why, and a bounded excerpt."""

    stream_id: str
    queue: str
    reason: str
    excerpt: str
    at: datetime


class PendingState(StrEnum):
    """Where an unfinished job stands."""

    NO_LOG = "no log yet"
    QUEUED = "queued"
    DUE = "due"  # a retry waiting for its due time
    RUNNING = "running"
    LOST = "lost"  # running, but its worker went silent for a lease
    RETRYING = "retrying"  # failed, another attempt on its way


HELD = frozenset({PendingState.RUNNING, PendingState.LOST})


class PendingJob(CamelModel):
    """A job of a family that has not finished, and where it stands (Temporal's pending card)."""

    job_id: str
    state: PendingState
    job_type: str | None = None
    entity_name: str | None = None
    attempt: int = 0
    max_attempts: int = 0
    queued_at: datetime | None = None
    due_at: datetime | None = None
    started_at: datetime | None = None
    worker: str | None = None
    last_alive_at: datetime | None = None
    last_failure: str | None = None

    def describe(self) -> str:
        """One line: the job and its state, with the times that matter."""
        facts = [f"attempt {self.attempt} of {self.max_attempts}"] if self.attempt else []
        if self.due_at is not None:
            facts.append(f"due at {_clock(self.due_at)}")
        elif self.queued_at is not None and self.state == PendingState.QUEUED:
            facts.append(f"queued since {_clock(self.queued_at)}")
        if self.worker is not None and self.state in HELD:
            facts.append(f"on {self.worker} since {_clock(self.started_at)}")
            facts.append(f"last alive {_clock(self.last_alive_at)}")
        if self.last_failure:
            facts.append(f"last failure {self.last_failure}")
        return f"{self.job_id} {self.state}" + (f" ({', '.join(facts)})" if facts else "")


def _clock(moment: datetime | None) -> str:
    return f"{moment:%H:%M:%S} UTC" if moment is not None else "?"
