"""A generated catalogue for benchmarks: N albums by M artists, the same for the same seed.

Every artist is on MusicBrainz and on Discogs (one primary photo, a master per album);
MusicBrainz links the Discogs id of half of them, the others are found by search. Every
album has one credited artist and a front cover. Names are distinct after Discogs-style
normalisation, so an exact name always wins a search outright (no tie, no ambiguous match).
"""

import random
from itertools import product

from service.demo.catalogue import (
    Catalogue,
    SampleAlbum,
    SampleArtist,
    SampleDiscogsArtist,
    SampleMaster,
)

# fmt: off
ARTIST_WORDS = (
    ("Amber", "Basalt", "Cinder", "Delta", "Ember", "Fable", "Granite", "Harbor", "Indigo",
     "Juniper", "Kestrel", "Lumen", "Marlow", "Nimbus", "Onyx", "Pallas", "Quarry", "Russet",
     "Sable", "Tundra", "Umber", "Velvet", "Willow", "Yarrow", "Zephyr"),
    ("Assembly", "Brigade", "Choir", "Collective", "Ensemble", "Foundry", "Guild", "Lanterns",
     "Machines", "Orchestra", "Parade", "Quartet", "Radio", "Society", "Signal", "Tapes",
     "Union", "Wolves"),
)
TITLE_WORDS = (
    ("Afternoon", "Borrowed", "Copper", "Distant", "Electric", "Faded", "Golden", "Hollow",
     "Iron", "Jade", "Lonely", "Midnight", "Northern", "Open", "Paper", "Quiet", "Restless",
     "Silver", "Tidal", "Winter", "Young"),
    ("Atlas", "Bridges", "Canyons", "Dreams", "Echoes", "Fields", "Gardens", "Harbors",
     "Islands", "Letters", "Mirrors", "Nights", "Oceans", "Rivers", "Seasons", "Signals",
     "Towers", "Waves"),
)
GENRES = ("ambient", "folk", "jazz", "dream pop", "post-rock", "afrobeat", "lo-fi", "techno")
COUNTRIES = ("GB", "US", "SE", "DE", "NG", "CA", "NZ", "JP")
# fmt: on
FIRST_DISCOGS_ID = 800_000
LINKED_SHARE = 0.5


def generate_catalogue(albums: int, artists: int, *, seed: int = 0) -> Catalogue:
    """`albums` albums by `artists` artists, each artist on albums/artists of them (±1)."""
    if not 0 < artists <= albums:
        raise ValueError("give at least one artist and no more artists than albums")
    rng = random.Random(seed)  # noqa: S311 - invented data, the same for the same seed
    names = _distinct(rng, ARTIST_WORDS, artists)
    titles = _distinct(rng, TITLE_WORDS, albums)
    linked = set(rng.sample(range(artists), round(artists * LINKED_SHARE)))
    # Round robin, then shuffled: repeated artists spread through the library.
    credits = [index % artists for index in range(albums)]
    rng.shuffle(credits)
    album_list = [
        _album(rng, number, title, names[credit])
        for number, (title, credit) in enumerate(zip(titles, credits, strict=True))
    ]
    mb_artists, discogs_artists = {}, {}
    for index, name in enumerate(names):
        discogs_id = FIRST_DISCOGS_ID + index
        link = discogs_id if index in linked else None
        mb_artists[name] = _artist(rng, name, link)
        own = [album for album in album_list if album.artists[0] == name]
        discogs_artists[discogs_id] = _discogs_artist(discogs_id, name, own)
    return Catalogue(mb_artists, {album.title: album for album in album_list}, discogs_artists)


def _distinct(rng: random.Random, words: tuple[tuple[str, ...], ...], count: int) -> list[str]:
    combinations = [" ".join(pair) for pair in product(*words)]
    if count > len(combinations):
        raise ValueError(f"at most {len(combinations)} distinct names: asked for {count}")
    return rng.sample(combinations, count)


def _artist(rng: random.Random, name: str, discogs_id: int | None) -> SampleArtist:
    kind, country = rng.choice(("Group", "Person")), rng.choice(COUNTRIES)
    begin, genres = str(rng.randint(1960, 2015)), tuple(rng.sample(GENRES, 2))
    return SampleArtist(name, name, kind, country, "", begin, genres=genres, discogs_id=discogs_id)


def _album(rng: random.Random, number: int, title: str, artist: str) -> SampleAlbum:
    released = f"{rng.randint(1970, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    genres = (rng.choice(GENRES),)
    return SampleAlbum(title, (artist,), released, genres=genres, cover=f"cover-{number:04d}.png")


def _discogs_artist(discogs_id: int, name: str, albums: list[SampleAlbum]) -> SampleDiscogsArtist:
    masters = tuple(
        SampleMaster(
            album.title,
            int(album.first_release_date[:4]),
            tuple(genre.title() for genre in album.genres),
            (),
        )
        for album in albums
    )
    photo = ("primary", f"photo-{discogs_id}.jpg", 600, 400)
    return SampleDiscogsArtist(
        discogs_id, name, f"{name}: an invented artist.", images=(photo,), masters=masters
    )
