"""The document store: connecting, the collections by name, and their indexes.

MongoDB when `MONGODB_URL` is set, else the embedded store (`service.embedded_store`). The
async `Store` is made once per process (worker start-up, a client, a command) and passed in;
nothing reaches the collections through a process-wide binding.
"""

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from beanie import Document, init_beanie
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, MongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from service.config import Settings
from service.embedded_store import embedded_notice, ensure_store
from service.errors import StoreUnavailableError
from service.executors import (
    AsyncExecutor,
    CreateIndexes,
    DropIndex,
    ListIndexes,
    Plan,
    Record,
    SyncExecutor,
)
from service.models import DOCUMENT_MODELS, Album, Artist, EnrichmentLog
from service.models.base import utc_now

logger = logging.getLogger(__name__)

# Every collection's name, spelled here once (the models' own names where there is a model).
LOGS = EnrichmentLog.Settings.name
ALBUMS = Album.Settings.name
ARTISTS = Artist.Settings.name
# One document per (root, processor, entity) a family has spawned: see `service.spawning`.
CLAIMS = "job_claims"
# One document per root whose jobs have spawned children (`_id` = the root's job id), kept
# when the root's own log is deleted: how the Orphans view finds deleted roots' families
# without reading their entries (see `service.logbook.record_family`).
FAMILIES = "job_families"
# Stream entries that could not be jobs (see `service.streams`).
DEAD_LETTERS = "dead_letters"
# What each processor last learned about each entity, and when (see `service.freshness`).
FRESHNESS = "enrichment_freshness"
CATALOGUE = {"album": ALBUMS, "artist": ARTISTS}

SERVER_SELECTION_TIMEOUT_MS = 10_000
# The options that make two indexes of one name different indexes.
INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")
# The embedded store refuses an `$in` of about 500 values ("expression tree is too large"):
# longer lists go in chunks.
IN_LIMIT = 200


def chunks(values: list[Any], size: int = IN_LIMIT) -> Iterator[list[Any]]:
    """`values` in lists of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True)
class Store:
    """An open async connection to the store and the collections the service writes."""

    client: AsyncMongoClient[Record]
    database: AsyncDatabase[Record]

    @property
    def logs(self) -> AsyncCollection[Record]:
        """`enrichment_logs`: one document per processor attempt."""
        return self.database[LOGS]

    @property
    def claims(self) -> AsyncCollection[Record]:
        """`job_claims`: which job of a family runs a processor for an entity."""
        return self.database[CLAIMS]

    @property
    def families(self) -> AsyncCollection[Record]:
        """`job_families`: every root that has children, kept when its log is deleted."""
        return self.database[FAMILIES]

    @property
    def freshness(self) -> AsyncCollection[Record]:
        """`enrichment_freshness`: when a processor last finished with each entity."""
        return self.database[FRESHNESS]

    @property
    def dead_letters(self) -> AsyncCollection[Record]:
        """`dead_letters`: stream entries that could not be jobs."""
        return self.database[DEAD_LETTERS]

    def catalogue(self, entity_type: str) -> AsyncCollection[Record]:
        """The albums or artists collection."""
        return self.database[CATALOGUE[entity_type]]

    @property
    def reader(self) -> AsyncExecutor:
        """An executor for read plans (`service.queries`) on this store."""
        return AsyncExecutor(self.database)

    async def close(self) -> None:
        """Close the connection."""
        await self.client.close()


def make_mongo_client(url: str) -> AsyncMongoClient[Record]:
    """A PyMongo async client that reads timestamps back as UTC-aware datetimes."""
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS
    )


def make_sync_client(url: str, **options: Any) -> MongoClient[Record]:
    """The sync twin of `make_mongo_client` (Streamlit and the migration are sync)."""
    options.setdefault("serverSelectionTimeoutMS", SERVER_SELECTION_TIMEOUT_MS)
    return MongoClient(url, tz_aware=True, **options)


async def connect_store(settings: Settings) -> Store:
    """Connect, ensure every model's indexes and bind the Beanie models; return the handle."""
    url = await asyncio.to_thread(ensure_store, settings)
    client = make_mongo_client(url)
    database = client[settings.mongodb_db]
    try:
        await AsyncExecutor(database).run(ensure_indexes(DOCUMENT_MODELS))
        await AsyncExecutor(database).run(
            ensure_collection_indexes(CLAIMS, claim_indexes(settings))
        )
        await AsyncExecutor(database).run(
            ensure_collection_indexes(DEAD_LETTERS, DEAD_LETTER_INDEXES)
        )
        # Indexes are ours (above): Beanie would not rebuild one whose definition changed.
        await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
        if not settings.mongodb_url:
            # At start-up: say so when the embedded store has outgrown its use.
            # From the collection's metadata: a count must not scan what it warns about.
            logs = await database[LOGS].estimated_document_count()
            notice = embedded_notice(settings, logs)
            if notice is not None:
                logger.warning("%s", notice)
    except PyMongoError as exc:
        await client.close()
        raise StoreUnavailableError(f"cannot reach the document store: {exc}") from exc
    return Store(client, database)


def connect_sync_database(settings: Settings, url: str | None = None) -> Database[Record]:
    """The store's database over sync PyMongo (starting the embedded store if needed)."""
    client = make_sync_client(url or ensure_store(settings))
    return client[settings.mongodb_db]


def ensure_indexes(models: Sequence[type[Document]]) -> Plan[None]:
    """Rebuild every model index whose definition changed, then create the missing ones."""
    for model in models:
        yield from ensure_collection_indexes(model.Settings.name, model.Settings.indexes)


def ensure_collection_indexes(name: str, wanted: Sequence[IndexModel]) -> Plan[None]:
    """One collection's indexes: rebuilt when their definition changed, created when missing."""
    if not wanted:
        return
    existing = yield ListIndexes(name)
    for stale in stale_indexes({index["name"]: index for index in existing}, wanted):
        logger.warning("rebuilding index %s.%s: its definition changed", name, stale)
        yield DropIndex(name, stale)
    yield CreateIndexes(name, wanted)


# The Dead letters page: newest first, a page at a time.
DEAD_LETTER_INDEXES = [IndexModel([("at", DESCENDING)])]


def claim_indexes(settings: Settings) -> list[IndexModel]:
    """`job_claims` expire after the freshness window: a family is long done by then."""
    days = settings.enrich_fresh_days
    if days <= 0:
        return []
    return [IndexModel([("claimedAt", ASCENDING)], expireAfterSeconds=round(days * 86_400))]


def run_sync(database: Database[Record], plan: Plan[Any]) -> int:
    """Run a plan with sync PyMongo; return how many operations it sent."""
    executor = SyncExecutor(database)
    executor.run(plan)
    return executor.operations


def stale_indexes(
    existing: Mapping[str, Mapping[str, Any]], wanted: Sequence[IndexModel]
) -> list[str]:
    """Names in `existing` (`index_information()`) that `wanted` now defines differently.

    An index keeps its name when a release changes its options, and the server refuses to
    create it again over the old definition: such an index has to be dropped first.
    """
    stale = []
    for model in wanted:
        spec = model.document
        current = existing.get(spec["name"])
        if current is None:
            continue
        same_key = [(field, direction) for field, direction in current["key"]] == list(
            spec["key"].items()
        )
        same_options = _options(current) == _options(spec)
        if not (same_key and same_options):
            stale.append(spec["name"])
    return stale


def _options(index: Mapping[str, Any]) -> dict[str, Any]:
    # Servers differ in what they report (mongoeco says `unique: False` where MongoDB says
    # nothing): an option that is absent and one that is false are the same.
    # `is`, not `==`: `expireAfterSeconds: 0` is a real option, and 0 == False.
    return {
        option: value
        for option in INDEX_OPTIONS
        if (value := index.get(option)) is not None and value is not False
    }


class Catalogue:
    """The albums and artists the processors enrich, keyed by MBID."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def update(self, entity_type: str, mbid: str, fields: dict[str, Any]) -> list[str]:
        """Upsert the album or artist with this MBID; return the names of the fields written."""
        written = {key: value for key, value in fields.items() if value not in (None, [], "")}
        try:
            await self._store.catalogue(entity_type).update_one(
                {"mbid": mbid}, {"$set": {**written, "enrichedAt": utc_now()}}, upsert=True
            )
        except ConnectionFailure as exc:
            raise StoreUnavailableError(f"could not update {entity_type} {mbid}: {exc}") from exc
        return sorted(written)

    async def field(self, entity_type: str, mbid: str, name: str) -> Any:
        """One field of the album or artist with this MBID, or None."""
        try:
            found = await self._store.catalogue(entity_type).find_one(
                {"mbid": mbid}, projection={name: 1}
            )
        except ConnectionFailure as exc:
            raise StoreUnavailableError(f"could not read {entity_type} {mbid}: {exc}") from exc
        return found.get(name) if found is not None else None
