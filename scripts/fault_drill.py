"""Fault drills against real `enrichment worker` processes with default settings.

    uv run python -m scripts.fault_drill                 # every drill (about 4 minutes)
    uv run python -m scripts.fault_drill --drill kill    # one of: kill backlog redis poison

Everything runs on loopback: a private embedded store, a redis-server of its own (AOF, on a
spare port: the shared Redis is never touched), the local provider look-alikes. Only URLs,
the Discogs token and names differ from the defaults (lease 30 s, 3 attempts, ...). Per
drill it prints jobs kicked, terminal, lost, executed twice and the time to recovery. It
asserts nothing.
"""

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from scripts.lab import (
    free_port,
    kill,
    start_redis,
    start_store,
    start_worker,
    stop,
    wait_listening,
)
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.models import JobStatus, LogEntry
from service.queries import latest_attempts
from service.store import DEAD_LETTERS, LOGS, make_sync_client

TOKEN = "fault-drill-token"


@dataclass
class Figures:
    """What one drill measured."""

    drill: str
    kicked: int = 0
    terminal: int = 0
    lost: int = 0
    twice: int = 0
    recovery: float | None = None
    note: str = ""

    def line(self) -> str:
        """One row of the summary."""
        recovery = f"{self.recovery:.1f}" if self.recovery is not None else "—"
        return (
            f"{self.drill:<8} {self.kicked:>6} {self.terminal:>8} {self.lost:>4} "
            f"{self.twice:>5} {recovery:>10}  {self.note}"
        )


class Lab:
    """The drill's own store, Redis and providers, and its worker processes."""

    def __init__(self, root: Path, providers: LocalProviders) -> None:
        self.root = root
        self.redis_port, self.store_port = free_port(), free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.env = {
            "MONGODB_URL": f"mongodb://127.0.0.1:{self.store_port}/?directConnection=true",
            "MONGODB_DB": f"drill_{uuid.uuid4().hex[:8]}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ENRICHMENT_QUEUE": f"drill-{uuid.uuid4().hex[:8]}",
            "ENRICHMENT_DATA_DIR": str(root),
            "MUSICBRAINZ_BASE_URL": providers.musicbrainz_url,
            "COVERART_BASE_URL": providers.coverart_url,
            "DISCOGS_BASE_URL": providers.discogs_url,
            "DISCOGS_TOKEN": TOKEN,
            "IMAGE_FETCH_ALLOWED_HOSTS": "127.0.0.1",
            # The drills count executions of repeated albums: every family must really run.
            "ENRICH_FRESH_DAYS": "0",
        }
        self.settings = Settings.model_validate(self.env)

    def start_redis(self) -> None:
        """The drill's own redis-server (AOF, fsync every second)."""
        self.redis = start_redis(self.root, self.redis_port)

    def stop_redis(self) -> None:
        """SIGTERM the drill's Redis (it flushes its AOF) and wait for it."""
        assert self.redis is not None
        self.redis.terminate()
        self.redis.wait(30)

    def worker(self, name: str, max_async_tasks: int = 20) -> subprocess.Popen[bytes]:
        """One `enrichment worker --workers 1` process group."""
        return start_worker(self.env, self.root / f"{name}.log", 1, max_async_tasks)

    def listening(self, name: str, seconds: float = 60) -> None:
        """Until the worker `name` says it listens."""
        wait_listening(self.root / f"{name}.log", 1, seconds)

    def entries(self) -> list[LogEntry]:
        """Every log entry of the drill."""
        with make_sync_client(self.env["MONGODB_URL"]) as client:
            found = client[self.env["MONGODB_DB"]][LOGS].find({})
            return [LogEntry.model_validate(doc) for doc in found]

    def dead_letters(self) -> int:
        """How many dead letters were recorded."""
        with make_sync_client(self.env["MONGODB_URL"]) as client:
            return client[self.env["MONGODB_DB"]][DEAD_LETTERS].count_documents({})


@contextmanager
def lab() -> Iterator[tuple[Lab, LocalProviders]]:
    """A fresh lab: store and Redis up, providers serving; everything stopped after."""
    with LocalProviders(musicbrainz_rate_per_second=2, discogs_token=TOKEN) as providers:
        root = Path(tempfile.mkdtemp(prefix="fault-drill-"))
        place = Lab(root, providers)
        store = start_store(root, place.store_port)
        place.start_redis()
        try:
            yield place, providers
        finally:
            store.terminate()
            store.wait(30)
            if place.redis is not None and place.redis.poll() is None:
                place.stop_redis()


def count(figures: Figures, entries: list[LogEntry], max_attempts: int) -> Figures:
    """Terminal, lost and twice-executed jobs, from the log."""
    latest = latest_attempts(entries)
    finished = Counter(
        e.job_id for e in entries if e.status in (JobStatus.SUCCESS, JobStatus.SKIPPED)
    )
    figures.terminal = sum(1 for e in latest.values() if e.is_terminal(max_attempts))
    figures.lost = len(latest) - figures.terminal
    figures.twice = sum(1 for n in finished.values() if n > 1)
    return figures


async def wait_all(client: EnrichmentClient, roots: list[str], seconds: float) -> None:
    """Wait for every family; a family that does not finish counts as lost, not as an error."""
    deadline = time.monotonic() + seconds
    for root in roots:
        try:
            await client.wait_for_root(root, timeout=max(deadline - time.monotonic(), 1))
        except TimeoutError as exc:
            print(f"  not finished: {exc}")


async def drill_kill() -> Figures:
    """kill -9 a worker mid-job; a second worker takes over when the lease lapses."""
    with lab() as (place, providers):
        figures = Figures("kill -9")
        providers.stall("/ws/2/artist/", 600)
        first = place.worker("first")
        place.listening("first")
        async with EnrichmentClient(place.settings) as client:
            roots = [await client.kick_artist(mbid=a.mbid) for a in list(ARTISTS.values())[:4]]
            figures.kicked = len(roots)
            for _ in range(600):  # until the first job holds a worker slot
                if any(e.status == JobStatus.RUNNING for e in place.entries()):
                    break
                await asyncio.sleep(0.2)
            await asyncio.to_thread(kill, first)
            killed = time.time()
            providers.stall("/ws/2/artist/", 0)
            second = place.worker("second")
            await wait_all(client, roots, 300)
            stop(second)
        entries = place.entries()
        reruns = [e.started_at.timestamp() for e in entries if e.attempt > 1 and e.started_at]
        figures.recovery = min(reruns) - killed if reruns else None
        lost = sum(1 for e in entries if e.error is not None and e.error.type == "WorkerLostError")
        figures.note = f"{lost} attempts recorded as WorkerLostError"
        return count(figures, entries, place.settings.job_max_attempts)


async def drill_backlog() -> Figures:
    """A backlog 25 times a worker's concurrency behind a slow Discogs, waiting past a lease."""
    with lab() as (place, providers):
        figures = Figures("backlog")
        providers.stall("/discogs/artists/", 1.5)
        worker = place.worker("worker", max_async_tasks=2)
        place.listening("worker")
        started = time.time()
        async with EnrichmentClient(place.settings) as client:
            payload = {"name": "Vela Nord", "discogsId": 402117}
            roots = [
                await client.kick("discogs_artist", {**payload, "artistMbid": f"mbid-{i}"})
                for i in range(50)
            ]
            figures.kicked = len(roots)
            await wait_all(client, roots, 600)
        stop(worker)
        requests = [r for r in providers.discogs_requests() if "/artists/" in r.path]
        figures.recovery = time.time() - started
        figures.note = f"{len(requests)} Discogs artist requests for {len(roots)} jobs (run time)"
        return count(figures, place.entries(), place.settings.job_max_attempts)


async def drill_redis() -> Figures:
    """Redis restarted for 5 s in the middle of a run."""
    with lab() as (place, _providers):
        figures = Figures("redis")
        worker = place.worker("worker")
        place.listening("worker")
        async with EnrichmentClient(place.settings) as client:
            titles = ["Tidal Glass", "Northern Drift", "Paper Harbors"]
            roots = [await client.kick_album(mbid=ALBUMS[title].mbid) for title in titles]
            figures.kicked = len(roots)
            await asyncio.sleep(1.0)
            place.stop_redis()
            await asyncio.sleep(5)
            place.start_redis()
            back = time.time()
            await wait_all(client, roots, 300)
        stop(worker)
        entries = place.entries()
        latest = latest_attempts(entries).values()
        failed = sum(1 for e in latest if e.status == JobStatus.FAILED)
        after = [e.finished_at.timestamp() for e in entries if e.finished_at]
        figures.recovery = max(after) - back if after else None
        figures.note = f"{failed} jobs failed for good (recovery: until the last job ended)"
        return count(figures, entries, place.settings.job_max_attempts)


async def drill_poison() -> Figures:
    """Every poison kind, then a good job behind them."""
    with lab() as (place, _providers):
        figures = Figures("poison")
        worker = place.worker("worker")
        place.listening("worker")
        queue = place.env["ENRICHMENT_QUEUE"]
        redis = Redis.from_url(place.env["REDIS_URL"])
        bad_label = '{"task_id":"p3","task_name":"enrich_artist","labels":{"attempt":"x"},'
        entries: list[dict[Any, Any]] = [
            {b"nothing": b"here"},
            {b"data": b"\xff not json"},
            {b"data": b'{"task_id":"p1","task_name":"nope","labels":{},"args":[],"kwargs":{}}'},
            {b"data": b'{"task_id":"p2","task_name":"enrich_artist","labels":{},"args":[],'
                      b'"kwargs":{}}'},
            {b"data": bad_label.encode() + b'"args":[],"kwargs":{"job":{"name":"x"}}}'},
            {b"data": b'{"task_id":"p4","task_name":"enrich_artist","labels":{},"args":[],'
                      b'"kwargs":{"job":{"name":"Caf\\udce9"}}}'},
        ]  # fmt: skip
        for fields in entries:
            await redis.xadd(queue, fields)
        started = time.time()
        async with EnrichmentClient(place.settings) as client:
            good = await client.kick_artist(name="Mira Kestrel")
            await wait_all(client, [good], 120)
        figures.recovery = time.time() - started
        pending = (await redis.xpending(queue, queue))["pending"]
        await redis.aclose()
        stop(worker)
        recorded = place.dead_letters() + sum(
            1 for e in place.entries() if e.job_id in ("p1", "p2", "p3", "p4")
        )
        figures.kicked = len(entries) + 1
        figures.note = f"{recorded} of {len(entries)} recorded once, {pending} left pending"
        return count(figures, place.entries(), place.settings.job_max_attempts)


DRILLS = {
    "kill": drill_kill,
    "backlog": drill_backlog,
    "redis": drill_redis,
    "poison": drill_poison,
}


async def main(names: list[str]) -> None:
    """Run the drills one after another and print the table."""
    results = []
    for name in names:
        print(f"drill {name} …", flush=True)
        results.append(await DRILLS[name]())
        print("  " + results[-1].line(), flush=True)
    print(
        f"\n{'drill':<8} {'kicked':>6} {'terminal':>8} {'lost':>4} {'twice':>5} {'recovery s':>10}"
    )
    for figures in results:
        print(figures.line())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drill", choices=list(DRILLS), action="append")
    args = parser.parse_args()
    asyncio.run(main(args.drill or list(DRILLS)))
