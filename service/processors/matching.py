"""Matching a MusicBrainz artist to a Discogs artist: normalised names, fuzzy confidence."""

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from rapidfuzz import fuzz

DISAMBIGUATION_SUFFIX = re.compile(r"\s*\(\d+\)\s*$")  # Discogs' "Nirvana (2)"
LEADING_THE = re.compile(r"^the\s+")
NOT_WORD = re.compile(r"[^\w\s]+")
SPACES = re.compile(r"\s+")


def normalise_name(name: str) -> str:
    """Lower case, no accents, no punctuation, no leading "The", "&" as "and", no "(2)"."""
    name = DISAMBIGUATION_SUFFIX.sub("", name)
    decomposed = unicodedata.normalize("NFKD", name)
    name = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    name = name.replace("&", " and ")
    name = NOT_WORD.sub(" ", name)
    return LEADING_THE.sub("", SPACES.sub(" ", name).strip())


def confidence(query: str, name: str, variations: Iterable[str] = ()) -> float:
    """How sure we are that `name` (or one of its variations) is `query`, in [0, 1]."""
    wanted = normalise_name(query)
    if not wanted:
        return 0.0  # "!!!" and "???" both normalise to nothing: that is no evidence
    scores = [fuzz.ratio(wanted, normalise_name(c)) for c in (name, *variations) if c]
    return round(max(scores, default=0.0) / 100, 4)


def most_frequent(values: Iterable[str]) -> list[str]:
    """Distinct values, the most frequent first (ties keep first-seen order)."""
    return [value for value, _ in Counter(values).most_common()]


# Discogs profile markup: [a=Name] [l=Label] [url=...]text[/url] [b]...[/b] [a123] [r=456] ...
_NAMED_LINK = re.compile(r"\[(?:a|l)=([^\]]+?)(?: \(\d+\))?\]")
_URL_LINK = re.compile(r"\[url=[^\]]*\](.*?)\[/url\]", re.IGNORECASE | re.DOTALL)
_ID_LINK = re.compile(r"\[(?:a|l|r|m)=?\d+\]")
_STYLE_TAG = re.compile(r"\[/?(?:b|i|u|s)\]", re.IGNORECASE)


def profile_text(markup: str | None) -> str | None:
    """Discogs profile markup as plain text."""
    if not markup:
        return None
    text = _URL_LINK.sub(r"\1", markup)
    text = _NAMED_LINK.sub(r"\1", text)
    text = _ID_LINK.sub("", _STYLE_TAG.sub("", text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[ \t]+", " ", text).strip() or None
