"""Seed R roots × C children in the embedded store and measure the dashboard's data layer.

    uv run python -m scripts.bench_dashboard --roots 200 --children 10
    uv run python -m scripts.bench_dashboard --roots 2500 --children 9 --orphans 5 --repeats 3

Prints the store queries of every view (roots page, timeline, entity search, orphans, legacy,
dead letters; counted by a PyMongo command listener) and the median time of each, over
repeated uncached runs. `--orphans N` deletes N roots first. Asserts nothing.
"""

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import data
from scripts.commands import CommandCounter
from service.config import Settings
from service.embedded_store import ensure_store
from service.executors import SyncExecutor
from service.queries import RootFilters
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=200)
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--orphans", type=int, default=0, help="roots to delete first")
    args = parser.parse_args()
    main(args.roots, args.children, args.repeats, args.orphans)
