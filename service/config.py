"""One typed settings object: every environment variable the service reads."""

from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from limits import RateLimitItem, parse
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service import __version__
from service.errors import ConfigurationError

DEFAULT_USER_AGENT = (
    f"MusicCatalogueEnrichment/{__version__} ( https://github.com/music-catalogue/enrichment )"
)
# Job retries back off exponentially up to this many seconds (plus jitter).
MAX_RETRY_DELAY_SECONDS = 60.0
# At most one heartbeat write per running attempt this often (less with short leases).
HEARTBEAT_SECONDS = 10.0


class Settings(BaseSettings):
    """Service settings, read from the environment and an optional `.env` file."""

    # Validation errors never quote what was given: the value may be a password or a token.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    mongodb_url: str | None = Field(default=None, alias="MONGODB_URL")
    mongodb_db: str = Field(default="enrichment", alias="MONGODB_DB")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    # Where rate-limit windows live; unset → REDIS_URL, shared by every worker. The demo
    # uses `memory://` when it runs without Redis.
    rate_limit_storage_url: str | None = Field(default=None, alias="RATE_LIMIT_STORAGE_URL")
    # Budgets sharing one name share one budget. Deployments whose budgets differ (another
    # Discogs token, another egress IP) on one Redis each set their own; tests set one each.
    rate_limit_namespace: str | None = Field(
        default=None, alias="RATE_LIMIT_NAMESPACE", max_length=100
    )
    queue_name: str = Field(default="enrichment", alias="ENRICHMENT_QUEUE")
    data_dir: Path = Field(default=Path(".data"), alias="ENRICHMENT_DATA_DIR")
    embedded_store_port: int = Field(default=27018, alias="EMBEDDED_STORE_PORT", ge=1, le=65535)
    # Past this many logs the embedded store is out of its depth (its aggregations run in
    # Python, document by document: seconds for a 10,000-job family's roll-up): say so.
    embedded_store_notice_logs: int = Field(default=5_000, alias="EMBEDDED_STORE_NOTICE_LOGS", ge=0)

    musicbrainz_base_url: str = Field(
        default="https://musicbrainz.org/ws/2", alias="MUSICBRAINZ_BASE_URL"
    )
    coverart_base_url: str = Field(default="https://coverartarchive.org", alias="COVERART_BASE_URL")
    discogs_base_url: str = Field(default="https://api.discogs.com", alias="DISCOGS_BASE_URL")
    discogs_token: SecretStr | None = Field(default=None, alias="DISCOGS_TOKEN")
    # 60 requests a minute per token, shared by all workers.
    discogs_rate_limit: str = Field(default="60/minute", alias="DISCOGS_RATE_LIMIT")
    discogs_match_threshold: float = Field(
        default=0.85, alias="DISCOGS_MATCH_THRESHOLD", ge=0, le=1
    )
    discogs_ambiguous_threshold: float = Field(
        default=0.6, alias="DISCOGS_AMBIGUOUS_THRESHOLD", ge=0, le=1
    )

    image_cache_dir: Path | None = Field(default=None, alias="IMAGE_CACHE_DIR")
    # Path-only URL prefix under which the dashboard serves the local image cache.
    image_public_base_url: str = Field(default="/images", alias="IMAGE_PUBLIC_BASE_URL")
    image_max_bytes: int = Field(default=15 * 1024 * 1024, alias="IMAGE_MAX_BYTES", gt=0)
    # An image is decoded in full before it is accepted; a small file can declare a huge
    # canvas (144 megapixels in 140 KB), so the pixel count is capped before decoding.
    image_max_pixels: int = Field(default=40_000_000, alias="IMAGE_MAX_PIXELS", gt=0)
    # One deadline for a whole download, redirects included: the HTTP timeout is per read,
    # so a server dripping one byte a second would otherwise hold a slot for hours.
    image_fetch_deadline_seconds: float = Field(
        default=30.0, alias="IMAGE_FETCH_DEADLINE_SECONDS", gt=0
    )
    # Hosts exempt from the public-address check (comma-separated): the demo's and the tests'
    # local image servers. Empty by default.
    image_fetch_allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), alias="IMAGE_FETCH_ALLOWED_HOSTS"
    )
    cloudflare_account_id: str | None = Field(default=None, alias="CLOUDFLARE_ACCOUNT_ID")
    cloudflare_api_token: SecretStr | None = Field(default=None, alias="CLOUDFLARE_API_TOKEN")
    cloudflare_account_hash: str | None = Field(default=None, alias="CLOUDFLARE_ACCOUNT_HASH")
    # Unset → the SDK's default (https://api.cloudflare.com/client/v4); tests point it locally.
    cloudflare_api_base_url: str | None = Field(default=None, alias="CLOUDFLARE_API_BASE_URL")
    http_user_agent: str = Field(default=DEFAULT_USER_AGENT, alias="HTTP_USER_AGENT")
    http_timeout_seconds: float = Field(default=15.0, alias="HTTP_TIMEOUT_SECONDS", gt=0)

    dashboard_host: str = Field(default="127.0.0.1", alias="DASHBOARD_HOST")
    dashboard_port: int = Field(default=8501, alias="DASHBOARD_PORT", ge=1, le=65535)
    dashboard_password: SecretStr | None = Field(default=None, alias="DASHBOARD_PASSWORD")
    dashboard_read_only: bool = Field(default=False, alias="DASHBOARD_READ_ONLY")
    # Who may pass the OIDC login (comma-separated e-mails, or `@domain` for a whole domain):
    # a provider such as Google accepts any account, so an empty list admits nobody.
    dashboard_allowed_users: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), alias="DASHBOARD_ALLOWED_USERS"
    )

    # MusicBrainz allows one request per second per client IP, shared by all workers.
    musicbrainz_rate_limit: str = Field(default="1/second", alias="MUSICBRAINZ_RATE_LIMIT")
    musicbrainz_min_score: int = Field(default=90, alias="MUSICBRAINZ_MIN_SCORE", ge=0, le=100)
    provider_retry_attempts: int = Field(default=3, alias="PROVIDER_RETRY_ATTEMPTS", ge=1)
    provider_backoff_seconds: float = Field(default=1.0, alias="PROVIDER_BACKOFF_SECONDS", ge=0)

    # A processor does not ask a provider again about an entity it finished with (success, or
    # a definite answer such as "no match") less than this many days ago; 0 always asks.
    enrich_fresh_days: float = Field(default=30.0, alias="ENRICH_FRESH_DAYS", ge=0)
    job_max_attempts: int = Field(default=3, alias="JOB_MAX_ATTEMPTS", ge=1)
    job_retry_delay_seconds: float = Field(default=5.0, alias="JOB_RETRY_DELAY_SECONDS", ge=0)
    job_timeout_seconds: float = Field(default=120.0, alias="JOB_TIMEOUT_SECONDS", gt=0)
    # Where a worker serves Prometheus metrics (/metrics); unset: no metrics server.
    metrics_port: int | None = Field(default=None, alias="METRICS_PORT", ge=1, le=65535)
    # prometheus_client's own variable: where a worker's processes keep their metrics for the
    # one that serves them. `enrichment worker` sets a fresh one (see service.metrics_server).
    metrics_dir: Path | None = Field(default=None, alias="PROMETHEUS_MULTIPROC_DIR")
    # How many worker containers docker-compose runs (`deploy.replicas`).
    worker_replicas: int = Field(default=1, alias="WORKER_REPLICAS", ge=1)
    # Jobs one worker process runs at once, shared out between the provider lanes
    # (`enrichment worker --max-async-tasks` sets it for the processes it starts).
    worker_max_async_tasks: int = Field(default=20, alias="WORKER_MAX_ASYNC_TASKS", ge=1)
    # A worker renews the lease of every message it runs; one whose lease lapsed this long
    # (its worker died) is reclaimed by another worker and its attempt recorded as lost.
    job_lease_seconds: float = Field(default=30.0, alias="JOB_LEASE_SECONDS", ge=1)
    # Deprecated: the idle time after which a message was reclaimed, in ms. If set (and
    # JOB_LEASE_SECONDS is not), it becomes the lease.
    redelivery_idle_ms: int | None = Field(default=None, alias="REDELIVERY_IDLE_MS", ge=1_000)
    # On shutdown, running jobs get this long to finish before they are cancelled (and logged).
    shutdown_grace_seconds: float = Field(default=30.0, alias="SHUTDOWN_GRACE_SECONDS", ge=0)
    log_write_timeout_seconds: float = Field(default=60.0, alias="LOG_WRITE_TIMEOUT_SECONDS", gt=0)

    @field_validator("discogs_token", "cloudflare_api_token", "dashboard_password", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        # docker-compose passes unset variables through as "": treat that as not configured.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("image_fetch_allowed_hosts", "dashboard_allowed_users", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("musicbrainz_rate_limit", "discogs_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        parse(value)  # raises ValueError with the offending text
        return value

    @field_validator("http_user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        # MusicBrainz and Discogs throttle or block generic agents: insist on App/version.
        name, _, rest = value.partition("/")
        if not name or not rest or value.lower().startswith(("python-httpx", "python-requests")):
            raise ValueError("HTTP_USER_AGENT must look like 'App/1.0 ( contact )'")
        return value

    @model_validator(mode="after")
    def _lease_from_deprecated_setting(self) -> "Settings":
        if self.redelivery_idle_ms is not None and "job_lease_seconds" not in self.model_fields_set:
            object.__setattr__(self, "job_lease_seconds", self.redelivery_idle_ms / 1000)
        return self

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker renews its leases and records that its attempts are alive."""
        return min(HEARTBEAT_SECONDS, self.job_lease_seconds / 3)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after `attempt` (exponential, capped; no jitter)."""
        exponential: float = self.job_retry_delay_seconds * 2 ** (attempt - 1)
        return min(exponential, MAX_RETRY_DELAY_SECONDS)

    @model_validator(mode="after")
    def _coherent_options(self) -> "Settings":
        if bool(self.cloudflare_account_id) != bool(self.cloudflare_api_token):
            raise ValueError(
                "set both CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN (or neither, for the "
                "local image cache)"
            )
        if self.discogs_ambiguous_threshold > self.discogs_match_threshold:
            raise ValueError("DISCOGS_AMBIGUOUS_THRESHOLD must not exceed DISCOGS_MATCH_THRESHOLD")
        return self

    @model_validator(mode="after")
    def _absolute_paths(self) -> "Settings":
        # Absolute, so a store or worker started from another directory finds the same files.
        object.__setattr__(self, "data_dir", self.data_dir.resolve())
        cache = self.image_cache_dir or self.data_dir / "images"
        object.__setattr__(self, "image_cache_dir", cache.resolve())
        return self

    @property
    def dashboard_exposed(self) -> bool:
        """Whether the dashboard listens beyond loopback (and so needs a password)."""
        return self.dashboard_host not in ("127.0.0.1", "localhost", "::1")

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret: tokens, the dashboard password, passwords inside URLs."""
        tokens = (self.discogs_token, self.cloudflare_api_token, self.dashboard_password)
        urls = (self.mongodb_url, self.redis_url, self.rate_limit_storage_url)
        passwords = (urlsplit(url).password for url in urls if url)
        return (
            *(token.get_secret_value() for token in tokens if token is not None),
            *(unquote(password) for password in passwords if password),
        )

    def dashboard_admits(self, email: str | None) -> bool:
        """Whether an OIDC-verified e-mail is on DASHBOARD_ALLOWED_USERS (by address or domain)."""
        if not email:
            return False
        email = email.strip().lower()
        domain = "@" + email.rpartition("@")[2]
        return email in self.dashboard_allowed_users or domain in self.dashboard_allowed_users

    @property
    def cloudflare_enabled(self) -> bool:
        """Whether cached images go to Cloudflare Images instead of the local cache."""
        return bool(self.cloudflare_account_id and self.cloudflare_api_token)

    def rate_limit(self, setting: str) -> RateLimitItem:
        """The parsed rate limit that the setting (field) `setting` names."""
        if setting not in type(self).model_fields or not setting.endswith("_rate_limit"):
            raise ConfigurationError(
                f"no rate limit setting {setting!r}: add it to Settings "
                f"({setting.upper()}, e.g. '60/minute')"
            )
        try:
            return parse(getattr(self, setting))
        except ValueError as exc:
            raise ConfigurationError(f"{setting.upper()}: {exc}") from exc

    @property
    def rate_limit_storage(self) -> str:
        """The `limits` storage URI for the shared rate limiters."""
        return f"async+{self.rate_limit_storage_url or self.redis_url}"

    @property
    def store_path(self) -> Path:
        """The SQLite file behind the embedded store."""
        return self.data_dir / "store.sqlite"

    @property
    def store_pid_path(self) -> Path:
        """Where the running embedded store writes its process id."""
        return self.data_dir / "store.pid"

    @property
    def embedded_store_url(self) -> str:
        """The URI of the embedded store on loopback."""
        return f"mongodb://127.0.0.1:{self.embedded_store_port}/?directConnection=true"
