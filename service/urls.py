"""URLs as they may appear in messages, logs and documents: never with credentials."""

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with any user:password replaced, fit for messages and logs."""
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at else url


def display_url(url: str) -> str:
    """The URL without query, fragment or user:password, safe for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
