"""`EnrichmentLog`: one document per processor attempt, flat-linked to its root job."""

import re
import unicodedata
from contextlib import suppress
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from beanie import Document
from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializeAsAny,
    ValidationError,
    computed_field,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pymongo import ASCENDING, DESCENDING, IndexModel

from service.models.base import CamelModel


class JobStatus(StrEnum):
    """Where an attempt is: `queued` → `running` → `success` | `failed` | `skipped`."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


UNFINISHED = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class WorkerInfo(CamelModel):
    """Which worker process ran an attempt."""

    host: str
    pid: int


class JobError(CamelModel):
    """Why an attempt failed."""

    type: str
    message: str
    retryable: bool
    # A lost attempt (WorkerLostError): the worker that held it and when it was last alive.
    lost_worker: WorkerInfo | None = None
    last_alive_at: datetime | None = None


class ReliedOn(CamelModel):
    """A job skipped because its entity was fresh: the enrichment it relied on instead."""

    outcome: Literal["fresh"] = "fresh"
    job_id: str
    enriched_at: datetime


# A name is searchable from the start of each of its first words (an index holds every key).
SEARCH_WORDS = 8
SEARCH_KEY_CHARS = 64
_NOT_WORD = re.compile(r"[^\w]+")


def search_text(text: str) -> str:
    """Text as search compares it: accents folded, case folded, punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_NOT_WORD.sub(" ", bare.casefold()).split())


def search_keys(name: str | None) -> list[str]:
    """The stored keys of a name: the name from each of its first words ("drift" finds it)."""
    words = search_text(name or "").split()[:SEARCH_WORDS]
    return [" ".join(words[i:])[:SEARCH_KEY_CHARS] for i in range(len(words))]


class LogEntry(CamelModel):
    """The fields of one processor attempt, usable without a store connection."""

    # Every field has a default: logs written before lineage existed must still load.
    job_id: str | None = None
    parent_job_id: str | None = None
    is_root_job: bool = False
    job_type: str | None = None
    entity_type: Literal["album", "artist"] | str | None = None
    entity_id: str | None = None
    entity_name: str | None = None
    status: str | None = None
    attempt: int = 1
    # When the attempt was queued (kicked, spawned or scheduled) and, for a retry, when due.
    queued_at: datetime | None = None
    due_at: datetime | None = None
    # When the attempt started; a queued one carries its queue time, so lists sort by it.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    error: JobError | None = None
    fields_enriched: list[str] = []
    spawned_job_ids: list[str] = []
    # A raw dict (legacy, or details that do not fit their model) or the job type's details
    # model: any model fits, so a registered processor's details can never read back as `{}`.
    details: dict[str, Any] | SerializeAsAny[CamelModel] = Field(
        default_factory=dict, union_mode="left_to_right"
    )
    worker: WorkerInfo | None = None
    # A running attempt's last sign of life from its worker (renewed while it runs).
    heartbeat_at: datetime | None = None
    # Skipped because the entity was enriched less than ENRICH_FRESH_DAYS ago: by which job.
    relied_on: ReliedOn | None = None
    # The job's input, validated (what a re-run sends again); unset when over 8 KB (a
    # library's album list) or invalid.
    payload: dict[str, Any] | None = None
    # The job this one re-runs: a child in the same family, or a root starting a new one.
    rerun_of: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _tolerate_legacy(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Load any stored shape: type `details` by jobType; drop fields that cannot fit."""
        data = _typed_details(_legacy_error(data))
        try:
            return handler(data)
        except ValidationError as exc:
            # Logs from before lineage (or from other tools) may hold odd values: a log that
            # shows with a field missing beats a timeline that cannot load at all.
            if not isinstance(data, dict):
                raise
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
            return handler({key: value for key, value in data.items() if key not in bad})

    @computed_field  # type: ignore[prop-decorator]
    @property
    def entity_search(self) -> list[str]:
        """`entitySearch`: the entity's name as search keys, stored beside it (indexed)."""
        return search_keys(self.entity_name)

    def is_terminal(self, max_attempts: int) -> bool:
        """Whether no further attempt of this job will follow this one."""
        if self.status in UNFINISHED:
            return False
        if self.status != JobStatus.FAILED:
            return True
        retryable = self.error is not None and self.error.retryable
        return not retryable or self.attempt >= max_attempts


class EnrichmentLog(Document, LogEntry):
    """One processor attempt. `parentJobId` always names the ROOT job, never an intermediate."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)  # type: ignore[misc]

    class Settings:
        name = "enrichment_logs"
        indexes = [
            IndexModel([("isRootJob", ASCENDING), ("startedAt", DESCENDING)]),
            IndexModel([("parentJobId", ASCENDING), ("startedAt", ASCENDING)]),
            # One document per attempt. Partial: logs from before lineage carry no `attempt`
            # and may repeat a jobId (or have none), which must not stop the index building.
            IndexModel(
                [("jobId", ASCENDING), ("attempt", ASCENDING)],
                unique=True,
                partialFilterExpression={"attempt": {"$exists": True}},
            ),
            # The lookups by job id (a root's attempts, the latest one, begin/finish of an
            # attempt): MongoDB cannot use the partial index above for `{jobId: X}`, whose
            # filter does not imply `attempt` exists, and would scan the collection.
            IndexModel([("jobId", ASCENDING), ("attempt", DESCENDING)]),
            # Entity search: a prefix of any key (see `search_keys`), one multikey index; an id
            # of any entity type (the index below wants its type first).
            IndexModel([("entitySearch", ASCENDING)]),
            IndexModel([("entityId", ASCENDING)]),
            # The Legacy page's second clause (`legacy: true`), newest first; the first
            # (`isRootJob` missing) is served by the isRootJob index.
            IndexModel(
                [("legacy", ASCENDING), ("startedAt", DESCENDING)],
                partialFilterExpression={"legacy": True},
            ),
            # A job's re-runs (a root's start families of their own): "re-run as" on cards.
            IndexModel([("rerunOf", ASCENDING)]),
            IndexModel(
                [
                    ("entityType", ASCENDING),
                    ("entityId", ASCENDING),
                    ("startedAt", DESCENDING),
                ]
            ),
        ]


def _legacy_error(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        error = {"type": "Error", "message": data["error"], "retryable": False}
        return {**data, "error": error}
    return data


def details_model(job_type: str) -> type[CamelModel] | None:
    """The details model the job registry declares for `job_type`, if any."""
    # Imported when called: the registry imports the processors, which import these models.
    from service.registry import JOBS

    spec = JOBS.get(job_type)
    return spec.details_model if spec is not None else None


def _typed_details(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    details, job_type = data.get("details"), data.get("jobType", data.get("job_type"))
    model = details_model(job_type) if isinstance(job_type, str) else None
    if isinstance(details, dict) and model is not None:
        # A log whose details do not fit its model keeps the raw dict, and still shows.
        with suppress(ValidationError):
            data = {**data, "details": model.model_validate(details)}
    elif details is not None and not isinstance(details, dict | CamelModel):
        data = {**data, "details": {"value": details}}
    return data
