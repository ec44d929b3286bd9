"""The local image host: real PNG and JPEG bytes made with Pillow, plus two bad files."""

import hashlib
import io
from collections.abc import Iterator
from functools import lru_cache

from PIL import Image, ImageDraw

OVERSIZED_BYTES = 16 * 1024 * 1024  # over the default 15 MB cap
CHUNK = 64 * 1024


@lru_cache(maxsize=64)
def image_bytes(name: str, width: int = 600, height: int = 600) -> bytes:
    """A small, distinct, valid image for a file name (its extension picks the format)."""
    seed = hashlib.sha256(name.encode()).digest()
    image = Image.new("RGB", (width, height), tuple(seed[:3]))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        x, y = seed[3 + i] * width // 256, seed[9 + i] * height // 256
        draw.ellipse((x - 40, y - 40, x + 40, y + 40), fill=tuple(seed[15 + i : 18 + i]))
    out = io.BytesIO()
    image.save(out, format="JPEG" if name.endswith((".jpg", ".jpeg")) else "PNG")
    return out.getvalue()


def oversized_stream() -> Iterator[bytes]:
    """A PNG signature followed by more bytes than the cache accepts, without a length."""
    yield image_bytes("oversized-head.png")
    sent = 0
    while sent < OVERSIZED_BYTES:
        yield b"\0" * CHUNK
        sent += CHUNK


def image_answer(
    name: str, size: tuple[int, int] | None
) -> tuple[int, bytes | Iterator[bytes], str]:
    """Status, body and content type for `/images/<name>`."""
    if name == "not-an-image.jpg":
        return 200, b"<html><body>Image temporarily unavailable</body></html>", "image/jpeg"
    if name == "oversized.png":
        return 200, oversized_stream(), "image/png"
    if not name.endswith((".png", ".jpg", ".jpeg")):
        return 404, b"not found", "text/plain"
    mime = "image/png" if name.endswith(".png") else "image/jpeg"
    width, height = size or (600, 600)
    return 200, image_bytes(name, width, height), mime
