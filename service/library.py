"""Reading a library file: CSV (`title,artist` or `mbid` columns) or JSON lines, row by row.

Every row is checked as the client checks one album; a bad row is reported with its line
number and left out, never kicked.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.models.jobs import AlbumJob

COLUMNS = ("mbid", "title", "artist")
JSON_LINES = (".jsonl", ".ndjson", ".json")


@dataclass
class Library:
    """The albums a file asks for, and the rows that could not be albums."""

    source: str
    albums: list[AlbumJob] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def read_library(path: Path) -> Library:
    """The albums in a CSV or JSON-lines file (by extension; `.csv` or anything else is CSV)."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if path.suffix.lower() in JSON_LINES:
        return parse_json_lines(text, source=path.name)
    return parse_csv(text, source=path.name)


def parse_csv(text: str, *, source: str) -> Library:
    """Rows of a CSV with a header naming `title` and `artist`, or `mbid` (any order)."""
    library = Library(source)
    reader = csv.DictReader(io.StringIO(text))
    header = {name.strip().lower() for name in reader.fieldnames or []}
    if not header & {"mbid", "title"}:
        library.bad_rows.append((1, "the header names neither a title nor an mbid column"))
        return library
    for row in reader:
        fields = {
            key.strip().lower(): value.strip()
            for key, value in row.items()
            if key is not None and isinstance(value, str) and value.strip()
        }
        _add(library, reader.line_num, fields)
    return library


def parse_json_lines(text: str, *, source: str) -> Library:
    """One JSON object per line, with `title` and `artist`, or `mbid`."""
    library = Library(source)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            library.bad_rows.append((number, f"not JSON: {exc.msg}"))
            continue
        if not isinstance(fields, dict):
            library.bad_rows.append((number, "not a JSON object"))
            continue
        _add(library, number, fields)
    return library


def _add(library: Library, number: int, fields: dict[str, Any]) -> None:
    row = {key: fields[key] for key in COLUMNS if fields.get(key) not in (None, "")}
    try:
        library.albums.append(AlbumJob.model_validate(row))
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'row'}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors(include_url=False, include_input=False)
        )
        library.bad_rows.append((number, reasons))
