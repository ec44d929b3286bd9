"""Image stores: content-addressed local files, and the real Cloudflare SDK against a local API."""

import asyncio
import hashlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cloudflare
import pytest

from service.config import Settings
from service.errors import ImageStoreError, ImageStoreUnavailableError
from service.providers import image_store
from service.providers.image_store import (
    CloudflareImageStore,
    ImageStore,
    LocalImageStore,
    StoredImage,
)
from service.resources import make_cloudflare_client
from tests.fake_cloudflare import ACCOUNT, ACCOUNT_HASH, FakeCloudflare

TOKEN = "test-token-SECRET"
# Every byte value, CR/LF pairs included, so a mangled upload cannot go unnoticed.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + b"\r\n--\r\n"
PNG_SHA = hashlib.sha256(PNG).hexdigest()
META = {"source": "coverart", "album": "Paper Harbors"}


# --- local store ---------------------------------------------------------------------------


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_local_store_writes_content_addressed_file(tmp_path: Path) -> None:
    store: ImageStore = LocalImageStore(tmp_path)
    stored = await store.store(PNG, sha256=PNG_SHA, extension="png", metadata=META)

    relative = f"{PNG_SHA[:2]}/{PNG_SHA}.png"
    assert stored == StoredImage(
        location="local",
        url=f"/images/{relative}",
        path=relative,
        cloudflare_id=None,
        deduplicated=False,
    )
    assert (tmp_path / relative).read_bytes() == PNG
    assert files_under(tmp_path) == [tmp_path / relative]


async def test_local_store_writes_the_same_bytes_once(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path, public_base_url="https://cdn.example/img/")
    first = await store.store(PNG, sha256=PNG_SHA, extension=".PNG", metadata={})
    target = tmp_path / str(first.path)
    before = target.stat()

    second = await store.store(PNG, sha256=PNG_SHA, extension="png", metadata={})

    after = target.stat()
    assert (first.deduplicated, second.deduplicated) == (False, True)
    assert second.url == f"https://cdn.example/img/{PNG_SHA[:2]}/{PNG_SHA}.png"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert target.read_bytes() == PNG
    assert files_under(tmp_path) == [target]


async def test_local_store_concurrent_writers_leave_one_whole_file(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    results = await asyncio.gather(
        *(store.store(PNG, sha256=PNG_SHA, extension="png", metadata={}) for _ in range(8))
    )
    assert {r.path for r in results} == {f"{PNG_SHA[:2]}/{PNG_SHA}.png"}
    assert [p.read_bytes() for p in files_under(tmp_path)] == [PNG]
    # Exactly one of them stored it; every other one found it deduplicated.
    assert sorted(r.deduplicated for r in results) == [False] + [True] * 7


async def test_local_store_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_store.os, "link", refuse)
    with pytest.raises(ImageStoreError, match="No space left") as caught:
        await LocalImageStore(tmp_path).store(PNG, sha256=PNG_SHA, extension="png", metadata={})
    assert caught.value.retryable is False
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("sha256", "extension"),
    [("../" + "a" * 61, "png"), (PNG_SHA.upper(), "png"), (PNG_SHA, "png/../../x")],
)
async def test_local_store_refuses_names_that_could_escape_the_root(
    tmp_path: Path, sha256: str, extension: str
) -> None:
    root = tmp_path / "cache"
    with pytest.raises(ImageStoreError):
        await LocalImageStore(root).store(PNG, sha256=sha256, extension=extension, metadata={})
    assert files_under(tmp_path) == []


# --- Cloudflare, through the real SDK against tests/fake_cloudflare.py -----------------


@pytest.fixture
def api(cloudflare_api: tuple[FakeCloudflare, str]) -> tuple[FakeCloudflare, str]:
    """The fake API and its base URL (the shared fixture in conftest)."""
    return cloudflare_api


@pytest.fixture
async def sdk(api: tuple[FakeCloudflare, str]) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    """The real SDK pointed at the fake API, without its own retries."""
    async with cloudflare.AsyncCloudflare(
        api_token=TOKEN, base_url=api[1], max_retries=0
    ) as client:
        yield client


@pytest.fixture
def fake(api: tuple[FakeCloudflare, str]) -> FakeCloudflare:
    return api[0]


@pytest.fixture
def cf_store(sdk: cloudflare.AsyncCloudflare) -> CloudflareImageStore:
    return CloudflareImageStore(sdk, account_id=ACCOUNT, account_hash=ACCOUNT_HASH)


async def store_png(store: ImageStore) -> StoredImage:
    return await store.store(PNG, sha256=PNG_SHA, extension="png", metadata=META)


def assert_token_hidden(exc: BaseException) -> None:
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc)
    assert "SECRET" not in str(exc)


# --- Cloudflare store ------------------------------------------------------------------------


async def test_cloudflare_upload_sends_id_bytes_and_json_metadata(
    cf_store: CloudflareImageStore, fake: FakeCloudflare
) -> None:
    stored = await store_png(cf_store)

    assert stored == StoredImage(
        location="cloudflare",
        url=f"https://imagedelivery.net/{ACCOUNT_HASH}/{PNG_SHA}/public",
        path=None,
        cloudflare_id=PNG_SHA,
        deduplicated=False,
    )
    [upload] = fake.uploads
    assert upload.authorization == f"Bearer {TOKEN}"
    assert upload.fields["id"] == PNG_SHA.encode()
    assert upload.fields["file"] == PNG
    assert (upload.file_name, upload.file_type) == (f"{PNG_SHA}.png", "image/png")
    # One JSON string, not the SDK's flattened `metadata[source]` fields.
    assert set(upload.fields) == {"id", "file", "metadata"}
    assert json.loads(upload.fields["metadata"]) == META


async def test_cloudflare_second_upload_of_same_bytes_is_deduplicated(
    cf_store: CloudflareImageStore, fake: FakeCloudflare
) -> None:
    first = await store_png(cf_store)
    second = await store_png(cf_store)

    assert (first.deduplicated, second.deduplicated) == (False, True)
    assert second.cloudflare_id == first.cloudflare_id == PNG_SHA
    assert second.url == first.url
    assert len(fake.uploads) == 2
    assert list(fake.images) == [PNG_SHA]
    assert fake.authorizations == [f"Bearer {TOKEN}"]  # the lookup of the existing image


async def test_cloudflare_already_exists_in_a_200_envelope_is_deduplicated(
    cf_store: CloudflareImageStore, fake: FakeCloudflare
) -> None:
    await store_png(cf_store)
    fake.mode = "exists-in-200"
    stored = await store_png(cf_store)
    assert stored.deduplicated is True
    assert stored.cloudflare_id == PNG_SHA


async def test_cloudflare_url_falls_back_to_first_variant(
    sdk: cloudflare.AsyncCloudflare,
) -> None:
    store = CloudflareImageStore(sdk, account_id=ACCOUNT, account_hash=None)
    stored = await store_png(store)
    assert stored.url == f"https://imagedelivery.net/{ACCOUNT_HASH}/{PNG_SHA}/public"


@pytest.mark.parametrize(
    ("mode", "status", "text"),
    [
        ("401", 401, "Authentication error (code 10000)"),
        ("400", 400, "image could not be decoded (code 5400)"),
        ("400-echo", 400, "Bad request for Bearer [redacted]"),
    ],
)
async def test_cloudflare_permanent_failures(
    cf_store: CloudflareImageStore, fake: FakeCloudflare, mode: str, status: int, text: str
) -> None:
    fake.mode = mode
    with pytest.raises(ImageStoreError) as caught:
        await store_png(cf_store)
    assert not isinstance(caught.value, ImageStoreUnavailableError)
    assert caught.value.retryable is False
    assert caught.value.status == status
    assert text in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert_token_hidden(caught.value)
    assert fake.images == {}


@pytest.mark.parametrize(
    ("mode", "status", "text"),
    [
        ("500", 500, "Internal server error (code 5500)"),
        ("429", 429, "consider throttling (code 971)"),
        ("502-html", 502, "no error details"),
    ],
)
async def test_cloudflare_transient_failures_are_retryable(
    cf_store: CloudflareImageStore, fake: FakeCloudflare, mode: str, status: int, text: str
) -> None:
    fake.mode = mode
    with pytest.raises(ImageStoreUnavailableError) as caught:
        await store_png(cf_store)
    assert caught.value.retryable is True
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    assert text in str(caught.value)
    assert_token_hidden(caught.value)


async def test_cloudflare_conflict_without_image_is_retryable(
    cf_store: CloudflareImageStore, fake: FakeCloudflare
) -> None:
    fake.mode = "conflict"  # 409 for an id the lookup then cannot find
    with pytest.raises(ImageStoreUnavailableError, match="cannot find") as caught:
        await store_png(cf_store)
    assert caught.value.retryable is True
    assert_token_hidden(caught.value)


async def test_cloudflare_unreachable_is_retryable() -> None:
    with socket.socket() as sock:  # a port nothing listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/client/v4"
    async with cloudflare.AsyncCloudflare(
        api_token=TOKEN, base_url=base_url, max_retries=0
    ) as client:
        store = CloudflareImageStore(client, account_id=ACCOUNT, account_hash=ACCOUNT_HASH)
        with pytest.raises(ImageStoreUnavailableError, match="Connection error") as caught:
            await store_png(store)
    assert caught.value.retryable is True
    assert_token_hidden(caught.value)


async def test_cloudflare_refuses_unsupported_input_before_uploading(
    cf_store: CloudflareImageStore, fake: FakeCloudflare
) -> None:
    with pytest.raises(ImageStoreError, match=r"does not accept \.tiff"):
        await cf_store.store(PNG, sha256=PNG_SHA, extension="tiff", metadata={})
    with pytest.raises(ImageStoreError, match="over 1024 bytes"):
        await cf_store.store(PNG, sha256=PNG_SHA, extension="png", metadata={"k": "v" * 1100})
    assert fake.uploads == []


@pytest.fixture
def redirecting_api(api: tuple[FakeCloudflare, str]) -> Iterator[tuple[list[str], str]]:
    """A base URL whose every upload is redirected (307) to the fake API under another name."""
    seen: list[str] = []
    target = api[1].replace("127.0.0.1", "localhost").removesuffix("/client/v4")

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            # Read the upload first: closing on a client still sending resets the connection.
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", f"{target}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield seen, f"http://127.0.0.1:{server.server_address[1]}/client/v4"
    server.shutdown()
    server.server_close()


async def test_cloudflare_redirect_is_an_error_not_a_resent_upload(
    redirecting_api: tuple[list[str], str], fake: FakeCloudflare
) -> None:
    seen, base_url = redirecting_api
    settings = Settings.model_validate(
        {
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
            "CLOUDFLARE_API_TOKEN": TOKEN,
            "CLOUDFLARE_API_BASE_URL": base_url,
        }
    )
    async with make_cloudflare_client(settings) as client:
        store = CloudflareImageStore(client, account_id=ACCOUNT, account_hash=ACCOUNT_HASH)
        with pytest.raises(ImageStoreError, match=r"upload failed \(HTTP 307\)") as caught:
            await store_png(store)
    assert caught.value.retryable is False
    assert_token_hidden(caught.value)
    assert len(seen) == 1
    assert fake.uploads == []  # the upload was never sent on to where the redirect pointed
