"""`cache_image` through a real worker: local and Cloudflare storage, and every failure."""

import hashlib
from typing import Any

import pytest

from service.client import EnrichmentClient
from service.config import Settings
from service.demo.fake_images import image_bytes
from service.demo.providers import LocalProviders
from service.models import Album
from service.store import LOGS
from tests.fake_cloudflare import ACCOUNT_HASH, FakeCloudflare
from tests.helpers import CLOUDFLARE_TEST_TOKEN, cloudflare_env

ALBUM_MBID = "a6f47222-b3c8-56e4-9802-8fc71a81e9f0"
DETAIL_KEYS = {
    "sourceUrl", "beforeUrl", "afterUrl", "cacheLocation", "cachePath", "cloudflareId",
    "sizeBytes", "format", "width", "height", "contentType", "sha256", "deduplicated",
}  # fmt: skip


async def cache(
    client: EnrichmentClient, job_id: str, image_url: str, *, force: bool = False
) -> dict[str, Any]:
    """Kick a `cache_image` root for an album and return its raw stored log."""
    payload = {
        "force": force,
        "entityType": "album",
        "entityId": ALBUM_MBID,
        "entityName": "Tidal Glass",
        "imageUrl": image_url,
        "sourceUrl": "https://coverartarchive.org/release-group/" + ALBUM_MBID,
    }
    await client.kick("cache_image", payload, job_id=job_id)
    await client.wait_for_root(job_id, timeout=30)
    collection = Album.get_pymongo_collection().database[LOGS]
    found = await collection.find_one({"jobId": job_id}, sort=[("attempt", -1)])
    assert found is not None
    return found


async def test_local_cache_and_deduplication(
    client: EnrichmentClient, providers: LocalProviders, settings: Settings
) -> None:
    url = f"{providers.images_url}/tidal-glass.png"
    log = await cache(client, "c-local", url)
    details = log["details"]
    assert log["status"] == "success"
    assert set(details) >= DETAIL_KEYS
    expected = image_bytes("tidal-glass.png")
    sha = hashlib.sha256(expected).hexdigest()
    assert details["sha256"] == sha
    assert (details["format"], details["width"], details["height"]) == ("PNG", 600, 600)
    assert (details["sizeBytes"], details["contentType"]) == (len(expected), "image/png")
    assert (details["cacheLocation"], details["cloudflareId"]) == ("local", None)
    assert details["cachePath"] == f"{sha[:2]}/{sha}.png"
    assert details["afterUrl"] == f"/images/{sha[:2]}/{sha}.png"
    assert details["beforeUrl"] == url
    assert details["deduplicated"] is False
    assert settings.image_cache_dir is not None
    assert (settings.image_cache_dir / details["cachePath"]).read_bytes() == expected
    album = await Album.find_one({"mbid": ALBUM_MBID})
    assert album is not None
    assert album.cached_image_url == details["afterUrl"]

    # The album is fresh now: force the second download to show the bytes are stored once.
    again = await cache(client, "c-local-again", url, force=True)
    assert again["details"]["deduplicated"] is True
    assert again["details"]["cachePath"] == details["cachePath"]
    assert len(list(settings.image_cache_dir.rglob("*.png"))) == 1


@pytest.mark.parametrize(
    ("name", "error", "status"),
    [
        ("not-an-image.jpg", "NotAnImageError", 200),
        ("oversized.png", "ImageTooLargeError", 200),
        ("missing.gif", "ImageFetchError", 404),
    ],
)
async def test_bad_images_fail_with_what_was_gathered(
    client: EnrichmentClient, providers: LocalProviders, name: str, error: str, status: int
) -> None:
    url = f"{providers.images_url}/{name}"
    log = await cache(client, f"c-{name}", url)
    assert log["status"] == "failed"
    assert (log["error"]["type"], log["error"]["retryable"]) == (error, False)
    assert log["details"]["beforeUrl"] == url
    assert log["details"]["sourceUrl"].startswith("https://coverartarchive.org/")
    assert log["details"]["httpStatus"] == status
    assert log["details"]["afterUrl"] is None
    assert log["attempt"] == 1  # permanent: no retry


async def test_redirect_to_a_private_address_is_refused(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    url = f"{providers.images_url}/redirect?to=http://169.254.169.254/latest/meta-data/"
    log = await cache(client, "c-ssrf", url)
    assert log["status"] == "failed"
    assert log["error"]["type"] == "UnsafeUrlError"
    assert "169.254.169.254" in log["error"]["message"]
    assert log["details"]["httpStatus"] == 302


class TestCloudflare:
    @pytest.fixture
    def settings_env(
        self, settings_env: dict[str, str], cloudflare_api: tuple[FakeCloudflare, str]
    ) -> dict[str, str]:
        return cloudflare_env(settings_env, cloudflare_api[1])

    async def test_upload_with_sha256_id_and_no_duplicate_on_retry(
        self,
        client: EnrichmentClient,
        providers: LocalProviders,
        cloudflare_api: tuple[FakeCloudflare, str],
    ) -> None:
        fake = cloudflare_api[0]
        url = f"{providers.images_url}/northern-drift.jpg"
        log = await cache(client, "c-cf", url)
        details = log["details"]
        sha = hashlib.sha256(image_bytes("northern-drift.jpg")).hexdigest()
        assert log["status"] == "success"
        assert (details["cacheLocation"], details["cloudflareId"], details["cachePath"]) == (
            "cloudflare",
            sha,
            None,
        )
        assert details["afterUrl"] == f"https://imagedelivery.net/{ACCOUNT_HASH}/{sha}/public"
        assert details["format"] == "JPEG"
        [upload] = fake.uploads
        assert upload.authorization == f"Bearer {CLOUDFLARE_TEST_TOKEN}"
        assert upload.fields["id"].decode() == sha
        assert upload.fields["file"] == image_bytes("northern-drift.jpg")

        again = await cache(client, "c-cf-again", url, force=True)
        assert again["details"]["deduplicated"] is True
        assert again["details"]["cloudflareId"] == sha
        # One upload each time (the second refused as a duplicate id), never a re-send.
        assert [u.fields["id"].decode() for u in fake.uploads] == [sha, sha]

    async def test_failure_envelope_is_a_failed_entry_without_the_token(
        self,
        client: EnrichmentClient,
        providers: LocalProviders,
        cloudflare_api: tuple[FakeCloudflare, str],
    ) -> None:
        cloudflare_api[0].mode = "400-echo"  # the fake quotes our Authorization header back
        log = await cache(client, "c-cf-fail", f"{providers.images_url}/tidal-glass.png")
        assert log["status"] == "failed"
        assert log["error"]["type"] == "ImageStoreError"
        assert log["error"]["retryable"] is False
        assert CLOUDFLARE_TEST_TOKEN not in str(log)
        assert log["details"]["sha256"] is not None  # gathered before the upload failed
