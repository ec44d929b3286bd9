"""The `enrichment` command line."""

import argparse
import asyncio
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError
from pymongo.errors import PyMongoError
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from service.client import EnrichmentClient
from service.config import Settings
from service.embedded_store import ensure_store, is_listening, serve_embedded_store
from service.errors import (
    EnrichmentError,
    InvalidRequestError,
    StoreUnavailableError,
)
from service.library import read_library
from service.metrics_server import metrics_environment
from service.models import JobStatus
from service.models.base import utc_now
from service.queries import latest_attempts, unfinished
from service.redaction import protect, redact
from service.registry import JOBS
from service.render import roots_table, timeline_table
from service.store import LOGS, make_sync_client
from service.urls import display_url

console = Console()
# What goes wrong with the input, apart from stdout (whose first line scripts read).
errors = Console(stderr=True)
PROGRESS_SECONDS = 2.0
# Each of `enrichment healthcheck`'s pings gives up after this long (compose allows 20 s).
HEALTHCHECK_TIMEOUT_SECONDS = 3.0
type Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set up logging and run one command; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL at INFO, query string included: signed image URLs and
    # other credentials live there. Our own messages show URLs without their queries.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = _settings()
        protect(*settings.secret_values())
        outcome = args.command(args, settings)
        return asyncio.run(outcome) if asyncio.iscoroutine(outcome) else int(outcome)
    except EnrichmentError as exc:
        _error(str(exc))
        return 1
    except InvalidSettingsError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


class InvalidSettingsError(Exception):
    """The environment's settings do not validate (the message never quotes a value)."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # The settings' errors never quote the values given (hide_input_in_errors).
        raise InvalidSettingsError(f"invalid settings: {exc}") from exc


def _error(message: str) -> None:
    # Messages may quote provider text: printed as text, never as console markup.
    console.print(Text.assemble(("error: ", "red"), message))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enrichment", description=__doc__)
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_service_commands(commands)
    _add_kick_commands(commands.add_parser("kick", help="start a root job, print its job id"))
    _add_read_commands(commands)
    _add_prune_command(commands)
    return parser


def _add_service_commands(commands: Subparsers) -> None:
    demo = commands.add_parser("demo", help="run the offline demo on the embedded defaults")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then keep its local providers and a worker running and serve the dashboard "
        "(needs Redis); Ctrl-C stops them",
    )
    demo.add_argument("--port", type=int, help="with --serve: instead of DASHBOARD_PORT (8501)")
    demo.set_defaults(command=_demo)
    store = commands.add_parser("store", help="serve the embedded store (SQLite-backed)")
    store.add_argument("--port", type=int, help="instead of EMBEDDED_STORE_PORT")
    store.add_argument("--data-dir", type=Path, help="instead of ENRICHMENT_DATA_DIR")
    store.set_defaults(command=_store)
    dashboard = commands.add_parser("dashboard", help="serve the Streamlit dashboard")
    dashboard.add_argument("--port", type=int, help="instead of DASHBOARD_PORT (8501)")
    dashboard.set_defaults(command=_dashboard)
    worker = commands.add_parser("worker", help="run Taskiq workers for the enrichment tasks")
    worker.add_argument("--workers", type=int, default=2, help="worker processes")
    worker.add_argument(
        "--max-async-tasks",
        type=int,
        default=None,
        help="jobs at once, each, shared out between the provider lanes "
        "(default WORKER_MAX_ASYNC_TASKS, 20)",
    )
    worker.set_defaults(command=_worker)
    health = commands.add_parser(
        "healthcheck", help="exit 0 when Redis and the store answer a ping, else 1 saying which"
    )
    health.set_defaults(command=_healthcheck)


def _add_kick_commands(kick: argparse.ArgumentParser) -> None:
    kinds = kick.add_subparsers(required=True, metavar="KIND")
    album = kinds.add_parser("album", help="enrich an album")
    album.add_argument("--mbid", help="MusicBrainz release-group id")
    album.add_argument("--title")
    album.add_argument("--artist")
    album.set_defaults(command=_kick_album)
    artist = kinds.add_parser("artist", help="enrich an artist")
    artist.add_argument("--mbid", help="MusicBrainz artist id")
    artist.add_argument("--name")
    artist.set_defaults(command=_kick_artist)
    library = kinds.add_parser(
        "library",
        help="enrich every album of a CSV (title,artist or mbid) or JSON-lines file as one run",
    )
    library.add_argument("file", type=Path, help="CSV with a header, or .jsonl")
    library.add_argument(
        "--detach", action="store_true", help="print the root's id and return at once"
    )
    library.set_defaults(command=_kick_library)
    for sub in (album, artist):
        sub.add_argument(
            "--wait", type=float, metavar="SECONDS", help="wait for the family, show its timeline"
        )
    for sub in (album, artist, library):
        sub.add_argument(
            "--force",
            action="store_true",
            help="refresh even what was enriched within ENRICH_FRESH_DAYS",
        )


def _add_prune_command(commands: Subparsers) -> None:
    prune = commands.add_parser(
        "prune", help="delete whole families whose last entry is older than a cut-off"
    )
    prune.add_argument(
        "--older-than", type=_age, required=True, metavar="AGE", help="e.g. 90d or 36h"
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.set_defaults(command=_prune)


def _age(text: str) -> timedelta:
    """`90d`, `36h` or `45m` as a duration."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number and d, h or m (90d)")
    return timedelta(**{units[unit]: int(number)})


async def _prune(args: argparse.Namespace, settings: Settings) -> int:
    cutoff = utc_now() - args.older_than
    async with EnrichmentClient(settings) as client:
        report = await client.prune(older_than=cutoff, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    console.print(Text(
        f"{verb} {report.families} families older than {cutoff:%Y-%m-%d %H:%M} UTC: "
        f"{report.entries} log entries, {report.claims} claims; "
        f"kept {report.kept_unfinished} old families with queued or running work"
    ))  # fmt: skip
    return 0


def _add_read_commands(commands: Subparsers) -> None:
    roots = commands.add_parser("roots", help="list root jobs, newest first")
    roots.add_argument("--limit", type=int, default=20)
    roots.add_argument("--status", choices=[str(status) for status in JobStatus])
    # Any stored type may be asked for (old logs hold types no processor has now).
    roots.add_argument("--job-type", help=f"e.g. {', '.join(JOBS.job_types)}")
    roots.set_defaults(command=_roots)
    migrate = commands.add_parser("migrate-legacy", help="tag logs written before lineage")
    migrate.add_argument("--dry-run", action="store_true", help="report, change nothing")
    migrate.add_argument("--batch-size", type=int, default=500)
    migrate.add_argument("--mongodb-url", help="instead of MONGODB_URL / the embedded store")
    migrate.set_defaults(command=_migrate)
    rerun = commands.add_parser(
        "rerun", help="run a failed child, or a whole root, again; print the new job id"
    )
    rerun.add_argument("job_id", metavar="JOB_ID")
    rerun.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait for the re-run, show its timeline"
    )
    rerun.set_defaults(command=_rerun)
    timeline = commands.add_parser("timeline", help="show a root job's family timeline")
    timeline.add_argument("job_id", metavar="JOB_ID")
    timeline.set_defaults(command=_timeline)


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the demo's local servers load only when the demo runs.
    from service.demo.run import run_demo

    # Stopping the demo's in-process worker cancels its listener, which taskiq reports as a
    # warning: expected here, and noise in the demo's output.
    logging.getLogger("taskiq.receiver").setLevel(logging.ERROR)
    if args.serve:
        from service.demo.serve import serve_demo

        return await serve_demo(settings, console, port=args.port or settings.dashboard_port)
    if args.port is not None:
        raise InvalidRequestError("--port is the dashboard's: give it with --serve")
    await run_demo(settings, console)
    return 0


async def _store(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {"embedded_store_port": args.port, "data_dir": args.data_dir}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if settings.mongodb_url:
        console.print("note: MONGODB_URL is set, so the other commands use that server instead.")
    if is_listening(settings.embedded_store_port):
        console.print(f"already serving: {settings.embedded_store_url}")
        return 0

    def ready(url: str) -> None:
        console.print(f"embedded store ({settings.store_path}) at {url}")

    await serve_embedded_store(settings, on_ready=ready)
    return 0


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.command import check_exposure, streamlit_command

    check_exposure(settings)
    ensure_store(settings)  # started once here, shared with workers and the demo
    command = streamlit_command(settings, args.port or settings.dashboard_port, preload=True)
    os.execv(sys.executable, command)  # noqa: S606 - replace this process with Streamlit's


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pymongo.errors import PyMongoError
    from rich.progress import Progress
    from rich.table import Table

    from service.migration import LegacyMigration

    url = args.mongodb_url or ensure_store(settings)
    with make_sync_client(url, serverSelectionTimeoutMS=5000) as client:
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailableError(f"cannot reach the store: {exc}") from exc
        logs = client[settings.mongodb_db][LOGS]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("migrating", total=None)
            migration = LegacyMigration(
                logs,
                batch_size=args.batch_size,
                dry_run=args.dry_run,
                progress=lambda rule, n: progress.update(task, advance=n, description=rule),
            )
            report = migration.run()
    table = Table(
        title="Legacy migration" + (" (dry run: nothing changed)" if args.dry_run else "")
    )
    table.add_column("")
    table.add_column("documents", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row("seen", str(report.seen), "")
    for rule in ("tagged legacy", "tagged root", "tagged child", "startedAt filled"):
        table.add_row(rule, str(report.changed[rule]), f"{report.seconds[rule]:.1f}")
    table.add_row("unchanged", str(report.unchanged), "")
    rule = "families recorded"  # `job_families` records, not log documents
    table.add_row(rule + " (records)", str(report.changed[rule]), f"{report.seconds[rule]:.1f}")
    if not args.dry_run:
        table.add_row("indexes ensured", "", f"{report.seconds['indexes']:.1f}")
    table.caption = f"{report.round_trips} store round trips"
    console.print(table)
    if not args.dry_run and not sum(report.changed.values()):
        console.print("0 documents changed: the collection is up to date.")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    ensure_store(settings)  # start it once here rather than racing from every worker process
    slots = args.max_async_tasks or settings.worker_max_async_tasks
    command = [
        sys.executable,
        "-m",
        "taskiq",
        "worker",
        "service.worker:broker",
        "--workers",
        str(args.workers),
        "--max-async-tasks",
        str(slots),
        # Our shutdown handler gives running jobs SHUTDOWN_GRACE_SECONDS, then cancels and logs
        # the rest: taskiq must not wait on its own, and must leave the handler time to finish.
        "--wait-tasks-timeout",
        "0",
        "--shutdown-timeout",
        str(settings.shutdown_grace_seconds + settings.log_write_timeout_seconds + 5),
    ]
    # The brokers share the same slots out between their lanes: they read the setting.
    environment = {
        **os.environ,
        "WORKER_MAX_ASYNC_TASKS": str(slots),
        **metrics_environment(settings),
    }
    os.execve(sys.executable, command, environment)  # noqa: S606 - become taskiq's worker


def _healthcheck(args: argparse.Namespace, settings: Settings) -> int:
    # The store the worker uses, never started here: a check that started the embedded store
    # would vouch for a store it had just made.
    store_url = settings.mongodb_url or settings.embedded_store_url
    failures = [
        reason
        for reason in (_ping_redis(settings.redis_url), _ping_store(store_url))
        if reason is not None
    ]
    where = f"Redis at {display_url(settings.redis_url)}, the store at {display_url(store_url)}"
    line = f"unhealthy: {'; '.join(failures)}" if failures else f"ok: {where}"
    # One plain line (Docker keeps it in the container's health log): rich would wrap it.
    print(redact(line))
    return 1 if failures else 0


def _ping_redis(url: str) -> str | None:
    """Why Redis at `url` did not answer a PING, or None when it did."""
    timeout = HEALTHCHECK_TIMEOUT_SECONDS
    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with client:
            client.ping()
    except (RedisError, OSError, ValueError) as exc:
        return f"cannot reach Redis at {display_url(url)}: {exc}"
    return None


def _ping_store(url: str) -> str | None:
    """Why the store at `url` did not answer a ping, or None when it did."""
    timeout_ms = int(HEALTHCHECK_TIMEOUT_SECONDS * 1000)
    try:
        with make_sync_client(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        ) as client:
            client.admin.command("ping")
    except PyMongoError as exc:
        # A server-selection timeout goes on to describe the whole topology: the first clause
        # says why.
        reason = str(exc).partition(" (configured timeouts")[0].partition(", Timeout:")[0]
        return f"cannot reach the store at {display_url(url)}: {reason}"
    return None


async def _kick_album(args: argparse.Namespace, settings: Settings) -> int:
    async with EnrichmentClient(settings) as client:
        job_id = await client.kick_album(
            mbid=args.mbid, title=args.title, artist=args.artist, force=args.force
        )
        return await _report(client, job_id, args.wait)


async def _kick_artist(args: argparse.Namespace, settings: Settings) -> int:
    async with EnrichmentClient(settings) as client:
        job_id = await client.kick_artist(mbid=args.mbid, name=args.name, force=args.force)
        return await _report(client, job_id, args.wait)


async def _kick_library(args: argparse.Namespace, settings: Settings) -> int:
    try:
        library = read_library(args.file)
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {args.file}: {exc.strerror}") from exc
    for number, why in library.bad_rows:
        errors.print(Text(f"line {number}: {why} (not kicked)", style="yellow"))
    if not library.albums:
        raise InvalidRequestError(f"{args.file}: no album to kick")
    async with EnrichmentClient(settings) as client:
        started = time.monotonic()
        job_id = await client.kick_library(library.albums, source=library.source, force=args.force)
        print(job_id)
        took = time.monotonic() - started
        console.print(Text(f"kicked {len(library.albums)} albums as one run in {took:.2f} s"))
        if args.detach:
            return 0
        console.print("Ctrl-C detaches: the run goes on (`enrichment timeline` shows it).")
        return await _follow(client, job_id)


async def _follow(client: EnrichmentClient, job_id: str) -> int:
    """A progress bar over the family until it finishes; 1 when any job failed."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),  # from the pace measured so far: the providers' budget
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("starting", total=None)
        while True:
            progress = await client.progress(job_id)
            done = progress.total - progress.remaining
            bar.update(task, total=progress.total or None, completed=done, description=(
                f"done {progress.count(JobStatus.SUCCESS)} · failed "
                f"{progress.count(JobStatus.FAILED)} · skipped {progress.count(JobStatus.SKIPPED)}"
                f" · remaining {progress.remaining}"
            ))  # fmt: skip
            if progress.finished:
                break
            await asyncio.sleep(PROGRESS_SECONDS)
    return 1 if progress.count(JobStatus.FAILED) else 0


async def _report(
    client: EnrichmentClient, job_id: str, wait: float | None, *, root_id: str | None = None
) -> int:
    print(job_id)
    if wait is None:
        return 0
    family = await client.wait_for_root(root_id or job_id, wait)
    console.print(timeline_table(family))
    # A failure since re-run is the re-run's story: it counts if the re-run failed too.
    superseded = {entry.rerun_of for entry in family.entries if entry.rerun_of}
    failed = [
        e
        for e in latest_attempts(family.entries).values()
        if e.status == JobStatus.FAILED and e.job_id not in superseded
    ]
    if failed:
        # Scripts chain on the exit status: a family with a job that failed for good is a failure.
        _error(
            f"{len(failed)} job(s) of the family failed: "
            + ", ".join(f"{entry.job_type} {entry.job_id}" for entry in failed)
        )
        return 1
    return 0


async def _rerun(args: argparse.Namespace, settings: Settings) -> int:
    async with EnrichmentClient(settings) as client:
        job_id = await client.rerun(args.job_id)
        queued = await client.job(job_id)
        # A child's re-run is followed with its family (its own children hang off the root).
        root_id = queued.parent_job_id if queued is not None else None
        return await _report(client, job_id, args.wait, root_id=root_id)


async def _roots(args: argparse.Namespace, settings: Settings) -> int:
    async with EnrichmentClient(settings) as client:
        found = await client.roots(limit=args.limit, status=args.status, job_type=args.job_type)
    console.print(roots_table(found))
    return 0


async def _timeline(args: argparse.Namespace, settings: Settings) -> int:
    async with EnrichmentClient(settings) as client:
        timeline = await client.timeline(args.job_id)
    console.print(timeline_table(timeline))
    for job in unfinished(
        args.job_id,
        timeline.entries,
        max_attempts=settings.job_max_attempts,
        lease_seconds=settings.job_lease_seconds,
        now=utc_now(),
    ):
        console.print(f"unfinished: {job.describe()}", markup=False, highlight=False)
    return 0 if timeline.entries else 1


if __name__ == "__main__":
    sys.exit(main())
