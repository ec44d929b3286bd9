"""What a processor is: the `JobRun` it fills, the `JobSpec` that declares it, the registry.

A processor is a plain async function `(payload, run, providers) -> None`. It never kicks a
task or writes a log: it fills its `JobRun` and the runner (`service.runner`) does the rest.
Every processor is declared once, by one `JobSpec` line in `service.registry`.
"""

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from service.models import JobStatus
from service.models.base import CamelModel
from service.models.jobs import JobPayload
from service.models.logs import ReliedOn
from service.providers.ratelimit import RateLimit
from service.resources import Providers


@dataclass
class Spawn:
    """A child job a processor asks for."""

    job_type: str
    payload: JobPayload


@dataclass
class JobRun[D: CamelModel]:
    """What a processor reports while it runs; kept even when it fails."""

    job_id: str
    attempt: int
    job_type: str
    entity_type: str
    details: D
    entity_id: str | None = None
    entity_name: str | None = None
    status: JobStatus = JobStatus.SUCCESS
    fields_enriched: list[str] = field(default_factory=list)
    spawns: list[Spawn] = field(default_factory=list)
    spawned_job_ids: list[str] = field(default_factory=list)
    # Set by the runner when the entity was fresh and the processor did not run.
    relied_on: ReliedOn | None = None

    def spawn(self, job_type: str, payload: JobPayload) -> None:
        """Ask for a child job; it is kicked once this job has succeeded."""
        self.spawns.append(Spawn(job_type, payload))


type Processor[P: JobPayload, D: CamelModel] = Callable[[P, JobRun[D], Providers], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec[P: JobPayload, D: CamelModel]:
    """One processor and everything around it: a task is registered per spec.

    mypy checks `processor` against `payload_model` and `details_model`: a processor that
    takes another payload or fills other details does not type-check.
    """

    job_type: str
    entity_type: str
    payload_model: type[P]
    details_model: type[D]
    processor: Processor[P, D]
    # The shared provider budgets the processor spends; each names its own setting.
    rate_limits: tuple[RateLimit, ...] = ()
    # Whether an answer is remembered (ENRICH_FRESH_DAYS): not for a fan-out such as a
    # library run, whose children each remember their own.
    remembers: bool = True

    @property
    def lane(self) -> str | None:
        """The provider budget its jobs queue behind (None: they spend none)."""
        return self.rate_limits[0].key if self.rate_limits else None


# A spec once in a registry, its payload and details types no longer known statically.
type AnySpec = JobSpec[Any, Any]


class JobRegistry:
    """Every job type the service runs, by name: the tasks, choices and lookups derive from it."""

    def __init__(self, specs: Iterable[AnySpec] = ()) -> None:
        self._specs: dict[str, AnySpec] = {}
        for spec in specs:
            self.register(spec)

    def register[P: JobPayload, D: CamelModel](self, spec: JobSpec[P, D]) -> JobSpec[P, D]:
        """Add a spec; a job type can be registered once."""
        if spec.job_type in self._specs:
            raise ValueError(f"job type {spec.job_type!r} is already registered")
        self._specs[spec.job_type] = spec
        return spec

    def unregister(self, job_type: str) -> None:
        """Remove a job type (tests that register their own processors clean up with this)."""
        del self._specs[job_type]

    def get(self, job_type: str) -> AnySpec | None:
        """The spec of `job_type`, or None."""
        return self._specs.get(job_type)

    def __getitem__(self, job_type: str) -> AnySpec:
        return self._specs[job_type]

    def __iter__(self) -> Iterator[AnySpec]:
        return iter(list(self._specs.values()))

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._specs

    @property
    def job_types(self) -> list[str]:
        """Every registered job type, in registration order."""
        return list(self._specs)

    @property
    def lanes(self) -> dict[str, str]:
        """The lane of every job type that queues behind a provider budget."""
        return {spec.job_type: spec.lane for spec in self if spec.lane is not None}

    @property
    def rate_limits(self) -> list[RateLimit]:
        """Every provider budget some processor spends, each once."""
        return list(dict.fromkeys(limit for spec in self for limit in spec.rate_limits))
