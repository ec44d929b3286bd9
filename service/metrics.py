"""The workers' own Prometheus metrics: what taskiq's `PrometheusMiddleware` does not count.

Counted wherever the event happens (the runner, the streams, the provider clients, the rate
limiter), always: a counter costs a lock and an addition. Only a worker with `METRICS_PORT`
serves them (`service.metrics_server`); its processes then write them to files in
`PROMETHEUS_MULTIPROC_DIR`, which prometheus_client chooses when it is imported, so that
variable must be set before the process starts (`enrichment worker` does). The queue's state
is not counted here: it is read from Redis when scraped.
"""

from prometheus_client import Counter, Histogram

# Label values: the general lane, and what a request that got no answer counts as.
GENERAL_LANE = "general"
NO_ANSWER = "error"
# A job takes milliseconds (a fresh answer) to minutes (a slow provider, near its time limit).
ATTEMPT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

JOBS = Counter(
    "enrichment_jobs",
    "Jobs by type and outcome: success, failed or skipped when it ends, "
    "retrying for a failed attempt that will run again",
    ["job_type", "status"],
)
ATTEMPT_SECONDS = Histogram(
    "enrichment_attempt_seconds",
    "How long each attempt ran, from its start to its outcome (budget waits included)",
    ["job_type"],
    buckets=ATTEMPT_BUCKETS,
)
LEASES_RECLAIMED = Counter(
    "enrichment_leases_reclaimed",
    "Messages taken over from a worker that stopped renewing their lease",
    ["lane"],
)
DEAD_LETTERS = Counter(
    "enrichment_dead_letters",
    "Stream entries that could not be jobs, recorded as dead letters",
    ["lane"],
)
PROVIDER_REQUESTS = Counter(
    "enrichment_provider_requests",
    "Requests to provider APIs by HTTP status (each redirect hop; 'error': no answer)",
    ["provider", "status"],
)
BUDGET_WAIT_SECONDS = Counter(
    "enrichment_budget_wait_seconds",
    "Seconds requests waited for a slot of their provider's budget",
    ["provider"],
)
BUDGET_REQUESTS = Counter(
    "enrichment_budget_requests",
    "Requests that took a slot of their provider's budget (the budget used)",
    ["provider"],
)


def provider_label(provider: str) -> str:
    """A provider's name as a label value: 'Cover Art Archive' → 'cover_art_archive'."""
    return "_".join(provider.lower().split())
