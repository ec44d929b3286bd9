"""A whole library as one run: the file formats, the client, the CLI."""

from pathlib import Path
from typing import Any

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS
from service.library import parse_csv, parse_json_lines, read_library
from service.models import JobStatus
from tests.helpers import enrichment

CSV = f"""title,artist,mbid
Tidal Glass,Vela Nord,
,,{ALBUMS["Paper Harbors"].mbid}
,Vela Nord,
{"t" * 513},Somebody,
Atlas of Small Hours,Quiet Cartographer,
,,{ALBUMS["Northern Drift"].mbid}
"""


def test_csv_rows_become_albums_and_bad_rows_keep_their_line_numbers() -> None:
    library = parse_csv(CSV, source="mine.csv")
    assert [album.label for album in library.albums] == [
        "Tidal Glass — Vela Nord",
        ALBUMS["Paper Harbors"].mbid,
        "Atlas of Small Hours — Quiet Cartographer",
        ALBUMS["Northern Drift"].mbid,
    ]
    assert [number for number, _ in library.bad_rows] == [4, 5]
    assert "needs an mbid or a title" in library.bad_rows[0][1]
    assert "at most 512 characters" in library.bad_rows[1][1]


def test_json_lines_and_a_header_without_the_columns() -> None:
    text = '{"title": "Tidal Glass", "artist": "Vela Nord"}\n\n[1]\n{"mbid": "0383dadf\\n"}\nnope\n'
    library = parse_json_lines(text, source="mine.jsonl")
    assert [album.title for album in library.albums] == ["Tidal Glass"]
    assert [number for number, _ in library.bad_rows] == [3, 4, 5]
    headless = parse_csv("name,year\nTidal Glass,2011\n", source="x.csv")
    assert headless.albums == []
    assert headless.bad_rows == [(1, "the header names neither a title nor an mbid column")]


async def test_a_library_is_one_flat_family(client: EnrichmentClient, tmp_path: Path) -> None:
    path = tmp_path / "library.csv"
    path.write_text(CSV, encoding="utf-8")
    library = read_library(path)
    root_id = await client.kick_library(library.albums, source=library.source)
    family = await client.wait_for_root(root_id, timeout=90)
    [root] = family.root
    assert (root.job_type, root.is_root_job, root.status) == ("enrich_library", True, "success")
    assert root.entity_name == "library.csv (4 albums)"
    albums = [e for e in family.children if e.job_type == "enrich_album"]
    assert len(albums) == 4
    # Flat: every descendant, albums and their artists, images and matches alike, names the root.
    assert {e.parent_job_id for e in family.children} == {root_id}
    assert {e.job_type for e in family.children} >= {"enrich_artist", "discogs_artist"}
    progress = await client.progress(root_id)
    assert progress.finished
    assert progress.total == len({e.job_id for e in family.children})
    assert progress.count(JobStatus.SUCCESS) >= 4


async def test_the_cli_kicks_a_library_and_follows_it(
    settings_env: dict[str, str], client: EnrichmentClient, tmp_path: Path, mongo: Any
) -> None:
    path = tmp_path / "library.csv"
    path.write_text(CSV, encoding="utf-8")
    done = await enrichment({**settings_env, "COLUMNS": "200"}, "kick", "library", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    root_id = done.stdout.splitlines()[0].strip()
    # The bad rows on stderr, with their line numbers: stdout's first line is the root's id.
    assert "line 4: row: an album job needs an mbid or a title (not kicked)" in done.stderr
    assert "line 5: title: String should have at most 512 characters" in done.stderr
    assert "kicked 4 albums as one run" in done.stdout
    assert "failed 0" in done.stdout
    assert "remaining 0" in done.stdout
    family = await client.timeline(root_id)
    assert len([e for e in family.children if e.job_type == "enrich_album"]) == 4
