"""What store data may reach a Streamlit call: inert text, and only images we vouch for.

Everything a log document holds came from a provider, a user or a URL, so it is untrusted.
Streamlit renders labels, titles, captions and alerts as Markdown, and `st.image` reads any
string that is not a URL as a path on the server: both are closed here, and pages use these
helpers instead of passing store values on. Images reach the browser only as thumbnails made
here from the image cache: a URL in a document is shown as text (see `dashboard.cards`).
"""

import re
import string
import warnings
from base64 import b64encode
from functools import lru_cache
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


def cached_thumbnail(
    relative: str | None, cache_dir: Path | None, max_pixels: int, width: int
) -> str | None:
    """A file inside the image cache as a `data:` URI thumbnail, when it is a bounded image.

    The thumbnail travels inside the page: Streamlit serves bytes handed to `st.image` from
    its media store, which drops a file whenever a script run ends without it (another
    visitor's run, a run cut short), and a browser that asks for it then draws a broken
    image for good. A few kilobytes re-encoded here cannot go missing, and carry nothing of
    the original file but its pixels.
    """
    if not relative or cache_dir is None:
        return None
    root = cache_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    stat = path.stat()
    return _thumbnail(str(path), stat.st_mtime_ns, stat.st_size, max_pixels, width)


@lru_cache(maxsize=512)  # keyed by the file's version: a rewritten file is read again
def _thumbnail(path: str, mtime_ns: int, size: int, max_pixels: int, width: int) -> str | None:
    del mtime_ns, size  # only part of the cache key
    try:
        with warnings.catch_warnings():
            # Pillow warns about big canvases; the cap below is the decision.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                # The canvas is checked from the header, before anything is decoded.
                if image.width * image.height > max_pixels:
                    return None
                image.draft("RGB", (width * 2, width * 2))  # JPEG: decode at a reduced scale
                # Twice the shown width stays sharp on a high-density screen.
                image.thumbnail((width * 2, width * 8))
                return image_uri(image)
    # Decoding, not only the header, now happens here: Pillow's plugins also raise
    # SyntaxError and EOFError on a broken file, which must cost a placeholder, not the page.
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError):  # fmt: skip
        return None


def image_uri(image: Image.Image, *, lossless: bool = False) -> str:
    """`image` as a `data:` URI: PNG when asked or when it has transparency, else JPEG."""
    buffer = BytesIO()
    if lossless or image.mode in ("RGBA", "LA", "P") or "transparency" in image.info:
        image.convert("RGBA").save(buffer, "PNG", optimize=True)
        kind = "png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{b64encode(buffer.getvalue()).decode('ascii')}"
