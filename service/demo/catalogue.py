"""A small invented catalogue the local provider servers answer from."""

import uuid
from dataclasses import dataclass, field

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
    has_cover: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def mbid(self) -> str:
        """The release group's MBID."""
        return mbid_for(f"release-group:{self.title}")


ARTISTS = {
    artist.name: artist
    for artist in (
        SampleArtist(
            "Vela Nord",
            "Vela Nord",
            "Group",
            "SE",
            "Swedish ambient duo",
            "2008",
            genres=("ambient", "electronic"),
            discogs_id=402117,
        ),
        SampleArtist(
            "Mira Kestrel",
            "Kestrel, Mira",
            "Person",
            "GB",
            "",
            "1986",
            genres=("folk", "indie folk"),
            discogs_id=518820,
        ),
        SampleArtist(
            "Harbor Lights",
            "Harbor Lights",
            "Group",
            "US",
            "Portland dream pop band",
            "2012",
            end="2021",
            genres=("dream pop",),
        ),
        SampleArtist(
            "Okonkwo Brass Collective",
            "Okonkwo Brass Collective",
            "Group",
            "NG",
            "",
            "1999",
            genres=("afrobeat", "jazz"),
        ),
        SampleArtist(
            "Static Orchard",
            "Static Orchard",
            "Group",
            "CA",
            "",
            "2015",
            broken=True,
        ),
    )
}

ALBUMS = {
    album.title: album
    for album in (
        SampleAlbum("Tidal Glass", ("Vela Nord",), "2011-03-14", genres=("ambient",)),
        SampleAlbum(
            "Northern Drift",
            ("Vela Nord", "Mira Kestrel"),
            "2016-10-07",
            genres=("ambient", "folk"),
        ),
        SampleAlbum(
            "Paper Harbors",
            ("Harbor Lights", "Mira Kestrel"),
            "2014-05-30",
            genres=("dream pop",),
            has_cover=False,
        ),
        SampleAlbum(
            "Lagos Night Shift",
            ("Okonkwo Brass Collective",),
            "2003-02-11",
            primary_type="Album",
            genres=("afrobeat",),
        ),
        SampleAlbum("Copper Wires", ("Static Orchard",), "2019-09-20", primary_type="EP"),
    )
}

# Roots the demo kicks: by title + artist, by MBID, one unknown album, one artist by name.
DEMO_ALBUM_QUERIES: tuple[tuple[str, str], ...] = (
    ("Tidal Glass", "Vela Nord"),
    ("Northern Drift", "Vela Nord"),
    ("Paper Harbors", "Harbor Lights"),
    ("Copper Wires", "Static Orchard"),
    ("The Album That Never Was", "Nobody In Particular"),
)
DEMO_ALBUM_MBIDS: tuple[str, ...] = (ALBUMS["Lagos Night Shift"].mbid,)
DEMO_ARTIST_NAMES: tuple[str, ...] = ("Mira Kestrel",)
