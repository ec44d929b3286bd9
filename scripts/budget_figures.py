"""The budget benchmark's figures: what each provider received, against the library's minimum.

Measured at the provider (`LocalProviders.requests`): a request counts when it arrives,
whatever the answer. The minimum is what the service must ask for a generated library
kicked by title and artist, in which every artist is matched on Discogs:

- MusicBrainz: per album one release-group search and one lookup; per artist one lookup.
- Cover Art Archive: one listing per album.
- Discogs: per artist its lookup and its masters (where the genres are), plus a search
  first when MusicBrainz does not link the Discogs id.
- Images: each cover and each artist's primary photo, once.
"""

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItem, parse

from service.demo.catalogue import Catalogue
from service.demo.providers import RecordedRequest
from service.models import JobStatus, JobType, LogEntry
from service.queries import latest_attempts

REFUSED = frozenset({429, 503})
TIMEOUT_ERROR = "JobTimeoutError"
HEADER = (
    f"{'provider':<12} {'limit':>11} {'busy s':>7} {'arrivals':>8} {'peak':>4} {'share':>6} "
    f"{'of max':>6} "
    f"{'503/429':>7} {'req/album':>9} {'minimum':>7} {'over':>7} {'timeouts':>8}"
)


@dataclass(frozen=True)
class Provider:
    """One provider as the benchmark reports it."""

    name: str
    path_prefix: str  # its routes on the local providers
    job_types: tuple[str, ...]  # the jobs whose timeouts are counted on its line


PROVIDERS = (
    Provider("MusicBrainz", "/ws/2/", (JobType.ENRICH_ALBUM, JobType.ENRICH_ARTIST)),
    Provider("Cover Art", "/caa/", ()),
    Provider("Discogs", "/discogs/", (JobType.DISCOGS_ARTIST,)),
    Provider("images", "/images/", (JobType.CACHE_IMAGE,)),
)


def minimum_requests(catalogue: Catalogue) -> dict[str, int]:
    """The fewest requests per provider for the whole catalogue as one library."""
    albums = list(catalogue.albums.values())
    credited = {name for album in albums for name in album.artists}
    artists = [catalogue.artists[name] for name in credited]
    # Each credited artist's Discogs namesake (its match) with a primary photo.
    photos = [d for d in catalogue.discogs_artists.values() if d.name in credited and d.images]
    return {
        "MusicBrainz": 2 * len(albums) + len(artists),
        "Cover Art": len(albums),
        "Discogs": sum(2 if artist.discogs_id is not None else 3 for artist in artists),
        "images": sum(1 for album in albums if album.cover) + len(photos),
    }


@dataclass(frozen=True)
class Row:
    """One provider's line of the table."""

    provider: Provider
    budget: str | None  # as given ("4/second"); None: not rate limited
    requests: list[RecordedRequest]
    minimum: int
    albums: int
    timeouts: int

    @property
    def limit(self) -> RateLimitItem | None:
        """The budget, parsed."""
        return parse(self.budget) if self.budget is not None else None

    @property
    def busy_seconds(self) -> float:
        """From the first request the provider received to the last."""
        times = [request.at for request in self.requests]
        return max(times) - min(times) if times else 0.0

    @property
    def share(self) -> float | None:
        """Arrivals over limit × busy period (above 1 when a window's burst fits in it)."""
        limit = self.limit
        if limit is None or self.busy_seconds <= 0:
            return None
        rate = limit.amount / limit.get_expiry()
        return len(self.requests) / (rate * self.busy_seconds)

    @property
    def of_max(self) -> float | None:
        """Arrivals over the most a moving window admits from the first arrival to the last."""
        limit = self.limit
        if limit is None or not self.requests:
            return None
        windows = math.floor(self.busy_seconds / limit.get_expiry()) + 1
        return len(self.requests) / (limit.amount * windows)

    @property
    def peak(self) -> int | None:
        """The most arrivals in any one window of the limit's length (over its amount: refused)."""
        limit = self.limit
        if limit is None:
            return None
        times = sorted(request.at for request in self.requests)
        first, most = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= limit.get_expiry():
                first += 1
            most = max(most, last - first + 1)
        return most

    @property
    def refused(self) -> int:
        """Requests answered 503 or 429 (over the provider's rate)."""
        return sum(1 for request in self.requests if request.status in REFUSED)

    @property
    def unexplained(self) -> int:
        """Requests over the minimum that were not refused."""
        # E.g. a job retried after its lookup was refused three times searches again.
        return len(self.requests) - self.minimum - self.refused

    def line(self) -> str:
        """The row, aligned under HEADER."""
        per_album, least = len(self.requests) / self.albums, self.minimum / self.albums
        over = (len(self.requests) - self.minimum) / self.minimum if self.minimum else 0.0
        return (
            f"{self.provider.name:<12} {self.budget or '—':>11} "
            f"{self.busy_seconds:>7.1f} {len(self.requests):>8} {_or_dash(self.peak):>4} "
            f"{_percent(self.share):>6} "
            f"{_percent(self.of_max):>6} {self.refused:>7} {per_album:>9.2f} {least:>7.2f} "
            f"{over:>+7.1%} {self.timeouts:>8}"
        )


def rows(
    catalogue: Catalogue,
    requests: list[RecordedRequest],
    entries: list[LogEntry],
    budgets: dict[str, str],
) -> list[Row]:
    """The table's rows: one per provider; `budgets` by provider name ("4/second")."""
    minimum, albums = minimum_requests(catalogue), len(catalogue.albums)
    timeouts = Counter(e.job_type for e in entries if _error(e) == TIMEOUT_ERROR)
    return [
        Row(
            provider,
            budgets.get(provider.name),
            [r for r in requests if r.path.startswith(provider.path_prefix)],
            minimum[provider.name],
            albums,
            sum(timeouts[job_type] for job_type in provider.job_types),
        )
        for provider in PROVIDERS
    ]


def unexplained(table: list[Row]) -> str:
    """Per provider, requests over the minimum that were not 503/429 answers."""
    counts = ", ".join(f"{row.provider.name} {row.unexplained}" for row in table)
    return f"over the minimum and not 503/429: {counts}"


def downloads(requests: list[RecordedRequest], prefix: str, label: str) -> str:
    """How many times each image under `/images/<prefix>` was downloaded."""
    per_file = Counter(r.path for r in requests if r.path.startswith(f"/images/{prefix}"))
    times = Counter(per_file.values())
    spread = ", ".join(f"{files} × {n}" for n, files in sorted(times.items()))
    return f"{label}: {len(per_file)} files, downloaded (files × times) {spread or '—'}"


def other_statuses(requests: list[RecordedRequest]) -> str | None:
    """Answers other than 200 and 503/429, by route and status; None when there were none."""
    odd = Counter(
        (r.path.split("/")[1], r.status)
        for r in requests
        if r.status != 200 and r.status not in REFUSED
    )
    if not odd:
        return None
    return ", ".join(f"/{route} {status}: {n}" for (route, status), n in sorted(odd.items()))


def jobs_summary(entries: Iterable[LogEntry], max_attempts: int) -> list[str]:
    """Jobs by type and outcome, retried attempts and errors, from the family's log."""
    entries = list(entries)
    latest = latest_attempts(entries).values()
    by_type = Counter(str(e.job_type) for e in latest)
    outcomes = Counter(str(e.status) for e in latest)
    errors = Counter(_error(e) for e in entries if e.error is not None)
    retried = sum(1 for e in entries if e.attempt > 1)
    failed = sum(1 for e in latest if e.status == JobStatus.FAILED and e.attempt >= max_attempts)
    return [
        "jobs: " + ", ".join(f"{job_type} {n}" for job_type, n in sorted(by_type.items())),
        "outcomes: " + ", ".join(f"{status} {n}" for status, n in sorted(outcomes.items())),
        f"attempts after the first: {retried}; failed for good: {failed}; errors: "
        + (", ".join(f"{kind} {n}" for kind, n in sorted(errors.items())) or "none"),
    ]


def _error(entry: LogEntry) -> str | None:
    return entry.error.type if entry.error is not None else None


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"


def _or_dash(value: int | None) -> str:
    return str(value) if value is not None else "—"
