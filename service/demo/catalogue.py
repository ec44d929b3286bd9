"""A small invented catalogue the local provider servers answer from."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

_NAMESPACE = uuid.UUID("0b9d3c8e-5a4f-4b1e-8f6d-2c7a9e1f3b5d")


def mbid_for(name: str) -> str:
    """A stable MBID for an invented entity."""
    return str(uuid.uuid5(_NAMESPACE, name))


@dataclass(frozen=True)
class SampleArtist:
    """An artist in the sample catalogue."""

    name: str
    sort_name: str
    type: str
    country: str | None
    disambiguation: str
    begin: str | None
    end: str | None = None
    genres: tuple[str, ...] = ()
    discogs_id: int | None = None
    # The local MusicBrainz answers 500 to every lookup of this artist: a provider error.
    broken: bool = False

    @property
    def mbid(self) -> str:
        """The artist's MBID."""
        return mbid_for(f"artist:{self.name}")


@dataclass(frozen=True)
class SampleAlbum:
    """An album (release group) in the sample catalogue."""

    title: str
    artists: tuple[str, ...]
    first_release_date: str
    primary_type: str = "Album"
    genres: tuple[str, ...] = ()
    # The front cover's file on the local image host; None: the archive has no cover.
    cover: str | None = None

    @property
    def mbid(self) -> str:
        """The release group's MBID."""
        return mbid_for(f"release-group:{self.title}")


# fmt: off
ARTISTS = {
    artist.name: artist
    for artist in (
        SampleArtist(
            "Vela Nord", "Vela Nord", "Group", "SE", "Swedish ambient duo", "2008",
            genres=("ambient", "electronic"), discogs_id=402117,
        ),
        SampleArtist(
            "Mira Kestrel", "Kestrel, Mira", "Person", "GB", "", "1986",
            genres=("folk", "indie folk"), discogs_id=518820,
        ),
        SampleArtist(
            "Harbor Lights", "Harbor Lights", "Group", "US", "Portland dream pop band", "2012",
            end="2021", genres=("dream pop",),
        ),
        SampleArtist(
            "Okonkwo Brass Collective", "Okonkwo Brass Collective", "Group", "NG", "", "1999",
            genres=("afrobeat", "jazz"),
        ),
        SampleArtist("Static Orchard", "Static Orchard", "Group", "CA", "", "2015", broken=True),
        SampleArtist(
            "Quiet Cartographer", "Quiet Cartographer", "Person", "NZ", "", "1990",
            genres=("lo-fi",),
        ),
    )
}

ALBUMS = {
    album.title: album
    for album in (
        SampleAlbum(
            "Tidal Glass", ("Vela Nord",), "2011-03-14", genres=("ambient",),
            cover="tidal-glass.png",
        ),
        SampleAlbum(
            "Northern Drift", ("Vela Nord", "Mira Kestrel"), "2016-10-07",
            genres=("ambient", "folk"), cover="northern-drift.jpg",
        ),
        SampleAlbum(
            "Paper Harbors", ("Harbor Lights", "Mira Kestrel"), "2014-05-30",
            genres=("dream pop",),
        ),
        SampleAlbum(
            "Lagos Night Shift", ("Okonkwo Brass Collective",), "2003-02-11",
            genres=("afrobeat",), cover="oversized.png",
        ),
        SampleAlbum(
            "Copper Wires", ("Static Orchard",), "2019-09-20", primary_type="EP",
            cover="not-an-image.jpg",
        ),
        # The same artwork as Tidal Glass: the cache stores those bytes once.
        SampleAlbum(
            "Atlas of Small Hours", ("Quiet Cartographer",), "2021-06-04", genres=("lo-fi",),
            cover="tidal-glass.png",
        ),
    )
}
# fmt: on


@dataclass(frozen=True)
class SampleMaster:
    """A Discogs master release: where Discogs keeps genres and styles."""

    title: str
    year: int
    genres: tuple[str, ...]
    styles: tuple[str, ...]


@dataclass(frozen=True)
class SampleDiscogsArtist:
    """An artist on the local Discogs."""

    id: int
    name: str
    profile: str = ""
    namevariations: tuple[str, ...] = ()
    # (type, file on the local image host, width, height)
    images: tuple[tuple[str, str, int, int], ...] = ()
    masters: tuple[SampleMaster, ...] = ()


DISCOGS_ARTISTS = {
    artist.id: artist
    for artist in (
        SampleDiscogsArtist(
            402117,
            "Vela Nord",
            "Swedish ambient duo formed in [b]Malmö[/b] by [a=Ida Lind] and [a=Omar Saleh].\r\n"
            "Known for long-form pieces; see [url=https://velanord.example.se]their site[/url].",
            ("Vela-Nord", "V. Nord"),
            (("primary", "vela-nord.jpg", 600, 400), ("secondary", "vela-nord-live.png", 300, 300)),
            (
                SampleMaster("Tidal Glass", 2011, ("Electronic",), ("Ambient", "Drone")),
                SampleMaster("Northern Drift", 2016, ("Electronic", "Folk"), ("Ambient",)),
            ),
        ),
        SampleDiscogsArtist(
            518820,
            "Mira Kestrel",
            "English singer-songwriter.",
            ("M. Kestrel",),
            (("primary", "mira-kestrel.png", 500, 500),),
            (
                SampleMaster("Northern Drift", 2016, ("Electronic", "Folk"), ("Ambient",)),
                SampleMaster("Hollow Oak", 2013, ("Folk",), ("Indie Folk", "Acoustic")),
            ),
        ),
        # Found by search: the numeric suffix is Discogs' way of telling equal names apart.
        SampleDiscogsArtist(
            611203,
            "Okonkwo Brass Collective (2)",
            "Lagos afrobeat big band.",
            images=(("primary", "okonkwo.jpg", 640, 480),),
            masters=(
                SampleMaster("Lagos Night Shift", 2003, ("Jazz", "Funk / Soul"), ("Afrobeat",)),
            ),
        ),
        SampleDiscogsArtist(611202, "Okonkwo Brass"),
        # Close to "Harbor Lights", not close enough: the match is ambiguous.
        SampleDiscogsArtist(733001, "Harbour Lights Orchestra", "Light orchestral group."),
        # Two artists of one name: a search cannot tell them apart.
        SampleDiscogsArtist(733101, "Static Orchard", "Canadian noise rock band."),
        SampleDiscogsArtist(733102, "Static Orchard (2)", "Dutch ambient project."),
        # Nothing like "Quiet Cartographer": no match.
        SampleDiscogsArtist(733002, "Quiet Riot", "Heavy metal band."),
    )
}


@dataclass(frozen=True)
class Catalogue:
    """What the local providers know: MusicBrainz artists and albums, Discogs artists."""

    artists: Mapping[str, SampleArtist]  # by name
    albums: Mapping[str, SampleAlbum]  # by title
    discogs_artists: Mapping[int, SampleDiscogsArtist]  # by Discogs id


# The demo's catalogue: what the local providers serve unless given another.
DEMO_CATALOGUE = Catalogue(ARTISTS, ALBUMS, DISCOGS_ARTISTS)

# Roots the demo kicks: by title + artist, by MBID, one unknown album, one artist by name.
DEMO_ALBUM_QUERIES: tuple[tuple[str, str], ...] = (
    ("Tidal Glass", "Vela Nord"),
    ("Northern Drift", "Vela Nord"),
    ("Paper Harbors", "Harbor Lights"),
    ("Copper Wires", "Static Orchard"),
    ("The Album That Never Was", "Nobody In Particular"),
    ("Atlas of Small Hours", "Quiet Cartographer"),
)
DEMO_ALBUM_MBIDS: tuple[str, ...] = (ALBUMS["Lagos Night Shift"].mbid,)
DEMO_ARTIST_NAMES: tuple[str, ...] = ("Mira Kestrel",)
