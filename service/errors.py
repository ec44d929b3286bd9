"""The service's error tree: each error knows whether trying again can help.

EnrichmentError                    raised on purpose; `retryable = False`
├── ConfigurationError             settings that cannot work
├── MigrationError                 the store refused a migration batch
├── LogRefusedError                the store refused a log document (not a blip)
├── InvalidRequestError            a job's input cannot be processed as given
├── WaitTimeoutError               (also TimeoutError) a family did not finish in time
├── ProviderError                  an external API refused; a retry will not help
│   ├── NotFoundError              the API does not know the entity
│   └── ProviderUnavailableError   (retryable) overloaded, rate limiting, failing
├── ImageFetchError                an image could not be fetched
│   ├── UnsafeUrlError             the URL or a redirect points where we never connect
│   ├── ImageTooLargeError         the body (bytes) or the canvas (pixels) is over its cap
│   ├── NotAnImageError            Pillow cannot identify, verify and decode the bytes
│   └── ImageDownloadError         (retryable) server error, throttling, network
├── ImageStoreError                storing an image failed for good
│   └── ImageStoreUnavailableError (retryable)
└── RetryableError                 `retryable = True`: a later attempt may succeed
    ├── StoreUnavailableError      the document store
    ├── BrokerUnavailableError     Redis
    ├── JobTimeoutError            a job ran past its time limit
    ├── JobCancelledError          the worker shut down mid-job
    └── WorkerLostError            the worker holding an attempt went silent past its lease
"""

from service.urls import display_url


class EnrichmentError(Exception):
    """Base of every error the service raises on purpose."""

    retryable = False


class RetryableError(EnrichmentError):
    """A transient failure: the same job may succeed on a later attempt."""

    retryable = True


class ConfigurationError(EnrichmentError):
    """The service is configured in a way that cannot work."""


class StoreUnavailableError(RetryableError):
    """The document store could not be reached."""


class MigrationError(EnrichmentError):
    """The store refused one of the migration's batches."""


class BrokerUnavailableError(RetryableError):
    """The message broker (Redis) could not be reached."""


class ProviderError(EnrichmentError):
    """An external API answered with an error that a retry will not fix."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))
        self.provider = provider
        self.status = status


class ProviderUnavailableError(ProviderError, RetryableError):
    """An external API is overloaded, rate limiting, failing or unreachable."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class NotFoundError(ProviderError):
    """The external API does not know the requested entity."""


class ImageFetchError(EnrichmentError):
    """An image could not be fetched; `url` is shown without query, fragment or credentials."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = display_url(url)
        self.status = status


class UnsafeUrlError(ImageFetchError):
    """The URL (or a redirect hop) points somewhere we refuse to connect to."""


class ImageTooLargeError(ImageFetchError):
    """The body has more bytes, or the image more pixels, than the configured caps allow."""


class NotAnImageError(ImageFetchError):
    """The bytes are not a whole image Pillow can identify, verify and decode."""


class ImageDownloadError(ImageFetchError, RetryableError):
    """A transient failure: server error, throttling, network error or timeout."""


class ImageStoreError(EnrichmentError):
    """Storing an image failed in a way a retry will not fix (bad request, auth, format)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ImageStoreUnavailableError(ImageStoreError, RetryableError):
    """The image store is unreachable, rate limiting or failing; a later attempt may succeed."""


class InvalidRequestError(EnrichmentError):
    """A job's input cannot be processed as given."""


class JobTimeoutError(RetryableError):
    """A job ran longer than its time limit."""


class JobCancelledError(RetryableError):
    """A job was cancelled (worker shutdown) before it finished."""


class WorkerLostError(RetryableError):
    """The worker holding an attempt stopped renewing its lease (killed, crashed, cut off)."""


class LogRefusedError(EnrichmentError):
    """The store refused a log document (not a connection fault): retrying will not help."""


class WaitTimeoutError(EnrichmentError, TimeoutError):
    """A job family did not finish within the time a caller was willing to wait."""

    def __init__(self, root_id: str, timeout: float, pending: list[str]) -> None:
        shown = "; ".join(pending[:5]) + (" …" if len(pending) > 5 else "")
        super().__init__(
            f"job family {root_id} not finished after {timeout:g}s; "
            f"{len(pending)} job(s) unfinished: {shown}"
        )
        self.root_id = root_id
        self.pending = pending
