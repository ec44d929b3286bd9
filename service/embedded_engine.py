"""The embedded store's SQLite engine: mongoeco's, without the write costs that grow with it.

mongoeco 4.11 (the newest release) makes every write cost time proportional to the
collection: 110 ms at 1,000 logs, 1.1 s at 10,000, 2.5 s at 22,000 (measured). No setting
changes any of the three causes, hence this subclass of its engine. Each change keeps the
engine's own checks and only narrows what they read; `tests/service/test_embedded_store.py`
fails if a mongoeco release renames what is touched here.

1. Each insert and upsert looked for a duplicate `_id` by decoding every document
   (`scan_payload_id=True`). That scan exists for numeric ids, where 1, 1.0 and Int64(1) are
   one id under different storage keys; an ObjectId or a string has one storage key, which
   the engine's keyed lookup checks exactly. Numeric ids are still scanned for.
2. A compound unique index (the log's `(jobId, attempt)`) was checked by decoding every
   document of the collection. The candidates are the documents whose first field holds
   the same text, which SQLite finds on the engine's own expression index for that index;
   the engine then compares them as before.
3. Its table of multikey entries (`entitySearch`) had no index by document, so replacing one
   document's entries scanned every entry of every document.
"""

import re
import threading
from collections.abc import Iterator
from typing import Any

from mongoeco.core.identity import id_contains_numeric_value
from mongoeco.engines.sqlite import SQLiteEngine

# A top-level field name that can be spelled inside a JSON path literal as it is.
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# mongoeco's expression for a field's value in its physical indexes (a tagged value, or the
# plain JSON value): written the same way, SQLite answers from that index.
_FIELD_TYPE = "COALESCE(json_extract(document, '$.{0}.\"$mongoeco\".type'), '')"
_FIELD_VALUE = (
    "COALESCE(json_extract(document, '$.{0}.\"$mongoeco\".value'), json_extract(document, '$.{0}'))"
)


class EmbeddedEngine(SQLiteEngine):
    """mongoeco's SQLite engine, writing in time that does not grow with the collection."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        # Per engine thread: which documents a uniqueness check has to read.
        self._narrowed = threading.local()

    def _connect_sync(self) -> None:
        super()._connect_sync()
        if self._connection is not None:
            self._connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_multikey_entries_storage"
                " ON multikey_entries (collection_id, storage_key, index_name)"
            )

    def _validate_document_against_unique_indexes(
        self, db_name: str, coll_name: str, document: Any, **options: Any
    ) -> None:
        numeric_id = id_contains_numeric_value(document.get("_id"))
        if options.get("scan_payload_id"):
            options["scan_payload_id"] = numeric_id
        self._narrowed.to = None if numeric_id else self._candidates(db_name, coll_name, document)
        try:
            super()._validate_document_against_unique_indexes(
                db_name, coll_name, document, **options
            )
        finally:
            self._narrowed.to = None

    def _candidates(self, db_name: str, coll_name: str, document: Any) -> tuple[str, str] | None:
        """(field, text) when the collection's one unique index starts with a text field."""
        unique = [
            index
            for index in self._load_indexes(db_name, coll_name)
            if index["unique"] and index["fields"] != ["_id"]
        ]
        if len(unique) != 1 or unique[0].get("collation") is not None:
            return None
        if self._unique_index_uses_multikey_values(db_name, coll_name, document, unique[0]):
            return None  # arrays: an equal element may sit anywhere, so the engine scans
        first = unique[0]["fields"][0]
        value = document.get(first)
        if _PLAIN_FIELD.fullmatch(first) is None or not isinstance(value, str):
            return None
        return first, value

    def _load_documents(self, db_name: str, coll_name: str) -> Iterator[tuple[str, Any]]:
        narrowed = getattr(self._narrowed, "to", None)
        if narrowed is None:
            yield from super()._load_documents(db_name, coll_name)
            return
        field, value = narrowed
        # The field is spelled in the SQL (a JSON path literal, as the engine's expression
        # index spells it, so SQLite can use that index): `_candidates` lets through only
        # names made of letters, digits and underscores. Values are bound.
        query = (
            "SELECT storage_key, document FROM documents WHERE db_name = ? AND coll_name = ?"  # noqa: S608
            f" AND {_FIELD_TYPE.format(field)} = '' AND {_FIELD_VALUE.format(field)} = ?"
        )
        rows = self._require_connection().execute(query, (db_name, coll_name, value))
        for storage_key, payload in rows.fetchall():
            yield storage_key, self._deserialize_document(payload)
