"""docker-compose.yml: no Docker engine runs here, so check its wiring against our settings."""

from pathlib import Path
from typing import Any

import yaml

from service.config import Settings

COMPOSE = Path(__file__).parent.parent / "docker-compose.yml"


def load() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    return compose


def test_services_and_images() -> None:
    services = load()["services"]
    assert {"mongo", "redis", "worker"} <= set(services)
    assert services["mongo"]["image"].startswith("mongo:8.")
    assert services["redis"]["image"].startswith("redis:7.")
    assert services["worker"]["build"] == "."
    assert (COMPOSE.parent / "Dockerfile").exists()


def test_worker_is_wired_through_the_same_settings() -> None:
    worker = load()["services"]["worker"]
    env = worker["environment"]
    known = {field.alias for field in Settings.model_fields.values()}
    assert set(env) <= known, f"unknown settings: {set(env) - known}"
    assert env["MONGODB_URL"].startswith("mongodb://mongo:27017")
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert set(worker["depends_on"]) == {"mongo", "redis"}
    # The environment block must also be valid settings as written.
    settings = Settings.model_validate({k: v for k, v in env.items() if "${" not in str(v)})
    assert settings.mongodb_db == "enrichment"


def test_blank_secrets_from_compose_count_as_unset() -> None:
    settings = Settings.model_validate({"DISCOGS_TOKEN": "", "CLOUDFLARE_API_TOKEN": " "})
    assert settings.discogs_token is None
    assert settings.cloudflare_api_token is None
    assert settings.cloudflare_enabled is False
