"""Serving a worker's metrics on `METRICS_PORT`: taskiq's middleware, plus the queue's state.

`enrichment worker --workers N` runs N processes in one container, and they serve ONE port
between them, as taskiq's `PrometheusMiddleware` intends: each process writes its counters
to files in a directory they share (prometheus_client's multiprocess mode), and the first
process to bind the port serves the sum of them all. One port per container keeps the scrape
configuration one target per container, whatever N is, and a process that restarts keeps
adding to the same totals. The directory must be fresh for each start (old files would be
counted again) and known before any process imports prometheus_client, so `enrichment
worker` makes one and passes it down in `PROMETHEUS_MULTIPROC_DIR`.

The queue's state is not counted by anyone: the serving process reads it from Redis at each
scrape (two round trips), so it is the same whichever worker asks.
"""

import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from taskiq.middlewares.prometheus_middleware import PrometheusMiddleware

from service.config import Settings
from service.errors import ConfigurationError
from service.streams import LeasedStreamBroker, due_key, lane_of

logger = logging.getLogger(__name__)

# A scrape must answer even when Redis does not: it then shows no queue state.
REDIS_TIMEOUT_SECONDS = 2.0
Reply = dict[str, Any]  # one XINFO GROUPS group, or an XPENDING summary


def metrics_environment(settings: Settings) -> dict[str, str]:
    """What a worker group's processes need in their environment to share their metrics."""
    if settings.metrics_port is None:
        return {}
    # Fresh for every start (TMPDIR decides where): counts of a previous run never return.
    return {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="enrichment-metrics-")}


class WorkerMetrics(PrometheusMiddleware):
    """taskiq's Prometheus middleware, whose server also shows the queue's state."""

    def __init__(self, settings: Settings) -> None:
        """Count tasks as taskiq does; serve on `METRICS_PORT` once the worker starts."""
        if settings.metrics_port is None or settings.metrics_dir is None:
            raise ConfigurationError(
                "METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR set before the worker starts: "
                "run workers with `enrichment worker`, which makes one, or set it to an "
                "empty directory"
            )
        super().__init__(metrics_path=settings.metrics_dir, server_port=settings.metrics_port)
        self._dir = settings.metrics_dir
        self._redis_url = settings.redis_url
        self._server: WSGIServer | None = None
        self._redis: Redis | None = None

    def startup(self) -> None:
        """Serve every process's metrics, if no other process of this worker does yet."""
        # As the middleware's own startup, with the queue's state added to what it serves.
        if not self.broker.is_worker_process:
            return
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self._dir))  # type: ignore[no-untyped-call]
        redis = Redis.from_url(
            self._redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        if isinstance(self.broker, LeasedStreamBroker):
            registry.register(QueueCollector(redis, self.broker))
        try:
            self._server, _ = start_http_server(
                self.server_port, self.server_addr, registry=registry
            )
        except OSError as exc:  # the port is taken: another process of this worker serves it
            logger.info("metrics served by another process on port %d (%s)", self.server_port, exc)
            redis.close()
            return
        self._redis = redis
        logger.info("serving metrics on port %d", self.server_port)

    def shutdown(self) -> None:
        """Stop serving (after the runner drained, so its last outcomes were counted)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._redis is not None:
            self._redis.close()


@dataclass(frozen=True)
class LaneState:
    """One lane's stream as its consumer group sees it."""

    lane: str
    waiting: int | None  # not yet delivered (None: Redis cannot tell after deletions)
    held: int  # delivered to a worker, not yet acknowledged
    oldest_age: float  # seconds since the oldest unacknowledged entry was added (0: none)
    retries: int  # retries waiting for their due time


class QueueCollector(Collector):
    """Each lane's depth, held messages, oldest message age and waiting retries, from Redis."""

    def __init__(self, redis: Redis, broker: LeasedStreamBroker) -> None:
        """Read `broker`'s streams through `redis` (a client of the scraping thread's own)."""
        self._redis = redis
        self._queue = broker.queue_name
        self._group = broker.consumer_group_name
        self._streams = list(broker.streams)

    def collect(self) -> Iterable[Metric]:
        """The gauges, read now; none when Redis does not answer."""
        try:
            lanes = self.read()
        except RedisError as exc:
            logger.warning("queue metrics unavailable: Redis: %s", exc)
            return []
        return list(_gauges(lanes))

    def read(self) -> list[LaneState]:
        """Every lane's state: one pipeline for the groups, one for the first unread entries."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for stream in self._streams:
                pipe.xinfo_groups(stream)
                pipe.xpending(stream, self._group)
                pipe.zcard(due_key(stream))
            now, *replies = pipe.execute(raise_on_error=False)
        if isinstance(now, Exception):
            raise now
        now_ms = now[0] * 1000 + now[1] // 1000
        groups = {}
        for index, stream in enumerate(self._streams):
            info, pending, retries = replies[3 * index : 3 * index + 3]
            # A stream (or group) that is gone, e.g. after a Redis restart, has no state yet.
            group = _group(info, self._group)
            if group is not None and not isinstance(pending, Exception):
                groups[stream] = (group, pending, int(retries))
        with self._redis.pipeline(transaction=False) as pipe:
            for stream, (group, _, _) in groups.items():
                pipe.xrange(stream, b"(" + group["last-delivered-id"], "+", count=1)
            unread = pipe.execute()
        return [
            _lane_state(lane_of(self._queue, stream), group, pending, retries, first, now_ms)
            for (stream, (group, pending, retries)), first in zip(
                groups.items(), unread, strict=True
            )
        ]


def _group(info: Any, name: str) -> Reply | None:
    """Our group's entry in an XINFO GROUPS reply (None: the stream or group is gone)."""
    if isinstance(info, Exception):
        return None
    return next((group for group in info if group["name"] == name.encode()), None)


def _lane_state(
    lane: str, group: Reply, pending: Reply, retries: int, first_unread: Any, now_ms: int
) -> LaneState:
    # Entry ids begin with the Redis time (ms) they were added at.
    oldest = [entry_id for entry_id, _ in first_unread]
    if pending["min"] is not None:
        oldest.append(pending["min"])
    born = min((int(entry_id.split(b"-")[0]) for entry_id in oldest), default=now_ms)
    lag = group.get("lag")
    return LaneState(
        lane=lane,
        waiting=int(lag) if lag is not None else None,
        held=int(pending["pending"]),
        oldest_age=max(now_ms - born, 0) / 1000,
        retries=retries,
    )


def _gauges(lanes: list[LaneState]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "enrichment_queue_depth", "Messages waiting in a lane, not yet read", labels=["lane"]
    )
    held = GaugeMetricFamily(
        "enrichment_queue_held",
        "Messages a worker holds (running or about to), not yet acknowledged",
        labels=["lane"],
    )
    oldest = GaugeMetricFamily(
        "enrichment_queue_oldest_age_seconds",
        "Age of a lane's oldest unacknowledged message (waiting or held; 0 when none)",
        labels=["lane"],
    )
    retries = GaugeMetricFamily(
        "enrichment_retries_waiting", "Retries waiting for their due time", labels=["lane"]
    )
    for lane in lanes:
        if lane.waiting is not None:
            depth.add_metric([lane.lane], lane.waiting)
        held.add_metric([lane.lane], lane.held)
        oldest.add_metric([lane.lane], lane.oldest_age)
        retries.add_metric([lane.lane], lane.retries)
    yield from (depth, held, oldest, retries)
