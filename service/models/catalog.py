"""Catalogue documents the processors enrich: albums and artists, keyed by MBID."""

from datetime import datetime

from beanie import Document
from pydantic import ConfigDict
from pydantic.alias_generators import to_camel
from pymongo import ASCENDING, IndexModel

from service.models.base import CamelModel
from service.models.jobs import DiscogsImageRef


class CreditedArtist(CamelModel):
    """One artist credited on a release group."""

    mbid: str
    name: str


class LifeSpan(CamelModel):
    """When an artist (person or group) was active."""

    begin: str | None = None
    end: str | None = None
    ended: bool | None = None


class Album(Document):
    """An album (MusicBrainz release group)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    mbid: str
    title: str | None = None
    first_release_date: str | None = None
    primary_type: str | None = None
    genres: list[str] = []
    tags: list[str] = []
    cover_art_url: str | None = None
    artist_credit: list[CreditedArtist] = []
    cached_image_url: str | None = None
    cached_image_location: str | None = None
    enriched_at: datetime | None = None

    class Settings:
        name = "albums"
        indexes = [IndexModel([("mbid", ASCENDING)], unique=True)]


class Artist(Document):
    """An artist (person or group)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    mbid: str
    name: str | None = None
    sort_name: str | None = None
    country: str | None = None
    disambiguation: str | None = None
    life_span: LifeSpan | None = None
    genres: list[str] = []
    tags: list[str] = []
    discogs_id: int | None = None
    discogs_url: str | None = None
    profile: str | None = None
    images: list[DiscogsImageRef] = []
    discogs_genres: list[str] = []
    discogs_styles: list[str] = []
    cached_image_url: str | None = None
    cached_image_location: str | None = None
    enriched_at: datetime | None = None

    class Settings:
        name = "artists"
        indexes = [IndexModel([("mbid", ASCENDING)], unique=True)]
