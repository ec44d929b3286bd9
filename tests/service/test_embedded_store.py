"""The embedded store's engine: writes and reads find their documents by key and by index."""

import inspect
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from mongoeco import MongoClient
from mongoeco.core.codec import DocumentCodec
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.errors import DuplicateKeyError

from service.embedded_engine import EmbeddedEngine


@pytest.fixture
def collection(tmp_path: Path) -> Iterator[Any]:
    """A collection of 50 documents on the engine `enrichment store` serves (in-process)."""
    client = MongoClient(engine=EmbeddedEngine(str(tmp_path / "store.sqlite")))
    logs = client["test"]["logs"]
    # As `enrichment_logs`: one document per (jobId, attempt).
    partial = {"attempt": {"$exists": True}}
    logs.create_index(
        [("jobId", 1), ("attempt", 1)], unique=True, partial_filter_expression=partial
    )
    logs.insert_many([{"jobId": f"job-{i}", "attempt": 1} for i in range(50)])
    yield logs
    client.close()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the engine's whole-collection reads (what made each write cost O(collection))."""
    calls: list[int] = []
    whole_collection = SQLiteEngine._load_documents

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return whole_collection(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteEngine, "_load_documents", counted)
    return calls


def test_a_write_reads_no_other_document(collection: Any, decoded: list[int]) -> None:
    collection.insert_one({"jobId": "new", "attempt": 1})
    collection.replace_one({"jobId": "job-3"}, {"jobId": "job-3", "attempt": 2}, upsert=True)
    collection.replace_one({"jobId": "gone"}, {"jobId": "gone", "attempt": 1}, upsert=True)
    assert decoded == []
    assert collection.count_documents({}) == 52


def test_a_repeated_job_attempt_is_still_refused(collection: Any, decoded: list[int]) -> None:
    with pytest.raises(DuplicateKeyError, match="jobId"):
        collection.insert_one({"jobId": "job-7", "attempt": 1})
    collection.insert_one({"jobId": "job-7", "attempt": 2})  # the next attempt is another
    collection.update_one({"jobId": "job-8", "attempt": 1}, {"$set": {"attempt": 2}})
    with pytest.raises(DuplicateKeyError):  # an update may not move onto another's key
        collection.update_one({"jobId": "job-7", "attempt": 2}, {"$set": {"jobId": "job-8"}})
    collection.replace_one({"jobId": "job-9"}, {"jobId": "job-9", "attempt": 1, "ok": True})
    assert collection.count_documents({"jobId": "job-9", "ok": True}) == 1
    assert decoded == []


def test_duplicate_ids_are_still_refused(collection: Any) -> None:
    same = ObjectId()
    collection.insert_one({"_id": same})
    collection.insert_one({"_id": "text"})
    collection.insert_one({"_id": 1})
    for twin in (same, "text", 1.0):  # 1 and 1.0 are one id: numbers are still scanned for
        with pytest.raises(DuplicateKeyError):
            collection.insert_one({"_id": twin})


def test_a_documents_multikey_entries_are_found_by_its_key(tmp_path: Path) -> None:
    # Rewriting one document's `entitySearch` entries must not scan every document's.
    path = tmp_path / "store.sqlite"
    client = MongoClient(engine=EmbeddedEngine(str(path)))
    client["test"]["logs"].create_index("entitySearch")
    client["test"]["logs"].insert_one({"entitySearch": ["northern drift", "drift"]})
    client.close()
    with closing(sqlite3.connect(path)) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM multikey_entries"
            " WHERE collection_id = 1 AND storage_key = 'k' AND index_name = 'i'"
        ).fetchall()
    assert any("storage_key=?" in str(step) for step in plan), plan


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the engine runs from here on, on any of its connections."""
    seen: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(seen.append)
        return connection

    monkeypatch.setattr(sqlite3, "connect", traced)
    return seen


def whole_collection_reads(path: Path, statements: list[str]) -> list[str]:
    """The statements SQLite answers by reading every document of a collection."""
    reads = []
    with closing(sqlite3.connect(path)) as db:
        for sql in dict.fromkeys(statements):
            if "FROM documents" not in sql or not sql.lstrip().upper().startswith("SELECT"):
                continue
            plan = " | ".join(step[3] for step in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
            # Narrowed to one collection only (the table's key prefix), or not at all.
            if "SCAN documents" in plan or "(db_name=? AND coll_name=?)" in plan:
                reads.append(f"{plan}  <-  {' '.join(sql.split())[:300]}")
    return reads


def assert_no_whole_collection_reads(path: Path, statements: list[str]) -> None:
    """Some statements ran, and SQLite answered none of them by reading a whole collection."""
    assert statements
    reads = whole_collection_reads(path, statements)
    assert reads == [], "\n".join(reads)


def test_reads_find_their_documents_by_index(tmp_path: Path, statements: list[str]) -> None:
    # What every view asks: a job's attempts, a family's entries in order, a page of roots.
    path = tmp_path / "store.sqlite"
    client = MongoClient(engine=EmbeddedEngine(str(path)))
    logs = client["test"]["logs"]
    logs.create_index([("jobId", 1), ("attempt", 1)])
    logs.create_index([("parentJobId", 1), ("startedAt", 1)])
    logs.insert_many(
        {"jobId": f"job-{i}", "attempt": 1, "parentJobId": f"root-{i % 5}", "status": "success",
         "startedAt": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)}
        for i in range(200)
    )  # fmt: skip

    def views() -> list[int]:
        in_order = [("startedAt", 1), ("attempt", 1)]
        successes = {"parentJobId": "root-3", "status": "success"}
        return [
            len(list(logs.find({"jobId": "job-7"}).sort("attempt", 1))),
            len(list(logs.find({"parentJobId": "root-2"}).sort(in_order))),
            len(list(logs.find(successes).sort("startedAt", -1).limit(5))),
            logs.count_documents({"parentJobId": "root-4"}),
        ]

    assert views() == [1, 40, 5, 40]  # the first read of a field builds its indexes
    logs.update_one({"jobId": "job-8", "attempt": 1}, {"$set": {"status": "failed"}})
    statements.clear()
    assert views() == [1, 40, 5, 40]  # after a write, as workers keep writing
    client.close()
    assert_no_whole_collection_reads(path, statements)


def search_collection(engine: SQLiteEngine) -> tuple[MongoClient, Any]:
    """Logs with every shape an `entitySearch` or `entityId` may have, indexed as the service's."""
    client = MongoClient(engine=engine)
    logs = client["test"]["logs"]
    logs.create_index("entitySearch")
    logs.create_index("entityId")
    logs.create_index([("parentJobId", 1), ("startedAt", 1)])
    shapes: list[Any] = [
        ["album 0420 by artist", "0420 by artist", "by artist", "artist"],
        ["album 04201"], ["album 0421"], ["album 042"], ["album 0420"],
        "album 0420 as a plain string", ["nested", ["album 0420 inside an array"]],
        [7, None, {"album": "0420"}, "album 04 with others"], [], None, 420,
        {"entity": "album 0420"}, ["álbum 0420"], ["album 0420\U0010ffff"], ["album 042\U0010ffff"],
        ["ab.c"], ["abxc"], ["ab7"], ["AB"], ["ab\nc"], ["a\ud7ffz"], ["a\ue000"],
    ]  # fmt: skip
    logs.insert_many(
        [{"jobId": f"job-{i}", "entityId": f"mbid-{i}", "parentJobId": f"root-{i % 3}",
          "entitySearch": shape} for i, shape in enumerate(shapes)]
        + [{"jobId": "no-search", "entityId": "album 0420"}]
    )  # fmt: skip
    return client, logs


SEARCHES: list[dict[str, Any]] = [
    {"entitySearch": {"$regex": "^album 0420"}},
    {"entitySearch": {"$regex": "^album\\ 042"}},
    {"entitySearch": {"$regex": "^album 0420\U0010ffff"}},
    {"entitySearch": {"$regex": "^ab\\.c"}},
    {"entitySearch": {"$regex": "^ab.c"}},
    {"entitySearch": {"$regex": "^ab\\d"}},
    {"entitySearch": {"$regex": "^ab", "$options": "i"}},
    {"entitySearch": {"$regex": "^a\ud7ff"}},
    {"entitySearch": {"$regex": "album 0420"}},
    {"$or": [{"entityId": "album 0420"}, {"entitySearch": {"$regex": "^album 0420"}}]},
    {"$or": [{"entityId": "mbid-3"}, {"entitySearch": {"$regex": "^nested"}}]},
    {"parentJobId": "root-1", "entitySearch": {"$regex": "^album"}},
    {"entitySearch": {"$regex": "^a\ud800"}},  # a lone surrogate: not a string SQLite takes
    {"$or": [{"entityId": f"mbid-{i}"} for i in range(300)]},  # more than one UNION holds
]


def test_a_prefix_search_finds_what_the_engine_itself_finds(tmp_path: Path) -> None:
    # The same documents as mongoeco's own engine (which decodes every document for a regex):
    # strings and arrays of them in range, nothing nested or typed. (In another order: none
    # was asked for, and each engine reads in the order of the index it uses.)
    answers = []
    own_engine = SQLiteEngine(str(tmp_path / "own.sqlite"))
    for engine in (own_engine, EmbeddedEngine(str(tmp_path / "ours.sqlite"))):
        client, logs = search_collection(engine)
        answers.append([sorted(doc["jobId"] for doc in logs.find(query)) for query in SEARCHES])
        client.close()
    own, ours = answers
    assert ours == own
    assert own[0] == ["job-0", "job-1", "job-13", "job-4", "job-5"]  # not nested, not "álbum"


def test_entity_search_finds_its_documents_by_index(tmp_path: Path, statements: list[str]) -> None:
    # The dashboard's entity search: a name's prefix, or an entity id, never every document.
    from service.queries import entity_roots

    path = tmp_path / "store.sqlite"
    client, logs = search_collection(EmbeddedEngine(str(path)))
    search = next(entity_roots("album 0420"))
    assert len(list(logs.find(search.filter))) == 6
    in_family = {"parentJobId": "root-1", "entitySearch": {"$regex": "^album"}}
    assert len(list(logs.find(in_family))) == 4
    logs.update_one({"jobId": "job-2"}, {"$set": {"entitySearch": ["album 0420 again"]}})
    statements.clear()
    assert len(list(logs.find(search.filter))) == 7
    client.close()
    assert_no_whole_collection_reads(path, statements)


def projected_collection(engine: SQLiteEngine) -> tuple[MongoClient, Any]:
    client = MongoClient(engine=engine)
    logs = client["test"]["logs"]
    logs.create_index([("parentJobId", 1), ("startedAt", 1)])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    logs.insert_many(
        {"jobId": f"job-{i}", "parentJobId": "root", "status": "success", "attempt": 1,
         "startedAt": at + timedelta(seconds=i), "finishedAt": at + timedelta(seconds=i + 1),
         "details": {"outcome": "matched", "candidates": [{"id": i}], "at": at},
         "error": None if i % 2 else {"retryable": True, "message": "503"},
         "tags": [{"name": "a", "at": at}, {"name": "b"}]}
        for i in range(20)
    )  # fmt: skip
    return client, logs


PROJECTIONS: list[dict[str, Any]] = [
    {"_id": 0, "jobId": 1, "status": 1},
    {"jobId": 1, "details.outcome": 1, "error.retryable": 1, "finishedAt": 1},
    {"_id": 0, "tags.name": 1, "missing": 1},
    {"details": 0, "tags": 0},  # an exclusion: the engine's own way
    {"_id": 0},  # so is this: every field but the id
    {"_id": 1},
    {"_id": 0, "tags": {"$slice": 1}, "jobId": 1},
]


def test_a_projected_read_answers_as_the_engine_itself_does(tmp_path: Path) -> None:
    answers = []
    own_engine = SQLiteEngine(str(tmp_path / "own.sqlite"))
    for engine in (own_engine, EmbeddedEngine(str(tmp_path / "ours.sqlite"))):
        client, logs = projected_collection(engine)
        answers.append(
            [
                [{k: v for k, v in doc.items() if k != "_id"} | {"has_id": "_id" in doc}
                 for doc in logs.find({"parentJobId": "root"}, projection)]
                for projection in PROJECTIONS
            ]
        )  # fmt: skip
        client.close()
    own, ours = answers
    assert ours == own
    assert list(own[1][0]) == ["jobId", "finishedAt", "details", "error", "has_id"]


def test_a_projected_read_decodes_only_the_fields_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A roll-up reads five to eight short fields of each of 10,000 entries: the rest of each
    # entry (its times, its details) is never turned into Python.
    client, logs = projected_collection(EmbeddedEngine(str(tmp_path / "store.sqlite")))
    decoded: list[str] = []
    decode, signature = DocumentCodec.decode, inspect.signature
    signatures: list[object] = []

    def noted(data: Any, **options: Any) -> Any:
        if DocumentCodec._is_tagged_value(data):
            decoded.append(data[DocumentCodec._MARKER][DocumentCodec._TYPE])
        return decode(data, **options)

    def counted(target: Any, *args: Any, **kwargs: Any) -> inspect.Signature:
        signatures.append(target)
        return signature(target, *args, **kwargs)

    monkeypatch.setattr(DocumentCodec, "decode", staticmethod(noted))
    monkeypatch.setattr(inspect, "signature", counted)
    found = list(logs.find({"parentJobId": "root"}, {"_id": 0, "status": 1, "attempt": 1}))
    assert found == [{"status": "success", "attempt": 1}] * 20
    assert decoded == []  # neither its times nor its details
    assert len(signatures) <= 1  # the codec's own question, asked once, not of every document
    client.close()
