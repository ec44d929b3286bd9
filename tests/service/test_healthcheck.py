"""`enrichment healthcheck`, the compose worker's health check, against real Redis and stores."""

from pathlib import Path

from service.embedded_store import is_listening
from service.urls import display_url
from tests.helpers import REDIS_URL, enrichment, free_port


def closed_store_url(credentials: str = "") -> str:
    return f"mongodb://{credentials}127.0.0.1:{free_port()}/?directConnection=true"


async def test_healthy_when_redis_and_the_store_answer(store_env: dict[str, str]) -> None:
    done = await enrichment({**store_env, "REDIS_URL": REDIS_URL}, "healthcheck")
    assert done.returncode == 0, done.stdout + done.stderr
    expected = f"ok: Redis at {display_url(REDIS_URL)}, the store at mongodb://"
    assert done.stdout.startswith(expected)
    assert len(done.stdout.splitlines()) == 1


async def test_unreachable_redis_is_named_without_its_password(store_env: dict[str, str]) -> None:
    port = free_port()
    env = {**store_env, "REDIS_URL": f"redis://:hunter2-health@127.0.0.1:{port}/0"}
    done = await enrichment(env, "healthcheck")
    assert done.returncode == 1
    assert done.stdout.startswith(f"unhealthy: cannot reach Redis at redis://127.0.0.1:{port}/0:")
    assert "store" not in done.stdout  # the store answered
    assert len(done.stdout.splitlines()) == 1
    assert "hunter2" not in done.stdout + done.stderr


async def test_unreachable_store_is_named_without_its_password() -> None:
    env = {"REDIS_URL": REDIS_URL, "MONGODB_URL": closed_store_url("reader:pw-health-7@")}
    done = await enrichment(env, "healthcheck")
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: cannot reach the store at mongodb://127.0.0.1:")
    assert "Connection refused" in done.stdout
    assert "Redis" not in done.stdout  # Redis answered
    assert len(done.stdout.splitlines()) == 1
    assert "pw-health-7" not in done.stdout + done.stderr


async def test_both_down_are_named_on_one_line() -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "MONGODB_URL": closed_store_url()}
    done = await enrichment(env, "healthcheck")
    assert done.returncode == 1
    [line] = done.stdout.splitlines()
    assert "cannot reach Redis" in line
    assert "cannot reach the store" in line


async def test_an_embedded_store_that_is_not_running_is_not_started(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "REDIS_URL": REDIS_URL,
        "MONGODB_URL": "",
        "EMBEDDED_STORE_PORT": str(port),
        "ENRICHMENT_DATA_DIR": str(tmp_path),
    }
    done = await enrichment(env, "healthcheck")
    assert done.returncode == 1
    assert f"cannot reach the store at mongodb://127.0.0.1:{port}/" in done.stdout
    assert not is_listening(port)
