"""Shared HTTP plumbing: one configured `httpx.AsyncClient` per provider, status mapping."""

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from service.config import Settings
from service.errors import (
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ProviderUnavailableError,
)
from service.metrics import NO_ANSWER, PROVIDER_REQUESTS, provider_label
from service.providers.ratelimit import RequestTimer, SharedRateLimiter
from service.redaction import Redactor
from service.urls import display_url

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Answers that mean "you are over the limit": they pause the provider for every worker.
PAUSING_STATUSES = frozenset({429, 503})
MIN_PAUSE_SECONDS = 0.05
MAX_RETRY_AFTER_SECONDS = 300.0
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


def make_http_client(settings: Settings, base_url: str, **headers: str) -> httpx.AsyncClient:
    """An HTTP client with our User-Agent and sane timeouts that follows no redirect itself."""
    # Its one user, the image fetcher, judges every hop before it follows it.
    return _client(settings, base_url, headers, follow_redirects=False)


def make_provider_client(
    settings: Settings,
    provider: str,
    base_url: str,
    *,
    redirect_hosts: frozenset[str] = frozenset(),
    **headers: str,
) -> httpx.AsyncClient:
    """A client for one provider's API that sends nothing beyond the API's origin."""
    guard = OriginGuard(provider, base_url, redirect_hosts=redirect_hosts)
    hooks = {"request": [guard], "response": [count_answers(provider)]}
    return _client(settings, base_url, headers, follow_redirects=True, event_hooks=hooks)


def count_answers(provider: str) -> Callable[[httpx.Response], Awaitable[None]]:
    """A response hook counting each answer (every redirect hop) by provider and status."""
    label = provider_label(provider)

    async def count(response: httpx.Response) -> None:
        PROVIDER_REQUESTS.labels(label, str(response.status_code)).inc()

    return count


def _client(
    settings: Settings, base_url: str, headers: dict[str, str], **options: Any
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers={
            "User-Agent": settings.http_user_agent,
            "Accept": "application/json",
            **headers,
        },
        timeout=httpx.Timeout(settings.http_timeout_seconds, connect=5.0),
        **options,
    )


class OriginGuard:
    """A request hook that refuses any request outside the API's origin (scheme, host, port).

    httpx runs request hooks before every redirect hop, so a redirect to loopback, the cloud
    metadata address or anywhere else is refused (a permanent ProviderError) before it is sent.
    `redirect_hosts` (and their subdomains) are also allowed, over http or https: hosts where
    the provider itself keeps its answers, which we send no credential.
    """

    def __init__(
        self, provider: str, base_url: str, *, redirect_hosts: frozenset[str] = frozenset()
    ) -> None:
        base = httpx.URL(base_url)
        self._provider = provider
        self._origin = origin_of(base)
        self._shown = display_url(f"{base.scheme}://{base.netloc.decode('ascii')}")
        self._redirect_hosts = frozenset(host.lower() for host in redirect_hosts)

    async def __call__(self, request: httpx.Request) -> None:
        """Raise ProviderError unless `request` goes to an origin the provider may send us to."""
        if self.allows(request.url):
            return
        raise ProviderError(
            self._provider,
            f"refusing a request to {display_url(str(request.url))}: "
            f"outside the API's origin {self._shown}",
        )

    def allows(self, url: httpx.URL) -> bool:
        """Whether a request to `url` stays where the provider's API lives."""
        if origin_of(url) == self._origin:
            return True
        host = url.host.lower()
        named = any(host == h or host.endswith(f".{h}") for h in self._redirect_hosts)
        return named and url.scheme in DEFAULT_PORTS


def origin_of(url: httpx.URL) -> Origin:
    """Scheme, host and port of `url`, the port filled in from the scheme when implicit."""
    return url.scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(url.scheme)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), bounded."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None  # "inf" or "nan": no usable answer
    # The header is provider data: a hostile or broken one must not pause every worker for
    # years. Past the cap the job's own retries take over.
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def raise_for_status(
    provider: str, response: httpx.Response, *, secrets: tuple[str, ...] = ()
) -> None:
    """Map an HTTP error status onto the service's error tree; do nothing on success."""
    status = response.status_code
    if status < 400:
        return
    message = scrub(_error_message(response), secrets)
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ProviderUnavailableError(provider, message, status=status, retry_after=retry_after)
    if status == 404:
        raise NotFoundError(provider, message, status=status)
    if status in (400, 422):
        raise InvalidRequestError(f"{provider}: {message} (HTTP {status})")
    raise ProviderError(provider, message, status=status)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """The text with every secret replaced, in any case, encoding or 8-character run."""
    # Providers quote credentials back, sometimes upper-cased, URL-quoted or cut short.
    return Redactor(secrets).redact(text)


def _error_message(response: httpx.Response) -> str:
    # Providers answer errors as {"error": ...} or {"message": ...}; some send HTML or nothing.
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.reason_phrase or "error"


def json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; a body that is not one is a (transient) provider fault."""
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderUnavailableError(provider, "response is not JSON") from exc
    if not isinstance(body, dict):
        raise ProviderUnavailableError(provider, "response is not a JSON object")
    return body


class ProviderApi:
    """GET JSON from one provider: shared rate limit, retries with backoff, error mapping."""

    def __init__(
        self,
        provider: str,
        http: httpx.AsyncClient,
        limiter: SharedRateLimiter,
        *,
        retry_attempts: int = 3,
        backoff_seconds: float = 1.0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self._secrets = secrets
        self._http = http
        self._limiter = limiter
        self._retry_attempts = retry_attempts
        self._backoff = wait_exponential_jitter(multiplier=backoff_seconds, max=30)
        self._pause_seconds = max(backoff_seconds, MIN_PAUSE_SECONDS)

    async def get_json(
        self,
        path: str,
        params: dict[str, str],
        *,
        headers: dict[str, str] | None = None,
        on_response: Callable[[httpx.Response], None] | None = None,
    ) -> dict[str, Any]:
        """One GET, retried while the provider is unavailable; `on_response` sees every reply."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ProviderUnavailableError),
            stop=stop_after_attempt(self._retry_attempts),
            wait=self._wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._limiter.request() as timer:
                    response = await self._get(path, params, headers, timer)
                if on_response is not None:
                    on_response(response)
                if response.status_code in PAUSING_STATUSES:
                    await self._pause_everyone(response)
                raise_for_status(self.provider, response, secrets=self._secrets)
                return json_object(self.provider, response)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _get(
        self,
        path: str,
        params: dict[str, str],
        headers: dict[str, str] | None,
        timer: RequestTimer,
    ) -> httpx.Response:
        """One GET, timed for its budget slot, httpx's own failures mapped onto the error tree."""
        try:
            response = await self._http.get(
                path, params=params, headers=headers, extensions={"trace": timer.trace}
            )
            timer.answered = time.monotonic()
            return response
        except httpx.InvalidURL as exc:
            # No attempt, now or later, can send a URL httpx cannot build: it is bad input.
            message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
            raise InvalidRequestError(f"{self.provider}: {message}") from exc
        except httpx.UnsupportedProtocol as exc:
            # OriginGuard refuses any other scheme before it is sent, so this is the base URL's.
            message = f"the base URL's scheme is not http or https ({type(exc).__name__})"
            raise ConfigurationError(f"{self.provider}: {message}") from exc
        except httpx.TransportError as exc:
            # No answer, so no response hook counted it.
            PROVIDER_REQUESTS.labels(provider_label(self.provider), NO_ANSWER).inc()
            message = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
            raise ProviderUnavailableError(self.provider, message) from exc

    async def _pause_everyone(self, response: httpx.Response) -> None:
        # "Too many requests" is about all of us (MusicBrainz counts per IP, Discogs per
        # token): every worker pauses, as long as Retry-After asks (else one backoff step).
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        await self._limiter.pause(retry_after if retry_after is not None else self._pause_seconds)

    def _wait(self, state: RetryCallState) -> float:
        # Back off exponentially with jitter. Retry-After is the shared pause's business: the
        # next slot waits it out (for every worker, and off the job's time limit).
        error = state.outcome.exception() if state.outcome else None
        logger.info("%s unavailable (%s); retrying", self.provider, error)
        return float(self._backoff(state))
