"""MusicBrainz and Cover Art Archive answers from a catalogue (the demo's unless told)."""

import re
from difflib import SequenceMatcher
from typing import Any

from service.demo.catalogue import DEMO_CATALOGUE, Catalogue, SampleAlbum, SampleArtist

MBID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
LUCENE_FIELD = re.compile(r'(\w+):"((?:[^"\\]|\\.)*)"')
MIN_SEARCH_SCORE = 30
NOT_FOUND = {"error": "Not Found", "help": "For usage, please see the docs"}


def musicbrainz(
    path: str, query: dict[str, str], catalogue: Catalogue = DEMO_CATALOGUE
) -> tuple[int, Any]:
    """Status and JSON body for a path under `/ws/2/`."""
    kind, _, mbid = path.partition("/")
    if kind not in ("artist", "release-group"):
        return 404, NOT_FOUND
    if not mbid:
        return 200, _search(kind, query, catalogue)
    if not MBID.match(mbid):
        return 400, {"error": "Invalid mbid.", "help": "For usage, please see the docs"}
    if kind == "artist":
        artist = next((a for a in catalogue.artists.values() if a.mbid == mbid), None)
        if artist is not None and artist.broken:
            return 500, {"error": "Internal server error"}
        found = _artist_json(artist) if artist else None
    else:
        album = next((a for a in catalogue.albums.values() if a.mbid == mbid), None)
        found = _release_group_json(album, catalogue) if album else None
    return (200, found) if found is not None else (404, NOT_FOUND)


def coverart(mbid: str, images_url: str, catalogue: Catalogue = DEMO_CATALOGUE) -> tuple[int, Any]:
    """Status and JSON body for `/release-group/<mbid>` on the Cover Art Archive."""
    album = next((a for a in catalogue.albums.values() if a.mbid == mbid), None)
    if album is None or album.cover is None:
        return 404, {"error": "Not Found"}
    image = f"{images_url}/{album.cover}"
    entry = {
        "id": 1000 + len(album.title),
        "image": image,
        "types": ["Front"],
        "front": True,
        "back": False,
        "approved": True,
        "comment": "",
        "edit": 1,
        "thumbnails": {"250": image, "500": image, "1200": image, "small": image, "large": image},
    }
    return 200, {"images": [entry], "release": f"https://musicbrainz.org/release/{mbid}"}


def similarity(a: str, b: str) -> int:
    """0–100, like a search engine's score."""
    return round(100 * SequenceMatcher(None, a.lower(), b.lower()).ratio())


def _search(kind: str, query: dict[str, str], catalogue: Catalogue) -> dict[str, Any]:
    terms = {k: v.replace('\\"', '"') for k, v in LUCENE_FIELD.findall(query.get("query", ""))}
    limit = int(query.get("limit", "25"))
    if kind == "artist":
        key = "artists"
        scored = [
            (similarity(terms.get("artist", ""), a.name), _artist_json(a))
            for a in catalogue.artists.values()
        ]
    else:
        key = "release-groups"
        scored = [
            (_album_score(terms, a), _release_group_json(a, catalogue))
            for a in catalogue.albums.values()
        ]
    hits = sorted(((s, item) for s, item in scored if s >= MIN_SEARCH_SCORE), key=lambda h: -h[0])
    results = [{**item, "score": score} for score, item in hits[:limit]]
    return {"created": "2026-11-24T00:00:00.000Z", "count": len(hits), "offset": 0, key: results}


def _album_score(terms: dict[str, str], album: SampleAlbum) -> int:
    title = similarity(terms.get("releasegroup", ""), album.title)
    if "artist" not in terms:
        return title
    artist = max(similarity(terms["artist"], name) for name in album.artists)
    return round(0.7 * title + 0.3 * artist)


def _artist_json(artist: SampleArtist) -> dict[str, Any]:
    relations = []
    if artist.discogs_id is not None:
        relations.append(
            {
                "type": "discogs",
                "type-id": "04a5b104-a4c2-4bac-99a1-7b837c37d9e4",
                "direction": "forward",
                "target-type": "url",
                "attributes": [],
                "url": {
                    "id": "b7d1c0aa-1111-4c2d-9e3f-0a1b2c3d4e5f",
                    "resource": f"https://www.discogs.com/artist/{artist.discogs_id}",
                },
            }
        )
    return {
        "id": artist.mbid,
        "name": artist.name,
        "sort-name": artist.sort_name,
        "type": artist.type,
        "country": artist.country,
        "disambiguation": artist.disambiguation,
        "life-span": {"begin": artist.begin, "end": artist.end, "ended": artist.end is not None},
        "genres": [{"id": "", "name": g, "disambiguation": "", "count": 3} for g in artist.genres],
        "tags": [{"count": 2, "name": g} for g in artist.genres],
        "relations": relations,
    }


def _release_group_json(album: SampleAlbum, catalogue: Catalogue) -> dict[str, Any]:
    credits = []
    for index, name in enumerate(album.artists):
        artist = catalogue.artists[name]
        joinphrase = " & " if index < len(album.artists) - 1 else ""
        credits.append(
            {
                "name": name,
                "joinphrase": joinphrase,
                "artist": {"id": artist.mbid, "name": name, "sort-name": artist.sort_name},
            }
        )
    return {
        "id": album.mbid,
        "title": album.title,
        "primary-type": album.primary_type,
        "secondary-types": [],
        "first-release-date": album.first_release_date,
        "artist-credit": credits,
        "genres": [{"id": "", "name": g, "disambiguation": "", "count": 2} for g in album.genres],
        "tags": [{"count": 1, "name": g} for g in album.genres],
    }
