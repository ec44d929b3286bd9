"""Settings: cross-field rules give clear errors at start-up."""

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_half_configured_cloudflare_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="set both CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN"
    ):
        Settings.model_validate({"CLOUDFLARE_ACCOUNT_ID": "acct", "CLOUDFLARE_API_TOKEN": None})


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="must not exceed"):
        Settings.model_validate(
            {"DISCOGS_MATCH_THRESHOLD": 0.5, "DISCOGS_AMBIGUOUS_THRESHOLD": 0.7}
        )


def test_generic_user_agent_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"App/1\.0"):
        Settings.model_validate({"HTTP_USER_AGENT": "python-httpx/0.28"})


def test_allowed_hosts_are_split_and_lowered() -> None:
    settings = Settings.model_validate({"IMAGE_FETCH_ALLOWED_HOSTS": " 127.0.0.1, Images.LOCAL ,"})
    assert settings.image_fetch_allowed_hosts == frozenset({"127.0.0.1", "images.local"})


def test_the_deprecated_redelivery_setting_becomes_the_lease() -> None:
    assert Settings.model_validate({}).job_lease_seconds == 30
    assert Settings.model_validate({"REDELIVERY_IDLE_MS": 5000}).job_lease_seconds == 5
    both = {"REDELIVERY_IDLE_MS": 5000, "JOB_LEASE_SECONDS": 12}
    assert Settings.model_validate(both).job_lease_seconds == 12
    assert Settings.model_validate({"JOB_LEASE_SECONDS": 3}).heartbeat_seconds == 1
