"""How much of each provider's budget real workers use, and what they spend it on.

    uv run python -m scripts.bench_budget                     # 100 albums by 25 artists
    uv run python -m scripts.bench_budget --albums 40 --artists 10 --mb-rate 8/second

Real `enrichment worker` processes (4) work through a generated library (`kick library`,
title and artist per album; artists on several albums each) against the local provider
look-alikes at scaled limits, the workers' limits equal to the providers'. Everything runs
on loopback and starts empty: a private redis-server and embedded store in a temporary
directory, a queue of its own; freshness as configured (ENRICH_FRESH_DAYS, 30 by default).

Per provider it prints, measured at the provider: the limit, the busy period (first request
to last), arrivals, the most arrivals in one window of the limit's length (peak), the budget
share (arrivals / (limit × busy period)) and arrivals against the most a moving window admits
in that period (of max: the two differ when the window is long against the busy period),
the 503/429 answers, requests per album against the library's minimum (`budget_figures`),
and jobs that timed out (JobTimeoutError: budget waits are not part of a job's time limit,
so any is a job that timed out waiting). Then how often each image was downloaded, the
jobs' outcomes and the wall time. It asserts nothing. `--keep` keeps the worker log.
"""

import argparse
import asyncio
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from limits import parse

from scripts import budget_figures as figures
from scripts.lab import free_port, start_redis, start_store, start_worker, stop, wait_listening
from service.client import EnrichmentClient
from service.config import Settings
from service.demo.catalogue import Catalogue
from service.demo.generated import generate_catalogue
from service.demo.providers import LocalProviders
from service.models import LogEntry
from service.models.logs import UNFINISHED
from service.queries import latest_attempts

TOKEN = "bench-budget-token"
POLL_SECONDS = 1.0
# Four worker processes importing everything at once take a while on a busy machine.
STARTUP_SECONDS = 180.0


@dataclass(frozen=True)
class Run:
    """What one run left behind: the family's log and how long it took."""

    entries: list[LogEntry]
    max_attempts: int

    @property
    def seconds(self) -> float | None:
        """From the root's kick to the last job's end (from the log); None if unfinished."""
        latest = latest_attempts(self.entries).values()
        if any(entry.status in UNFINISHED for entry in latest):
            return None
        kicked = [e.queued_at or e.started_at for e in self.entries]
        ends = [e.finished_at for e in self.entries if e.finished_at is not None]
        starts = [at for at in kicked if at is not None]
        return (max(ends) - min(starts)).total_seconds() if ends and starts else None


def bench_env(root: Path, providers: LocalProviders, args: argparse.Namespace) -> dict[str, str]:
    """The workers' and the client's settings: fresh names, local services, the budgets."""
    tag = uuid.uuid4().hex[:8]
    return {
        "ENRICHMENT_QUEUE": f"bench-budget-{tag}",
        "MONGODB_DB": f"bench_budget_{tag}",
        "ENRICHMENT_DATA_DIR": str(root),
        "IMAGE_CACHE_DIR": str(root / "images"),
        "MUSICBRAINZ_BASE_URL": providers.musicbrainz_url,
        "COVERART_BASE_URL": providers.coverart_url,
        "DISCOGS_BASE_URL": providers.discogs_url,
        "DISCOGS_TOKEN": TOKEN,
        "IMAGE_FETCH_ALLOWED_HOSTS": "127.0.0.1",
        "MUSICBRAINZ_RATE_LIMIT": args.mb_rate,
        "DISCOGS_RATE_LIMIT": args.discogs_rate,
    }


@contextmanager
def services(root: Path) -> Iterator[dict[str, str]]:
    """A private Redis and embedded store (the rate-limit windows and pauses are ours alone)."""
    redis_port, store_port = free_port(), free_port()
    with ExitStack() as stack:
        stack.callback(stop, start_redis(root, redis_port), 30)
        stack.callback(stop, start_store(root, store_port, STARTUP_SECONDS), 30)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        yield {
            "REDIS_URL": redis_url,
            "RATE_LIMIT_STORAGE_URL": redis_url,
            "MONGODB_URL": f"mongodb://127.0.0.1:{store_port}/?directConnection=true",
        }


def write_library(catalogue: Catalogue, path: Path) -> Path:
    """The catalogue's albums as a `title,artist` CSV, in the catalogue's order."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["title", "artist"])
        writer.writerows((album.title, album.artists[0]) for album in catalogue.albums.values())
    return path


def kick_library(env: dict[str, str], library: Path) -> str:
    """`enrichment kick library FILE --detach`; the root's job id."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "kick", "library", str(library), "--detach"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.splitlines()[0].strip()


async def follow(settings: Settings, root_id: str, timeout: float) -> list[LogEntry]:
    """Wait until the family has finished (or `timeout`); its log entries."""
    async with EnrichmentClient(settings) as client:
        deadline = time.monotonic() + timeout
        while not (await client.progress(root_id)).finished:
            if time.monotonic() > deadline:
                print(f"the family had not finished after {timeout:g} s", flush=True)
                break
            await asyncio.sleep(POLL_SECONDS)
        return (await client.timeline(root_id)).entries


def run(args: argparse.Namespace, catalogue: Catalogue, root: Path) -> tuple[Run, LocalProviders]:
    """Serve the catalogue, start the workers, kick the library, wait for it; stop everything."""
    musicbrainz, discogs = parse(args.mb_rate), parse(args.discogs_rate)
    local = LocalProviders(
        musicbrainz_rate_per_second=musicbrainz.amount,
        discogs_rate_per_minute=discogs.amount,
        discogs_window_seconds=discogs.get_expiry(),
        discogs_token=TOKEN,
        catalogue=catalogue,
    )
    with local as providers, services(root) as urls:
        env = {**bench_env(root, providers, args), **urls}
        settings = Settings.model_validate(env)
        log = root / "worker.log"
        worker = start_worker(env, log, args.workers)
        try:
            wait_listening(log, args.workers, STARTUP_SECONDS)
            root_id = kick_library(env, write_library(catalogue, root / "library.csv"))
            entries = asyncio.run(follow(settings, root_id, args.timeout))
        finally:
            stop(worker)
    return Run(entries, settings.job_max_attempts), providers


def report(
    args: argparse.Namespace, catalogue: Catalogue, result: Run, local: LocalProviders
) -> None:
    """Print the table and the extra figures."""
    linked = sum(1 for artist in catalogue.artists.values() if artist.discogs_id is not None)
    print(
        f"\n{len(catalogue.albums)} albums by {len(catalogue.artists)} artists ({linked} linked "
        f"to Discogs by MusicBrainz), seed {args.seed}; {args.workers} worker processes; "
        "worker limits = provider limits\n"
    )
    budgets = {"MusicBrainz": args.mb_rate, "Discogs": args.discogs_rate}
    table = figures.rows(catalogue, local.requests, result.entries, budgets)
    print(figures.HEADER)
    for row in table:
        print(row.line())
    print()
    print(figures.unexplained(table))
    print(figures.downloads(local.requests, "photo-", "artist photos"))
    print(figures.downloads(local.requests, "cover-", "covers"))
    if (odd := figures.other_statuses(local.requests)) is not None:
        print(f"other answers: {odd}")
    for line in figures.jobs_summary(result.entries, result.max_attempts):
        print(line)
    seconds = result.seconds
    finished = f"{seconds:.1f} s from the kick to the last job" if seconds else "did not finish"
    print(f"wall time: {finished}")


def rate(text: str) -> str:
    """A `limits` rate such as "4/second" or "10 per 5 seconds", checked."""
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--albums", type=int, default=100)
    parser.add_argument("--artists", type=int, default=25)
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--mb-rate", type=rate, default="4/second", help="per second only")
    parser.add_argument("--discogs-rate", type=rate, default="120/minute")
    parser.add_argument("--seed", type=int, default=0, help="which generated library")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for it")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the store")
    args = parser.parse_args()
    if parse(args.mb_rate).get_expiry() != 1:
        parser.error("--mb-rate: the local MusicBrainz counts one second: give N/second")
    return args


def main() -> None:
    """Generate the library, run it, print the figures."""
    args = parse_args()
    started, load = time.monotonic(), os.getloadavg()[0]
    catalogue = generate_catalogue(args.albums, args.artists, seed=args.seed)
    root = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    try:
        result, local = run(args, catalogue, root)
    finally:
        if args.keep:
            print(f"logs and store kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(args, catalogue, result, local)
    print(f"in all (start-up and shutdown included): {time.monotonic() - started:.1f} s")
    # The workers, the store and the providers share this machine's CPUs with anything else.
    print(
        f"load average (1 min): {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
