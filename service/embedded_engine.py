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

Its reads grew with the collection too: at 25,000 logs, one lookup of a job by its id took
0.4-1.5 s. Before each query the planner asks questions of the whole collection (does this
field ever hold an array, a tagged value, a mix of types?), each a scan of every document,
and it forgets the answers at every write, so a store that workers write to asks them again
for every read. The query itself compares `json_type(...)` and `json_extract(...)`, which
the engine's own indexes (written with `COALESCE`) cannot serve.

4. Each indexed field (and the few the views filter by within a family) gets two SQLite
   indexes on exactly the expressions those questions and the query use (the field's JSON
   type and value, and its tag), so each is one index seek. They are made when the index
   is, or at start-up, between transactions. The answers and the engine's decisions are unchanged:
   only how SQLite finds the rows. Two questions are reworded to be answerable from those
   indexes: a tag is looked for at a path written into the SQL rather than bound (SQLite
   matches an expression index only on the same text), and "does every document hold this
   field as one type" becomes "is there a document holding it as another type, or not at
   all".
5. "Does a document this query matches hold an array or a tagged value where it sorts" is
   first asked of the whole collection by index: when none does, no matching one does.
6. A regex anchored at the start with a literal prefix (`^album 04`, how entity search asks)
   on a multikey-indexed field is answered in SQL, exactly: a string value in the prefix's
   range, or an array holding one (the engine's multikey entries, one per top-level
   element, as its own equality query uses them). An `$or` of such clauses and string
   equalities is one list of storage keys, each part read from one index. The engine itself
   decodes every document of the collection for any regex (2.6 s at 25,000 logs), and its
   SQL for an `$or` reads every row.
7. A read that asks for a few fields (`{status: 1, jobType: 1}`) decodes only those: the
   engine turned every tagged value of every document it read into Python before projecting
   (a roll-up's read of 10,000 entries: 0.9 s). Its own projection still shapes the answer.
   And whether its codec's `decode` takes `preserve_bson_wrappers` is asked once, not of
   every document.
"""

import functools
import hashlib
import inspect
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mongoeco.core.codec import DocumentCodec
from mongoeco.core.identity import id_contains_numeric_value
from mongoeco.core.query_plan import EqualsCondition, OrCondition, QueryNode, RegexCondition
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.engines.sqlite_query import json_path_for_field, translate_query_plan

# A top-level field name that can be spelled inside a JSON path literal as it is.
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# mongoeco's expression for a field's value in its physical indexes (a tagged value, or the
# plain JSON value): written the same way, SQLite answers from that index.
_FIELD_TYPE = "COALESCE(json_extract(document, '$.{0}.\"$mongoeco\".type'), '')"
_FIELD_VALUE = (
    "COALESCE(json_extract(document, '$.{0}.\"$mongoeco\".value'), json_extract(document, '$.{0}'))"
)
# Fields the service's views filter or sort by within an indexed family, with no index of
# their own: the planner asks about them too (see 4.).
UNINDEXED_FIELDS = ("status", "jobType", "durationMs")
# A field path the planner's questions spell into SQL that we can spell the same way.
_PLAIN_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# What `json_type` answers for a present value; NULL when the field is missing.
_JSON_TYPES = ("null", "true", "false", "integer", "real", "text", "array", "object")
_SORT_TYPES = {"number": ("integer", "real"), "string": ("text",), "bool": ("true", "false")}
# Regex options that leave what a literal prefix after `^` matches unchanged ("s" is about `.`).
_LITERAL_OPTIONS = frozenset({"", "s"})
# An `$or` read as one UNION of two SELECTs a clause: SQLite takes at most 500 in one.
_MAX_KEY_CLAUSES = 200
# What a regex means by itself outside an escape: anything else stands for itself.
_REGEX_SPECIAL = frozenset(".^$*+?{}[]()|\\")


class EmbeddedEngine(SQLiteEngine):
    """mongoeco's SQLite engine, writing in time that does not grow with the collection."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        # Per engine thread: which documents a uniqueness check has to read.
        self._narrowed = threading.local()
        self._indexed_paths: set[str] = set()

    def _connect_sync(self) -> None:
        super()._connect_sync()
        if self._connection is not None:
            self._connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_multikey_entries_storage"
                " ON multikey_entries (collection_id, storage_key, index_name)"
            )
            declared = self._connection.execute("SELECT fields FROM indexes").fetchall()
            fields = {field for (text,) in declared for field in json.loads(text)}
            self._index_paths(self._connection, sorted(fields | set(UNINDEXED_FIELDS)))

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

    # Reads: see 4., 5., 6. and 7. above.

    def _decode_codec_payload(self, payload: object, *, preserve_bson_wrappers: bool) -> Any:
        # The engine asked `inspect.signature` of its codec's `decode` for every document it
        # read: half the time of a read of 10,000 entries. The answer is the codec's.
        decode = self._codec.decode
        if _takes_wrappers(decode):
            return decode(payload, preserve_bson_wrappers=preserve_bson_wrappers)
        return decode(payload)

    def _project_sql_scan_rows(
        self, rows: Iterable[tuple[str]], semantics: Any, reader: Any
    ) -> Iterator[Any]:
        fields = _included_fields(semantics.projection)
        if fields is None or self._codec is not DocumentCodec:
            return iter(super()._project_sql_scan_rows(rows, semantics, reader))
        trimmed = ((_trim(payload, fields),) for (payload,) in rows)
        return iter(super()._project_sql_scan_rows(trimmed, semantics, reader))

    def _translate_query_plan_with_multikey(
        self, db_name: str, coll_name: str, plan: QueryNode
    ) -> tuple[str, list[object]]:
        keys = self._keys_of(db_name, coll_name, plan)
        if keys is not None:
            return keys
        translated = super()._translate_query_plan_with_multikey(db_name, coll_name, plan)
        return str(translated[0]), list(translated[1])

    def _keys_of(
        self, db_name: str, coll_name: str, plan: QueryNode
    ) -> tuple[str, list[object]] | None:
        """A prefix regex, or an `$or` of clauses `_keys_where` reads, as one key list.

        Each part of the list comes from one index, then the rows by key (in key order: no
        order was asked for). An OR of the engine's own SQL reads every row.
        """
        if isinstance(plan, RegexCondition):
            clauses: list[QueryNode] = [plan]
        elif isinstance(plan, OrCondition) and len(plan.clauses) <= _MAX_KEY_CLAUSES:
            clauses = list(plan.clauses)
        else:
            return None
        sql, params = [], []
        for clause in clauses:
            keys = self._keys_where(db_name, coll_name, clause)
            if keys is None:
                return None
            sql.append(keys[0])
            params += keys[1]
        return f"documents.storage_key IN ({' UNION '.join(sql)})", params

    def _keys_where(
        self, db_name: str, coll_name: str, plan: QueryNode
    ) -> tuple[str, list[object]] | None:
        """The storage keys `plan` matches as an index-served SELECT, or None.

        For a string equality or a `^literal` regex on a field with a multikey index: the
        documents holding a string in range there, and those holding an array with one
        (the engine's multikey entries: one per top-level element, as its equality query
        reads them). A regex matches nothing else, an equality with a string nothing else.
        (Strings as stored over the wire: an in-process client's `str` subclass or BSON
        `Code` is no string to the engine's SQL, for its own equality either.)
        """
        if isinstance(plan, RegexCondition):
            low = literal_prefix(plan.pattern, plan.options)
            high = None if low is None else next_string(low)
            if low is None or high is None:
                return None
            compare, bounds = ">= ? AND {0} < ?", [low, high]
        elif isinstance(plan, EqualsCondition) and type(plan.value) is str:
            compare, bounds = "= ?", [plan.value]
        else:
            return None
        if not all(_utf8(bound) for bound in bounds):
            return None  # a lone surrogate: SQLite cannot be asked it, the engine can
        if plan.field == "_id" or _PLAIN_FIELD.fullmatch(plan.field) is None:
            return None  # an id has its own rules; a dotted path may cross arrays
        path = self._path_literal(plan.field)
        index = self._find_multikey_index(db_name, coll_name, plan.field)
        connection = self._require_connection()
        collection_id = self._lookup_collection_id(connection, db_name, coll_name)
        if path is None or index is None or collection_id is None:
            return None
        entries = self._quote_identifier(str(index["multikey_physical_name"]))
        value = f"json_extract(document, {path})"
        sql = (
            "SELECT storage_key FROM documents WHERE db_name = ? AND coll_name = ?"  # noqa: S608
            f" AND json_type(document, {path}) = 'text' AND {value} {compare.format(value)}"
            f" UNION SELECT storage_key FROM multikey_entries INDEXED BY {entries}"
            " WHERE collection_id = ? AND index_name = ? AND type_score = ?"
            f" AND element_key {compare.format('element_key')}"
        )
        string = self._multikey_type_score("string")
        return sql, [db_name, coll_name, *bounds, collection_id, index["name"], string, *bounds]

    def _path_literal(self, field: str) -> str | None:
        """The JSON path of `field` as the planner spells it, when SQLite has it indexed."""
        path = json_path_for_field(field)
        return f"'{path}'" if path in self._indexed_paths else None

    def _create_index_sync(
        self, db_name: str, coll_name: str, keys: Any, *args: Any, **kwargs: Any
    ) -> str:
        name = super()._create_index_sync(db_name, coll_name, keys, *args, **kwargs)
        fields = [keys] if isinstance(keys, str) else [key[0] for key in keys]
        with self._lock:
            self._index_paths(self._require_connection(), fields)
        return str(name)

    def _index_paths(self, connection: sqlite3.Connection, fields: Iterable[str]) -> None:
        """Index each field (and each path above it) for the planner's questions.

        Only between transactions, on the engine's own connection: a schema change made
        while another transaction is open would fail that transaction's next write.
        """
        if connection.in_transaction:
            return
        for field in fields:
            parts = field.split(".")
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if _PLAIN_PATH.fullmatch(prefix) is None:
                    break
                path = json_path_for_field(prefix)
                if path not in self._indexed_paths:
                    self._index(connection, path)
                    self._indexed_paths.add(path)

    @staticmethod
    def _index(connection: sqlite3.Connection, path: str) -> None:
        name = hashlib.sha256(path.encode()).hexdigest()[:16]
        literal = f"'{path}'"
        kind, value = f"json_type(document, {literal})", f"json_extract(document, {literal})"
        connection.execute(
            f"CREATE INDEX IF NOT EXISTS probe_value_{name} ON documents"
            f" (db_name, coll_name, {kind}, {value})"
        )
        connection.execute(
            f"CREATE INDEX IF NOT EXISTS probe_tag_{name} ON documents"
            f" (db_name, coll_name, {_tag(literal)}, {kind})"
        )

    def _exists(self, db_name: str, coll_name: str, condition: str) -> bool:
        row = (
            self._require_connection()
            .execute(
                "SELECT 1 FROM documents WHERE db_name = ? AND coll_name = ?"  # noqa: S608
                f" AND {condition} LIMIT 1",
                (db_name, coll_name),
            )
            .fetchone()
        )
        return row is not None

    def _any(self, db_name: str, coll_name: str, conditions: Iterable[str]) -> bool:
        # One query per condition: SQLite answers each from an index, an OR of them by a scan.
        return any(self._exists(db_name, coll_name, condition) for condition in conditions)

    def _field_contains_tagged_value_type_in_collection(
        self, db_name: str, coll_name: str, field: str, value_type: str
    ) -> bool:
        path = self._path_literal(field)
        key = (db_name, coll_name, f"tagged_type:{field}:{value_type}")
        if path is None or value_type not in _TAGS:
            return bool(
                super()._field_contains_tagged_value_type_in_collection(
                    db_name, coll_name, field, value_type
                )
            )
        if key not in self._collection_features_cache:
            self._collection_features_cache[key] = self._exists(
                db_name, coll_name, f"{_tag(path)} = '{value_type}'"
            )
        return bool(self._collection_features_cache[key])

    def _field_has_uniform_scalar_sort_type_in_collection(
        self, db_name: str, coll_name: str, field: str
    ) -> str | None:
        path = self._path_literal(field)
        key = (db_name, coll_name, f"uniform_scalar_sort_type:{field}")
        if path is None:
            return super()._field_has_uniform_scalar_sort_type_in_collection(
                db_name, coll_name, field
            )
        if key not in self._collection_features_cache:
            self._collection_features_cache[key] = self._uniform_type(db_name, coll_name, path)
        cached = self._collection_features_cache[key]
        return cached if isinstance(cached, str) else None

    def _uniform_type(self, db_name: str, coll_name: str, path: str) -> str | bool:
        """The engine's answer (a sort type, or False), from index seeks instead of a count."""
        kind = f"json_type(document, {path})"
        for name, types in _SORT_TYPES.items():
            if not self._exists(db_name, coll_name, f"{kind} IN {_sql_list(types)}"):
                continue
            others = tuple(t for t in _JSON_TYPES if t not in types)
            mixed = (f"{kind} IS NULL", f"{kind} IN {_sql_list(others)}")
            return False if self._any(db_name, coll_name, mixed) else name
        return False

    def _sort_requires_python(self, db_name: str, coll_name: str, plan: Any, sort: Any) -> bool:
        paths = [self._path_literal(field) for field, _ in sort or ()]
        if paths and all(paths) and _translatable(plan):
            # The engine's last question, asked of the whole collection by index first: an
            # array, or an object untagged or tagged as a number, where the query sorts.
            anywhere = [condition for path in paths if path for condition in _unsortable(path)]
            if not self._any(db_name, coll_name, anywhere):
                return self._sort_requires_python_without_scan(db_name, coll_name, plan, sort)
        return bool(super()._sort_requires_python(db_name, coll_name, plan, sort))

    def _sort_requires_python_without_scan(
        self, db_name: str, coll_name: str, plan: Any, sort: Any
    ) -> bool:
        # The engine's other reasons, each answered from the cache or an index seek.
        if self._plan_has_array_traversing_paths(db_name, coll_name, plan):
            return True
        return any(
            self._field_traverses_array_in_collection(db_name, coll_name, field)
            or self._field_contains_tagged_bytes_in_collection(db_name, coll_name, field)
            or self._field_contains_tagged_undefined_in_collection(db_name, coll_name, field)
            for field, _ in sort
        )


# The tags a planner question looks for (mongoeco's codec names; a value is spelled in SQL).
_TAGS = frozenset({"bytes", "undefined", "decimal", "decimal128", "decimal128_public", "dbref"})


def _translatable(plan: Any) -> bool:
    """Whether SQL can say what `plan` matches (a regex cannot).

    The engine's own question asks that first, and a plan it cannot translate is sorted
    in Python: the same answer here.
    """
    try:
        translate_query_plan(plan)
    except NotImplementedError:
        return False
    return True


def _unsortable(path: str) -> tuple[str, ...]:
    """mongoeco's test for a value it sorts in Python, worded for the two indexes of `path`."""
    tag = _tag(path)
    return (
        f"json_type(document, {path}) = 'array'",
        f"{tag} IN ('', 'int64', 'decimal', 'decimal128', 'decimal128_public')",
        f"{tag} IS NULL AND json_type(document, {path}) = 'object'",
    )


def _tag(path: str) -> str:
    """The tag mongoeco's codec wraps a value in (`bytes`, `datetime`...) at a path literal."""
    marker, kind = DocumentCodec._MARKER, DocumentCodec._TYPE
    return f"json_extract(document, '{path[1:-1]}.\"{marker}\".{kind}')"


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def literal_prefix(pattern: str, options: str) -> str | None:
    r"""The text a regex `^` + literal matches the start of, or None for any other regex.

    Written here rather than taken from mongoeco's `parse_safe_literal_regex`, which reads
    `\d` as the letter d: only an escaped character that is not a letter or digit is literal.
    """
    if options not in _LITERAL_OPTIONS or not pattern.startswith("^"):
        return None
    chars: list[str] = []
    escaped = False
    for char in pattern[1:]:
        if escaped:
            if char.isascii() and char.isalnum():
                return None  # \d, \b, \1...: a class, an anchor or a reference
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _REGEX_SPECIAL:
            return None
        else:
            chars.append(char)
    return "".join(chars) if chars and not escaped else None


def next_string(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (code point order).

    SQLite compares text as UTF-8 bytes, which orders as code points do. None when the last
    character is the greatest there is (the caller then leaves the regex to the engine).
    """
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = 0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1  # no surrogates in UTF-8
    return prefix[:-1] + chr(following)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _included_fields(projection: Any) -> frozenset[str] | None:
    """The top-level fields an inclusion projection can need, or None for any other kind."""
    if not isinstance(projection, dict) or not projection:
        return None
    fields = {"_id"} if projection.get("_id", 1) else set()
    for path, wanted in projection.items():
        if not isinstance(path, str) or "$" in path or type(wanted) not in (int, bool):
            return None  # an operator, an expression or a positional projection
        if wanted not in (0, 1) or (not wanted and path != "_id"):
            return None  # an exclusion: every other field is wanted
        if wanted:
            fields.add(path.split(".", 1)[0])
    if fields <= {"_id"}:
        return None  # `{_id: 0}` alone leaves out the id only: every other field is wanted
    return frozenset(fields)


def _trim(payload: str, fields: frozenset[str]) -> str:
    """A stored document's JSON with only `fields` at its top level, in their order."""
    document = json.loads(payload)
    return json.dumps({key: value for key, value in document.items() if key in fields})


@functools.cache
def _takes_wrappers(decode: Callable[..., Any]) -> bool:
    """Whether a codec's `decode` takes `preserve_bson_wrappers` (mongoeco's own question)."""
    try:
        return "preserve_bson_wrappers" in inspect.signature(decode).parameters
    except (TypeError, ValueError):
        return False
