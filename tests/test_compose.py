"""docker-compose.yml and .env.example: no Docker engine runs here, so check them by Settings."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from service.cli import HEALTHCHECK_TIMEOUT_SECONDS, main
from service.config import Settings

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# Setting name (the env alias) → Settings field.
FIELDS = {field.alias: name for name, field in Settings.model_fields.items()}
# `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`… (`$$` is a literal dollar).
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
WITH_DEFAULT = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}$")
# `#NAME=value`: a setting line of .env.example (prose lines start with `# `).
SETTING_LINE = re.compile(r"^#([A-Z][A-Z0-9_]*)=(.*)$")
APPS = ("worker", "dashboard")


def load() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    return compose


def services() -> dict[str, Any]:
    found = load()["services"]
    assert isinstance(found, dict)
    return found


def strings(node: object) -> Iterator[str]:
    """Every key and value of a loaded YAML document that is text."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def variables(node: object) -> set[str]:
    return {name for text in strings(node) for name in VARIABLE.findall(text.replace("$$", ""))}


def default_of(value: str, name: str) -> str:
    """The default of `${NAME:-default}`, asserting that `value` is exactly that."""
    match = WITH_DEFAULT.match(value)
    assert match is not None, value
    assert match[1] == name, value
    return match[2]


def seconds(duration: str) -> float:
    """A compose duration such as `20s` or `1m30s`, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def default(alias: str) -> Any:
    """The setting's declared default (`Settings.model_validate` would read the environment)."""
    return Settings.model_fields[FIELDS[alias]].default


def as_written(env: dict[str, Any]) -> Settings:
    """The settings an environment block makes, its interpolated values left out."""
    return Settings.model_validate({k: v for k, v in env.items() if "$" not in str(v)})


def test_services_and_images() -> None:
    found = services()
    assert set(found) == {"mongo", "redis", "worker", "dashboard"}
    assert found["mongo"]["image"].startswith("mongo:8.")
    assert found["redis"]["image"].startswith("redis:7.")
    for app in APPS:
        assert found[app]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_every_variable_the_file_uses_is_a_setting() -> None:
    used = variables(load())
    assert {"WORKER_REPLICAS", "METRICS_PORT", "DASHBOARD_PASSWORD"} <= used
    assert used <= set(FIELDS), f"not settings: {used - set(FIELDS)}"


@pytest.mark.parametrize("app", APPS)
def test_app_containers_are_wired_through_the_same_settings(app: str) -> None:
    service = services()[app]
    env = service["environment"]
    assert set(env) <= set(FIELDS), f"unknown settings: {set(env) - set(FIELDS)}"
    # .env holds the settings; the compose file's own wiring wins over it.
    assert service["env_file"] == [{"path": ".env", "required": False}]
    settings = as_written(env)
    assert settings.mongodb_url is not None
    assert settings.mongodb_url.startswith("mongodb://mongo:27017")
    assert settings.redis_url.startswith("redis://redis:6379")
    assert settings.rate_limit_storage_url == settings.redis_url
    assert str(settings.data_dir) == "/data"
    assert settings.image_cache_dir is not None
    assert settings.image_cache_dir.is_relative_to(settings.data_dir)
    assert any(volume.endswith(":/data") for volume in service["volumes"])
    assert service["depends_on"] == {
        "mongo": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_worker_replicas_come_from_the_setting() -> None:
    replicas = services()["worker"]["deploy"]["replicas"]
    assert default_of(replicas, "WORKER_REPLICAS") == str(default("WORKER_REPLICAS"))


def test_worker_healthcheck_proves_it_reaches_redis_and_the_store() -> None:
    check = services()["worker"]["healthcheck"]
    assert check["test"] == ["CMD", "enrichment", "healthcheck"]
    # The command exists (tests/service/test_healthcheck.py runs it for real).
    with pytest.raises(SystemExit) as exited:
        main(["healthcheck", "--help"])
    assert exited.value.code == 0
    # Two pings, each up to its timeout, after the command has started.
    assert seconds(check["timeout"]) >= 2 * HEALTHCHECK_TIMEOUT_SECONDS + 10
    assert seconds(check["interval"]) >= seconds(check["timeout"])
    assert seconds(check["start_period"]) > 0
    assert check["retries"] >= 1


def test_dashboard_healthcheck_asks_streamlit() -> None:
    dashboard = services()["dashboard"]
    check = dashboard["healthcheck"]
    # The image (python-slim) has no curl: Python's urllib asks, and fails on an error status.
    assert check["test"][:3] == ["CMD", "python", "-c"]
    code = check["test"][3]
    compile(code, "healthcheck", "exec")
    settings = as_written(dashboard["environment"])
    assert f"'http://127.0.0.1:{settings.dashboard_port}/_stcore/health'" in code
    assert "urlopen(" in code
    assert "timeout=" in code
    assert settings.dashboard_host == "0.0.0.0"
    assert dashboard["ports"] == [f"127.0.0.1:{settings.dashboard_port}:{settings.dashboard_port}"]
    assert seconds(check["timeout"]) > 5
    assert dashboard["environment"]["DASHBOARD_PASSWORD"].startswith("${DASHBOARD_PASSWORD:?")


def test_worker_metrics_port_is_a_setting_and_exposed() -> None:
    worker = services()["worker"]
    wired = worker["environment"]["METRICS_PORT"]
    port = default_of(wired, "METRICS_PORT")
    assert Settings.model_validate({"METRICS_PORT": port}).metrics_port == int(port)
    assert worker["expose"] == [wired]
    # Published, every replica would claim the same host port.
    assert "ports" not in worker


def test_every_long_running_service_restarts() -> None:
    for name, service in services().items():
        assert service.get("restart") == "unless-stopped", name


def test_redis_keeps_an_append_only_file() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])  # where AOF lives


def test_blank_secrets_from_compose_count_as_unset() -> None:
    settings = Settings.model_validate({"DISCOGS_TOKEN": "", "CLOUDFLARE_API_TOKEN": " "})
    assert settings.discogs_token is None
    assert settings.cloudflare_api_token is None
    assert settings.cloudflare_enabled is False


def env_example() -> dict[str, tuple[str, str]]:
    """Each setting of .env.example: name → (its comment line, its value)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    entries: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(lines):
        match = SETTING_LINE.match(line)
        if match is None:
            continue
        name, value = match[1], match[2]
        assert name not in entries, f"{name} listed twice"
        entries[name] = (lines[number - 1], value)
    return entries


def secret_settings() -> set[str]:
    """Tokens, passwords, and settings whose value the service redacts (URLs with passwords)."""
    annotations = {alias: Settings.model_fields[name].annotation for alias, name in FIELDS.items()}
    secret = {alias for alias, kind in annotations.items() if SecretStr in (kind, *get_args(kind))}
    # Probe every setting with a password-bearing URL: what `secret_values` gives back is secret.
    probe = "Probe-Passw0rd"
    paired = {"CLOUDFLARE_ACCOUNT_ID": "account", "CLOUDFLARE_API_TOKEN": "token"}
    for alias in FIELDS:
        try:
            settings = Settings.model_validate({**paired, alias: f"redis://u:{probe}@host:1/0"})
        except ValidationError:
            continue
        if probe in settings.secret_values():
            secret.add(alias)
    return secret


def test_env_example_lists_every_setting_and_only_settings() -> None:
    listed = set(env_example())
    assert set(FIELDS) - listed == set(), "settings missing from .env.example"
    assert listed - set(FIELDS) == set(), "not settings"


def test_env_example_changes_nothing_until_uncommented() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        assert not line or line.startswith("#"), line


def test_env_example_gives_each_default() -> None:
    secret = secret_settings()
    for alias, (comment, value) in env_example().items():
        if value:
            # As Settings reads them (paths resolved, numbers parsed), both given explicitly:
            # explicit values win over the environment the tests run in.
            field = FIELDS[alias]
            given, expected = (Settings.model_validate({alias: v}) for v in (value, default(alias)))
            assert getattr(given, field) == getattr(expected, field), alias
        elif alias not in secret:
            assert default(alias) in (None, frozenset()), f"{alias}: its default is not given"
        elif default(alias) is not None:
            assert str(default(alias)) in comment, f"{alias}: the comment must name the default"


def test_env_example_marks_secrets_and_gives_them_no_value() -> None:
    secret = secret_settings()
    assert secret == {
        "MONGODB_URL",
        "REDIS_URL",
        "RATE_LIMIT_STORAGE_URL",
        "DISCOGS_TOKEN",
        "CLOUDFLARE_API_TOKEN",
        "DASHBOARD_PASSWORD",
    }
    for alias, (comment, value) in env_example().items():
        marked = "# [secret] " if alias in secret else "# [not secret] "
        assert comment.startswith(marked), f"{alias}: {comment!r}"
        if alias in secret:
            assert value == "", f"{alias} is secret: no value in .env.example"
