"""Seed R roots × C children in the embedded store and measure the dashboard's data layer.

    uv run python -m scripts.bench_dashboard --roots 200 --children 10
    uv run python -m scripts.bench_dashboard --roots 2500 --children 9 --orphans 5 --repeats 3
    uv run python -m scripts.bench_dashboard --library     # 25,000 logs, one 10,000-entry family

Prints the store queries of every view (roots page, timeline, entity search, orphans, legacy,
dead letters; counted by a PyMongo command listener) and the median time of each, over
repeated uncached runs. `--orphans N` deletes N roots first. `--library` seeds a library-size
store of its own (1,500 families of 10 logs and one whole-library run of 10,000 albums,
`scripts.library_store`), adds the big family's views, opens that family's page in
Chromium (seconds until drawn, HTML size, DOM nodes), then measures the roots page and the
family's progress again with one album of the run still queued, as while it runs. Asserts
nothing.
"""

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import data
from scripts.bench_family_queries import log_document
from scripts.chromium_page import dashboard, free_port, open_page
from scripts.commands import CommandCounter
from scripts.library_store import Library, library_store
from service.config import Settings
from service.embedded_store import ensure_store
from service.executors import SyncExecutor
from service.queries import FamilyView, RootFilters
from service.store import LOGS, make_sync_client

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
READS = {"find", "aggregate", "getMore", "distinct", "count"}


def measure(action: Callable[[], Any], counter: CommandCounter, repeats: int) -> tuple[int, float]:
    """Queries per call and median milliseconds, with Streamlit's data cache cleared each time."""
    timings, queries = [], []
    for _ in range(repeats):
        st.cache_data.clear()
        before = counter.count
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
        queries.append(counter.count - before)
    return max(queries), statistics.median(timings)


def render(root: str | None, repeats: int) -> float:
    """Median wall time of a whole script run of the app, uncached."""
    timings = []
    for _ in range(repeats):
        st.cache_data.clear()
        app = AppTest.from_file(str(APP), default_timeout=120)
        if root is not None:
            app.query_params["root"] = root
        started = time.perf_counter()
        app.run()
        timings.append((time.perf_counter() - started) * 1000)
        if app.exception:
            raise RuntimeError(app.exception[0].message)
    return statistics.median(timings)


def main(roots: int, children: int, repeats: int, orphans: int = 0) -> None:
    """Seed a throw-away database, measure, drop it."""
    from scripts.bench_family_queries import seed_documents  # the same realistic families

    counter = CommandCounter(only=READS)
    settings = Settings().model_copy(update={"mongodb_db": f"bench_{uuid.uuid4().hex[:8]}"})
    client = make_sync_client(ensure_store(settings), event_listeners=[counter])
    database = client[settings.mongodb_db]
    data.settings = lambda: settings  # type: ignore[assignment]  # the benchmark's own database
    data.reader = lambda: SyncExecutor(database)  # type: ignore[assignment]
    try:
        documents, root_ids = seed_documents(roots, children)
        started = time.perf_counter()
        for i in range(0, len(documents), 1000):
            database[LOGS].insert_many(documents[i : i + 1000])
        print(f"seeded {len(documents)} logs in {time.perf_counter() - started:.1f}s")
        database[LOGS].delete_many({"jobId": {"$in": root_ids[:orphans]}})
        middle = root_ids[len(root_ids) // 2]
        views: dict[str, Callable[[], Any]] = {
            "entity search (a name's prefix)": lambda: data.entity_roots("entity " + middle[:4]),
            "orphans": data.orphans,
            "legacy (a page)": lambda: data.legacy(0),
            "dead letters (a page)": lambda: data.dead_letters(0),
        }
        for name, view in views.items():
            queries, ms = measure(view, counter, repeats)
            print(f"{name}: {queries} queries, median {ms:.1f} ms")
        filters = RootFilters()
        page_queries, page_ms = measure(lambda: data.roots_page(filters, 0), counter, repeats)
        family_queries, family_ms = measure(lambda: data.family(middle), counter, repeats)
        page = f"roots page ({data.PAGE_SIZE} roots + roll-ups): {page_queries} queries"
        print(f"{page}, median {page_ms:.1f} ms")
        timeline = f"timeline ({children + 1} entries): {family_queries} queries"
        print(f"{timeline}, median {family_ms:.1f} ms")
        page_render = render(None, repeats)
        print(f"roots page rendered (AppTest, 50 expanders): median {page_render:.0f} ms")
        print(f"family page rendered (AppTest, ?root=...): median {render(middle, repeats):.0f} ms")
    finally:
        client.drop_database(settings.mongodb_db)
        client.close()


def library(repeats: int, orphans: int, albums: int) -> None:
    """The library-size case: every view, then the whole-library family in Chromium."""
    counter = CommandCounter(only=READS)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-library-"))
    settings = Settings().model_copy(update={
        "mongodb_db": f"bench_{uuid.uuid4().hex[:8]}", "data_dir": data_dir,
        "embedded_store_port": free_port(),
    })  # fmt: skip
    try:
        with library_store(settings, 1_500, 9, albums, [counter]) as (database, seeded):
            steps = ", ".join(f"{step} {s:.1f} s" for step, s in seeded.seconds.items())
            print(f"seeded {seeded.logs:,} logs: {steps}")
            database[LOGS].delete_many({"jobId": {"$in": seeded.roots[:orphans]}})
            data.settings = lambda: settings  # type: ignore[assignment]  # the benchmark's database
            data.reader = lambda: SyncExecutor(database)  # type: ignore[assignment]
            for name, view in _library_views(seeded, orphans, albums).items():
                queries, ms = measure(view, counter, repeats)
                print(f"{name}: {queries} queries, median {ms:.1f} ms")
            _open_big_family(settings, seeded.library_root, repeats)
            # As it is watched: one album still queued, so no roll-up or progress is kept.
            database[LOGS].insert_one(queued_album(seeded.library_root))
            for name, view in _running_views(seeded).items():
                queries, ms = measure(view, counter, repeats)
                print(f"{name}: {queries} queries, median {ms:.1f} ms")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _library_views(seeded: Library, orphans: int, albums: int) -> dict[str, Callable[[], Any]]:
    big, small = seeded.library_root, seeded.roots[len(seeded.roots) // 2]
    return {
        "roots page (50 roots + roll-ups)": lambda: data.roots_page(RootFilters(), 0),
        "timeline (a family of 10)": lambda: data.family(small),
        "entity search (a name's prefix)": lambda: data.entity_roots("album 0420"),
        f"orphans ({orphans} missing roots)": data.orphans,
        "legacy (a page)": lambda: data.legacy(0),
        "dead letters (a page)": lambda: data.dead_letters(0),
        f"big family: progress ({albums:,} jobs)": lambda: data.family_progress(big),
        "big family: highlights": lambda: data.family_highlights(big),
        f"big family: a page of {data.FAMILY_PAGE_SIZE}": lambda: data.family_entries(
            big, FamilyView(), 0
        ),
    }


def _running_views(seeded: Library) -> dict[str, Callable[[], Any]]:
    big = seeded.library_root
    return {
        "roots page, the library run still running": lambda: data.roots_page(RootFilters(), 0),
        "big family: progress, still running": lambda: data.family_progress(big),
    }


def queued_album(root_id: str) -> dict[str, Any]:
    """An album enrichment of the library run that no worker has finished yet."""
    at = datetime(2026, 7, 1, tzinfo=UTC)
    entry = log_document(uuid.uuid4().hex, root_id, "enrich_album", at)
    return {**entry, "status": "queued", "finishedAt": None, "durationMs": None}


def _open_big_family(settings: Settings, root: str, repeats: int) -> None:
    print(f"big family rendered (AppTest, ?root=...): median {render(root, repeats):.0f} ms")
    store = settings.mongodb_url or settings.embedded_store_url
    with dashboard({"MONGODB_URL": store, "MONGODB_DB": settings.mongodb_db}) as url:
        page = open_page(f"{url}/?root={root}", repeats)
    print(
        f"big family in Chromium: median {page.first_seconds:.2f} s until drawn on a first"
        f" visit, {page.seconds:.2f} s on a return visit ({repeats} of each; the first page"
        f" of a browser just started {page.cold_seconds:.2f} s), "
        f"{page.html_bytes / 1e6:.2f} MB of HTML, {page.nodes:,} elements"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=200)
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--orphans", type=int, default=0, help="roots to delete first")
    parser.add_argument("--library", action="store_true", help="the library-size case")
    parser.add_argument("--albums", type=int, default=10_000, help="the library run's albums")
    args = parser.parse_args()
    if args.library:
        library(args.repeats, args.orphans or 5, args.albums)
    else:
        main(args.roots, args.children, args.repeats, args.orphans)
