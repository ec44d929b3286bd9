"""Two thin executors for store plans: sync PyMongo (Streamlit, the migration) and async.

A plan is a generator that yields store operations (`Find`, `Aggregate`, `Count`, the
`UpdateOne` that keeps a snapshot, index work) and
receives each one's documents, then returns its result. Every read and the index maintenance
are written once, as plans; these executors only do the I/O, as httpx's `Client` and
`AsyncClient` do around one `BaseClient`.
"""

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import SON
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

# A stored document as the driver returns it (not Beanie's `Document` class).
Record = dict[str, Any]
INDEX_NOT_FOUND = 27  # the server's error code when an index to drop is already gone


@dataclass(frozen=True)
class Find:
    """`find` on one collection. With `until`, documents are read one by one until it says so."""

    collection: str
    filter: Record
    sort: Sequence[tuple[str, int]] = ()
    projection: Record | None = None
    skip: int = 0
    limit: int = 0
    until: Callable[[Record], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Aggregate:
    """An aggregation pipeline on one collection."""

    collection: str
    pipeline: list[Record]


@dataclass(frozen=True)
class ListIndexes:
    """The collection's indexes, one record each (`index_information()` plus its `name`)."""

    collection: str


@dataclass(frozen=True)
class DropIndex:
    """Drop one index; one already gone (another process dropped it) is not an error."""

    collection: str
    name: str


@dataclass(frozen=True)
class CreateIndexes:
    """Create indexes (a no-op for those that exist with the same definition)."""

    collection: str
    indexes: Sequence[IndexModel]


@dataclass(frozen=True)
class Count:
    """`count_documents`, answered as one record: `{"n": count}`."""

    collection: str
    filter: Record


@dataclass(frozen=True)
class UpdateOne:
    """`update_one`, never an upsert (a read keeping a snapshot): `{"matched": 0 or 1}`.

    What it keeps is a cache: when a login may only read, or a node cannot take the write,
    the executors answer `matched: 0` and the read goes on.
    """

    collection: str
    filter: Record
    update: Record


Operation = Find | Aggregate | Count | UpdateOne | ListIndexes | DropIndex | CreateIndexes
type Plan[T] = Generator[Operation, list[Record], T]


def _count(operation: Count) -> Record:
    """The `count` command for `operation`.

    Not `count_documents`: the driver runs that as an aggregation, which the embedded store
    answers by decoding every matching document (1.7 s for 10,000, where `count` takes
    6 ms). MongoDB answers either from the index, exactly outside sharded clusters (which
    this service does not use).
    """
    return SON([("count", operation.collection), ("query", operation.filter)])


def _finish[T](plan: Plan[T], stop: StopIteration) -> T:
    value: T = stop.value
    plan.close()
    return value


def _take(documents: Iterable[Record], until: Callable[[Record], bool]) -> list[Record]:
    taken = []
    for document in documents:
        taken.append(document)
        if until(document):
            break
    return taken


def _index_records(information: Mapping[str, Any]) -> list[Record]:
    return [{"name": name, **spec} for name, spec in information.items()]


def _tolerate_missing(exc: OperationFailure) -> None:
    if exc.code != INDEX_NOT_FOUND:
        raise exc


class SyncExecutor:
    """Runs plans with sync PyMongo; counts the operations it sent."""

    def __init__(self, database: Database[Record]) -> None:
        self.database = database
        self.operations = 0

    def run[T](self, plan: Plan[T]) -> T:
        """Drive `plan` to its result."""
        try:
            operation = next(plan)
            while True:
                operation = plan.send(self._execute(operation))
        except StopIteration as stop:
            return _finish(plan, stop)

    def _execute(self, operation: Operation) -> list[Record]:
        self.operations += 1
        collection = self.database[operation.collection]
        match operation:
            case Find():
                with collection.find(
                    operation.filter,
                    operation.projection,
                    sort=list(operation.sort) or None,
                    skip=operation.skip,
                    limit=operation.limit,
                ) as cursor:
                    return _take(cursor, operation.until) if operation.until else list(cursor)
            case Aggregate():
                with collection.aggregate(operation.pipeline) as cursor:
                    return list(cursor)
            case Count():
                answer = self.database.command(_count(operation))
                return [{"n": int(answer["n"])}]
            case UpdateOne():
                try:
                    matched = collection.update_one(operation.filter, operation.update)
                except PyMongoError:
                    return [{"matched": 0}]  # a cache not kept: the read goes on
                return [{"matched": matched.matched_count}]
            case ListIndexes():
                return _index_records(collection.index_information())
            case DropIndex():
                try:
                    collection.drop_index(operation.name)
                except OperationFailure as exc:
                    _tolerate_missing(exc)
                return []
            case CreateIndexes():
                collection.create_indexes(list(operation.indexes))
                return []


class AsyncExecutor:
    """Runs plans with PyMongo's async driver; counts the operations it sent."""

    def __init__(self, database: AsyncDatabase[Record]) -> None:
        self.database = database
        self.operations = 0

    async def run[T](self, plan: Plan[T]) -> T:
        """Drive `plan` to its result."""
        try:
            operation = next(plan)
            while True:
                operation = plan.send(await self._execute(operation))
        except StopIteration as stop:
            return _finish(plan, stop)

    async def _execute(self, operation: Operation) -> list[Record]:
        self.operations += 1
        collection = self.database[operation.collection]
        match operation:
            case Find():
                return await self._find(operation)
            case Aggregate():
                async with await collection.aggregate(operation.pipeline) as results:
                    return await results.to_list()
            case Count():
                answer = await self.database.command(_count(operation))
                return [{"n": int(answer["n"])}]
            case UpdateOne():
                try:
                    result = await collection.update_one(operation.filter, operation.update)
                except PyMongoError:
                    return [{"matched": 0}]  # a cache not kept: the read goes on
                return [{"matched": result.matched_count}]
            case ListIndexes():
                return _index_records(await collection.index_information())
            case DropIndex():
                try:
                    await collection.drop_index(operation.name)
                except OperationFailure as exc:
                    _tolerate_missing(exc)
                return []
            case CreateIndexes():
                await collection.create_indexes(list(operation.indexes))
                return []

    async def _find(self, operation: Find) -> list[Record]:
        cursor = self.database[operation.collection].find(
            operation.filter,
            operation.projection,
            sort=list(operation.sort) or None,
            skip=operation.skip,
            limit=operation.limit,
        )
        async with cursor:
            if operation.until is None:
                return await cursor.to_list()
            taken = []
            async for document in cursor:
                taken.append(document)
                if operation.until(document):
                    break
            return taken
