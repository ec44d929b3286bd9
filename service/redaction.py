"""One redaction step for every text that leaves the process: log records and stored documents.

A provider may echo a token back upper-cased, URL-quoted or cut short, so a secret is matched
in any case, in its encoded forms, and by any run of `RUN_CHARS` of its characters that is
not a word. URLs lose their `user:password@` and the values of signing parameters (`sig`,
`token`, `X-Amz-*`…).

The configured secrets are process-wide, like logging itself: `protect(settings)` adds them
(never removes any, so two in-process workers with different tokens both stay covered) and
installs the log record factory once. Tests build their own `Redactor`.
"""

import logging
import re
from collections.abc import Iterable
from functools import cached_property
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

REDACTED = "[redacted]"
# Shorter echoes could be coincidence; longer ones are the secret leaking piecemeal.
RUN_CHARS = 8
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@]*@")
SIGNING_PARAMETERS = re.compile(
    r"(?i)([?&;](?:[a-z0-9_\-]*(?:sig|signature|token|secret|password|passwd|credential|auth)"
    r"[a-z0-9_\-]*|key|apikey|api_key|key-pair-id|policy|x-amz-[a-z\-]+|x-goog-[a-z\-]+)=)"
    r"[^&\s#\"'<>]+"
)


class Redactor:
    """Replaces secrets (in any case, encoding or 8-character run) and URL credentials."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | SecretStr | None) -> None:
        """Cover these secrets too (blank ones are ignored)."""
        values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets}
        fresh = {value for value in values if value and value.strip()} - self._secrets
        if fresh:
            self._secrets |= fresh
            self.__dict__.pop("_pattern", None)

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        runs = {run for secret in self._secrets for run in _runs(secret)}
        if not runs:
            return None
        # Longest first, so a short secret inside a longer one never splits a match.
        alternatives = "|".join(map(_alternative, sorted(runs, key=len, reverse=True)))
        # A lookahead finds every overlapping run; the spans are merged below.
        return re.compile(f"(?=({alternatives}))", re.IGNORECASE)

    def redact(self, text: str) -> str:
        """The text with URL credentials, signing parameters and every secret replaced."""
        text = URL_CREDENTIALS.sub(r"\1***@", text)
        text = SIGNING_PARAMETERS.sub(rf"\1{REDACTED}", text)
        pattern = self._pattern
        if pattern is None:
            return text
        spans = _merged((m.start(), m.start() + len(m.group(1))) for m in pattern.finditer(text))
        for start, end in reversed(spans):
            text = text[:start] + REDACTED + text[end:]
        return text


def _alternative(run: str) -> str:
    # A secret shorter than a run ("admin") is matched as a whole word only: anywhere, it
    # would rewrite ordinary text ("administrator").
    if len(run) < RUN_CHARS:
        return rf"(?<![0-9A-Za-z]){re.escape(run)}(?![0-9A-Za-z])"
    return re.escape(run)


def _runs(secret: str) -> set[str]:
    """The secret and its URL-encoded forms, whole and by every `RUN_CHARS`-long run.

    A run of letters only is left out: matched in any case it would hide ordinary words
    ("cloudfla" in "cloudflare" from a token that starts with the word). Its neighbours
    holding a digit or a symbol still catch a partial echo of a real, random token.
    """
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    runs: set[str] = set(forms)
    for form in forms:
        pieces = (form[i : i + RUN_CHARS] for i in range(len(form) - RUN_CHARS + 1))
        runs |= {piece for piece in pieces if not piece.isalpha()}
    return runs


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# The process's redactor: what log records and stored documents pass through.
PROCESS = Redactor()


def redact(text: str) -> str:
    """`text` through the process's redactor."""
    return PROCESS.redact(text)


def protect(*secrets: str | SecretStr | None) -> None:
    """Cover these secrets in this process's log records and stored documents."""
    PROCESS.add(*secrets)
    _install_log_redaction()


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
    # A record factory rather than a handler filter: it sees every record of every logger
    # (httpx, httpcore, taskiq included), whatever handlers a library or entry point adds.
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        # A malformed call: logging reports it when the record is emitted; keep it for that.
        message = redact(str(record.msg))
        record.msg = message
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


def _install_log_redaction() -> None:
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)
