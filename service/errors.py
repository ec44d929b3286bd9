"""The service's error tree: each error knows whether trying again can help."""


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


class InvalidRequestError(EnrichmentError):
    """A job's input cannot be processed as given."""


class JobTimeoutError(RetryableError):
    """A job ran longer than its time limit."""


class JobCancelledError(RetryableError):
    """A job was cancelled (worker shutdown) before it finished."""


class WaitTimeoutError(EnrichmentError, TimeoutError):
    """A job family did not finish within the time a caller was willing to wait."""

    def __init__(self, root_id: str, timeout: float, pending: list[str]) -> None:
        shown = ", ".join(pending[:5]) + (" …" if len(pending) > 5 else "")
        super().__init__(
            f"job family {root_id} not finished after {timeout:g}s; "
            f"{len(pending)} job(s) without a terminal log: {shown}"
        )
        self.root_id = root_id
        self.pending = pending
