"""Where cached images go: a content-addressed local directory or Cloudflare Images."""

import asyncio
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cloudflare
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from service.errors import ImageStoreError, ImageStoreUnavailableError
from service.redaction import Redactor

PROVIDER = "Cloudflare Images"
# Cloudflare answers a reused custom id with HTTP 409 and error code 5409,
# "Resource already exists. Verify the resource information and try again."
ALREADY_EXISTS_CODE = 5409
MAX_METADATA_BYTES = 1024
MAX_MESSAGE_CHARS = 300
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
CLOUDFLARE_MIME_TYPES = {
    "png": "image/png",
    "gif": "image/gif",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "svg": "image/svg+xml",
    "heic": "image/heic",
}


@dataclass(frozen=True)
class StoredImage:
    """Where one image ended up and whether those bytes were already there."""

    location: Literal["local", "cloudflare"]
    url: str
    path: str | None
    cloudflare_id: str | None
    deduplicated: bool


class ImageStore(Protocol):
    """Somewhere to keep image bytes, addressed by their SHA-256."""

    async def store(
        self, data: bytes, *, sha256: str, extension: str, metadata: dict[str, str]
    ) -> StoredImage:
        """Keep `data` (whose SHA-256 is `sha256`) and say where it is."""
        ...


def _normalised_extension(extension: str) -> str:
    ext = extension.lower().lstrip(".")
    if not EXTENSION.fullmatch(ext):
        raise ImageStoreError(f"unsupported image extension {extension!r}")
    return ext


def _checked_sha256(sha256: str) -> str:
    # The hash becomes a path and an id, so anything but 64 hex digits could escape the root.
    if not SHA256_HEX.fullmatch(sha256):
        raise ImageStoreError(f"not a lowercase hex SHA-256: {sha256[:80]!r}")
    return sha256


class LocalImageStore:
    """Images as files under `root/<sha[:2]>/<sha>.<ext>`, each written once."""

    def __init__(self, root: Path, *, public_base_url: str = "/images") -> None:
        self._root = root
        self._public_base_url = public_base_url.rstrip("/")

    async def store(
        self, data: bytes, *, sha256: str, extension: str, metadata: dict[str, str]
    ) -> StoredImage:
        """Write the bytes unless a file with their hash exists; `metadata` is not kept."""
        sha = _checked_sha256(sha256)
        relative = f"{sha[:2]}/{sha}.{_normalised_extension(extension)}"
        try:
            existed = await asyncio.to_thread(_write_once, self._root / relative, data)
        except OSError as exc:
            raise ImageStoreError(f"cannot write image {relative}: {exc.strerror}") from exc
        return StoredImage(
            location="local",
            url=f"{self._public_base_url}/{relative}",
            path=relative,
            cloudflare_id=None,
            deduplicated=existed,
        )


def _write_once(target: Path, data: bytes) -> bool:
    """Atomically write `data` to `target` unless it exists; True when it already did."""
    if target.exists():
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        # A hard link creates the name only if it is free, atomically: of two writers racing
        # on one hash (two albums with the same artwork) exactly one stores it, the other
        # finds it deduplicated, however their jobs interleave.
        os.link(temp_name, target)
    except FileExistsError:
        return True
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return False


class _ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: int | None = None
    message: str | None = None


_ERROR_LIST = TypeAdapter(list[_ErrorDetail])


class _ImageResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    variants: list[str] = []


class _Envelope(BaseModel):
    """Cloudflare's v4 answer: `success`, `errors[]` and the `result`."""

    model_config = ConfigDict(extra="ignore")

    success: bool
    errors: list[_ErrorDetail] = []
    result: _ImageResult | None = None


class CloudflareImageStore:
    """Images in Cloudflare Images under their SHA-256 as custom id, so retries never duplicate."""

    def __init__(
        self, client: cloudflare.AsyncCloudflare, *, account_id: str, account_hash: str | None
    ) -> None:
        self._client = client
        self._account_id = account_id
        self._account_hash = account_hash

    async def store(
        self, data: bytes, *, sha256: str, extension: str, metadata: dict[str, str]
    ) -> StoredImage:
        """Upload the bytes under id `sha256`; an id Cloudflare already has is fetched instead."""
        sha = _checked_sha256(sha256)
        ext = _normalised_extension(extension)
        mime = CLOUDFLARE_MIME_TYPES.get(ext)
        if mime is None:
            raise ImageStoreError(f"{PROVIDER} does not accept .{ext} images")
        meta = json.dumps(metadata, separators=(",", ":"), sort_keys=True)
        if len(meta.encode()) > MAX_METADATA_BYTES:
            raise ImageStoreError(f"{PROVIDER} metadata is over {MAX_METADATA_BYTES} bytes")
        image = await self._upload((f"{sha}.{ext}", data, mime), sha, meta)
        if image is not None:
            return self._stored(image, deduplicated=False)
        return self._stored(await self._fetch(sha), deduplicated=True)

    async def _upload(
        self, file: tuple[str, bytes, str], sha: str, meta: str
    ) -> _ImageResult | None:
        """The new image, or None when Cloudflare already has one with this id."""
        try:
            # The raw response keeps the envelope: the SDK's own unwrapping turns a
            # `success: false` answer into None and drops its errors.
            response = await self._client.images.v1.with_raw_response.create(
                account_id=self._account_id, file=file, id=sha, metadata=meta
            )
        except cloudflare.APIStatusError as exc:
            errors = _errors_of(exc.body)
            if _already_exists(exc.status_code, errors):
                return None
            raise self._status_error("upload", exc.status_code, errors) from exc
        except cloudflare.APIConnectionError as exc:
            raise ImageStoreUnavailableError(f"{PROVIDER} upload: {exc.message}") from exc
        status = response.status_code
        envelope = _envelope("upload", status, await response.read())
        if envelope.result is None and _already_exists(status, envelope.errors):
            return None
        return self._result("upload", status, envelope)

    async def _fetch(self, sha: str) -> _ImageResult:
        """The image Cloudflare already keeps under id `sha`."""
        try:
            response = await self._client.images.v1.with_raw_response.get(
                image_id=sha, account_id=self._account_id
            )
        except cloudflare.NotFoundError as exc:
            # "Already exists" yet not found: a concurrent upload or delete; try again later.
            raise ImageStoreUnavailableError(
                f"{PROVIDER} reported image {sha} as existing but cannot find it", status=404
            ) from exc
        except cloudflare.APIStatusError as exc:
            raise self._status_error("lookup", exc.status_code, _errors_of(exc.body)) from exc
        except cloudflare.APIConnectionError as exc:
            raise ImageStoreUnavailableError(f"{PROVIDER} lookup: {exc.message}") from exc
        status = response.status_code
        return self._result("lookup", status, _envelope("lookup", status, await response.read()))

    def _result(self, action: str, status: int, envelope: _Envelope) -> _ImageResult:
        """The envelope's image, or the error it reports instead."""
        if envelope.success and envelope.result is not None:
            return envelope.result
        raise self._status_error(action, status, envelope.errors)

    def _status_error(
        self, action: str, status: int, errors: list[_ErrorDetail]
    ) -> ImageStoreError:
        """Our error for a Cloudflare error answer, its text built only from status and errors."""
        detail = "; ".join(_describe(error) for error in errors) or "no error details"
        message = self._redacted(f"{PROVIDER} {action} failed (HTTP {status}): {detail}")
        if status == 429 or status >= 500:
            return ImageStoreUnavailableError(message, status=status)
        return ImageStoreError(message, status=status)

    def _redacted(self, text: str) -> str:
        # Defence in depth: our messages never quote requests, but never let the token through.
        token = self._client.api_token
        return Redactor([token] if token else []).redact(text)[:MAX_MESSAGE_CHARS]

    def _stored(self, image: _ImageResult, *, deduplicated: bool) -> StoredImage:
        """The public record of an image Cloudflare keeps."""
        if self._account_hash:
            url = f"https://imagedelivery.net/{self._account_hash}/{image.id}/public"
        elif image.variants:
            url = image.variants[0]
        else:
            raise ImageStoreError(f"{PROVIDER} image {image.id} has no delivery URL")
        return StoredImage(
            location="cloudflare",
            url=url,
            path=None,
            cloudflare_id=image.id,
            deduplicated=deduplicated,
        )


def _envelope(action: str, status: int, body: bytes) -> _Envelope:
    """The v4 envelope of a 2xx answer; an unreadable one is a transient Cloudflare fault."""
    try:
        return _Envelope.model_validate_json(body)
    except ValidationError as exc:
        raise ImageStoreUnavailableError(
            f"{PROVIDER} {action}: answer is not a v4 envelope (HTTP {status})", status=status
        ) from exc


def _errors_of(body: object) -> list[_ErrorDetail]:
    """The `errors[]` of an error answer's body; empty when it is not a v4 envelope."""
    try:
        return _ERROR_LIST.validate_python(body.get("errors")) if isinstance(body, dict) else []
    except ValidationError:
        return []


def _already_exists(status: int, errors: list[_ErrorDetail]) -> bool:
    """Whether Cloudflare refused the upload because the custom id is taken."""
    if status == 409:
        return True
    return any(
        error.code == ALREADY_EXISTS_CODE or "already exists" in (error.message or "").lower()
        for error in errors
    )


def _describe(error: _ErrorDetail) -> str:
    message = error.message or "error"
    return f"{message} (code {error.code})" if error.code is not None else message
