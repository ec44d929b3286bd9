"""What store data may reach a Streamlit call: inert text, and only images we vouch for.

Everything a log document holds came from a provider, a user or a URL, so it is untrusted.
Streamlit renders labels, titles, captions and alerts as Markdown, and `st.image` reads any
string that is not a URL as a path on the server: both are closed here, and pages use these
helpers instead of passing store values on. Images reach the browser only as bytes read here
from the image cache: a URL in a document is shown as text (see `dashboard.cards`).
"""

import re
import string
import warnings
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

# Long enough for any real name or message; a 5 MB name must not become a 5 MB page.
MAX_CHARS = 200
MAX_MESSAGE_CHARS = 1_000
# CommonMark lets a backslash escape any ASCII punctuation, and an escaped character is
# always literal: links, images, emphasis, HTML, Streamlit's `:colour[...]` directives and
# `$` maths all start with one. Streamlit has no plain-text option for labels, so we escape.
_ESCAPED = str.maketrans({char: f"\\{char}" for char in string.punctuation})
_LINE_BREAKS = str.maketrans(dict.fromkeys("\r\n\t\v\f\u2028\u2029", " "))
# GitHub-flavoured Markdown turns bare `https://…`, `www.…` and `name@host` text into links
# after escapes are resolved, so escaping cannot stop it: an invisible WORD JOINER after the
# scheme, the `www` or the `@` breaks the pattern and leaves the text readable.
_AUTOLINKS = re.compile(r"(?i)(\b(?:https?|ftp|mailto|xmpp)(?=:)|\bwww(?=\.)|@)")
_WORD_JOINER = "\u2060"
_IMAGE_SCHEMES = frozenset({"http", "https"})


def clip(value: object, limit: int = MAX_CHARS) -> str:
    """The value as one line of text, at most `limit` characters (for tables and charts)."""
    text = "" if value is None else str(value)
    text = text[: limit + 1].translate(_LINE_BREAKS)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(value: object, limit: int = MAX_CHARS) -> str:
    """The value as inert Markdown: shown exactly as written, one line, bounded."""
    text = _AUTOLINKS.sub(rf"\1{_WORD_JOINER}", clip(value, limit))
    return text.translate(_ESCAPED)


def browser_image(url: str | None, *, fetched: bool) -> str | None:
    """A remote URL the viewer's browser could load: http(s), and fetched by the worker.

    The worker fetched it only after every hop passed its address check, so a browser sent
    there never reaches an address the worker refused (an intranet host, a tracker on
    loopback). The pages hand the browser no image URL at all (one that fails to load shows
    a broken image); `scripts.security_check` still probes this rule.
    """
    if not url or not fetched or url != url.strip():
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in _IMAGE_SCHEMES and parts.hostname else None


def cached_image(relative: str | None, cache_dir: Path | None, max_pixels: int) -> bytes | None:
    """The bytes of a file inside the image cache, when it is an image of bounded size."""
    if not relative or cache_dir is None:
        return None
    root = cache_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    data = path.read_bytes()
    # Streamlit decodes and resizes what it is given: check the canvas first (header only).
    try:
        with warnings.catch_warnings():
            # Pillow warns about big canvases; the cap below is the decision.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None
    return data if width * height <= max_pixels else None
