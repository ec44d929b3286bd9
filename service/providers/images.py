"""Safe image downloads: every hop checked against SSRF, hard caps on bytes, pixels and time."""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from io import BytesIO
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx
from PIL import Image, UnidentifiedImageError

from service.errors import (
    ImageDownloadError,
    ImageFetchError,
    ImageTooLargeError,
    NotAnImageError,
    UnsafeUrlError,
)
from service.urls import display_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif", "ICO": "ico"}
# Compressed bodies could expand far past the cap inside a single decoded chunk.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
IDENTITY_CODINGS = frozenset({"", "identity"})


@dataclass(frozen=True)
class FetchedImage:
    """The body of a successful download and where it finally came from."""

    url: str
    data: bytes
    content_type: str | None
    status: int


@dataclass(frozen=True)
class ImageInfo:
    """What Pillow says an image is."""

    format: str
    width: int
    height: int
    mime: str
    extension: str


def unsafe_reason(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused, or None when it is a public address."""
    # ::ffff:a.b.c.d reaches a.b.c.d, so it is judged as that IPv4 address. Python already
    # classifies the 6to4, Teredo and NAT64 prefixes as non-global, so they need no unwrapping.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    reasons = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for flagged, reason in reasons if flagged), None)


# What a cover or artist photo can be; Pillow could open far more (TIFF, PSD, EPS, ...).
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Identify, verify and fully decode `data`; raise NotAnImageError or ImageTooLargeError."""
    # CPU-bound: code on the event loop calls it through `ImageFetcher.inspect` (a thread).
    try:
        return _inspect(data, max_pixels)
    except UnidentifiedImageError as exc:
        # Pillow's own text names an in-memory buffer object: say what matters instead.
        head = data[:16].decode("ascii", "replace").strip()
        raise NotAnImageError(
            f"not an image ({len(data)} bytes starting {head!r})", url=""
        ) from exc
    except Image.DecompressionBombError as exc:
        # Pillow's process-wide limit, far above ours by default, caught a canvas first.
        raise ImageTooLargeError(f"image too large: {exc}", url="") from exc
    except (OSError, SyntaxError) as exc:
        raise NotAnImageError(f"not a valid image: {exc}", url="") from exc


def _inspect(data: bytes, max_pixels: int) -> ImageInfo:
    # Image.open reads only the header, so the canvas is judged before any pixel is decoded.
    with Image.open(BytesIO(data), formats=ACCEPTED_FORMATS) as probe:
        check_pixels(probe.size, max_pixels)
        probe.verify()
    # verify() leaves the image unusable and does not decode (a truncated JPEG passes it), so
    # a fresh open decodes every pixel: only an image that decodes whole is accepted.
    with Image.open(BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        image.load()
        image_format, (width, height) = image.format, image.size
    if image_format is None:
        raise NotAnImageError("not an image: Pillow reports no format", url="")
    return ImageInfo(
        format=image_format,
        width=width,
        height=height,
        mime=Image.MIME.get(image_format, "application/octet-stream"),
        extension=EXTENSIONS.get(image_format, image_format.lower()),
    )


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse a canvas of more than `max_pixels` pixels (our cap, not Pillow's global one)."""
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} pixels is over the cap of {max_pixels} pixels", url=""
        )


class ImageFetcher:
    """Downloads images over http(s), following redirects itself so every hop is checked."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        deadline_seconds: float,
        max_pixels: int,
        allowed_hosts: frozenset[str] = frozenset(),
        max_bytes: int = 15 * 1024 * 1024,
        max_redirects: int = 5,
    ) -> None:
        self._http = http
        self._deadline_seconds = deadline_seconds
        self._max_pixels = max_pixels
        self._allowed_hosts = frozenset(host.lower().strip("[]") for host in allowed_hosts)
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects

    async def fetch(self, url: str) -> FetchedImage:
        """Download the image at `url`; raise an ImageFetchError subclass on any failure."""
        # The HTTP timeouts bound each read, not the whole: a server dripping a byte at a time
        # never trips them. One deadline covers every hop, DNS, connect, headers and body.
        try:
            async with asyncio.timeout(self._deadline_seconds):
                return await self._follow(url)
        except TimeoutError as exc:
            message = f"download of {display_url(url)} exceeded {self._deadline_seconds:g} s"
            raise ImageDownloadError(message, url=url) from exc

    async def inspect(self, data: bytes) -> ImageInfo:
        """`inspect_image` under this fetcher's pixel cap, in a thread: decoding is CPU-bound."""
        return await asyncio.to_thread(inspect_image, data, max_pixels=self._max_pixels)

    async def _follow(self, url: str) -> FetchedImage:
        """Fetch `url`, following at most `max_redirects` redirects, each hop checked first."""
        seen: set[str] = set()
        current, status = url, None  # status: the redirect that led to `current`, if any
        for _ in range(self._max_redirects + 1):
            key = urlunsplit(split_url(current)._replace(fragment=""))
            if key in seen:
                message = f"refusing {display_url(current)}: redirect loop"
                raise UnsafeUrlError(message, url=current, status=status)
            seen.add(key)
            try:
                await self._check_url(current)
            except UnsafeUrlError as exc:
                exc.status = status
                raise
            result = await self._get(current)
            if isinstance(result, FetchedImage):
                return result
            current, status = result
        message = f"refusing {display_url(url)}: more than {self._max_redirects} redirects"
        raise UnsafeUrlError(message, url=current, status=status)

    async def _check_url(self, url: str) -> None:
        """Refuse a URL whose scheme is not http(s) or whose host is not public."""
        parts = split_url(url)
        shown = display_url(url)
        if parts.scheme not in ALLOWED_SCHEMES:
            raise UnsafeUrlError(
                f"refusing {shown}: scheme {parts.scheme!r} is not http or https", url=url
            )
        host = parts.hostname
        if not host:
            raise UnsafeUrlError(f"refusing {shown}: no host", url=url)
        if host in self._allowed_hosts:
            return
        # The DNS-rebinding window: httpx resolves the name again when it connects, so a
        # hostile DNS server could answer differently the second time. Closing it means
        # connecting to the checked IP with Host and TLS SNI set by hand, which breaks proxies
        # and certificate handling; we accept the window (one short TTL) and rely on the
        # network's egress rules as the second line of defence.
        for address in await resolve(url, host, port_of(url, parts)):
            reason = unsafe_reason(address)
            if reason is not None:
                raise UnsafeUrlError(f"refusing {shown}: {address} is {reason}", url=url)

    async def _get(self, url: str) -> FetchedImage | tuple[str, int]:
        """One request: the image, or the next URL and status when the answer is a redirect."""
        shown = display_url(url)
        try:
            async with self._http.stream(
                "GET", url, headers=REQUEST_HEADERS, follow_redirects=False
            ) as response:
                return await self._read_response(url, response)
        except httpx.TimeoutException as exc:
            raise ImageDownloadError(f"timed out fetching {shown}", url=url) from exc
        except httpx.InvalidURL as exc:
            raise ImageFetchError(f"invalid URL {shown}", url=url) from exc
        # httpx error texts can quote the request, so only the error's type goes in the message.
        except httpx.RequestError as exc:
            raise ImageDownloadError(
                f"could not fetch {shown}: {type(exc).__name__}", url=url
            ) from exc

    async def _read_response(
        self, url: str, response: httpx.Response
    ) -> FetchedImage | tuple[str, int]:
        """The redirect target, or the capped body of a 2xx answer; raise on anything else."""
        status = response.status_code
        if status in REDIRECT_STATUSES:
            return redirect_target(url, response), status
        raise_for_status(url, status)
        self._check_declared_length(url, response)
        check_identity_encoding(url, response)
        data = await self._read_capped(url, response)
        return FetchedImage(
            url=url, data=data, content_type=response.headers.get("Content-Type"), status=status
        )

    def _check_declared_length(self, url: str, response: httpx.Response) -> None:
        """Refuse before reading when Content-Length already says the body is too big."""
        declared: str = response.headers.get("Content-Length", "")
        # A missing or malformed header is not an error: the streaming cap still applies.
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(url, response.status_code)

    async def _read_capped(self, url: str, response: httpx.Response) -> bytes:
        """The body as received (never decoded), aborting as soon as it grows past the cap."""
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_raw():
            total += len(chunk)
            if total > self._max_bytes:
                raise self._too_large(url, response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: str, status: int) -> ImageTooLargeError:
        return ImageTooLargeError(
            f"image larger than {self._max_bytes} bytes at {display_url(url)}",
            url=url,
            status=status,
        )


def check_identity_encoding(url: str, response: httpx.Response) -> None:
    """Refuse a body sent with a Content-Encoding we did not ask for (we ask for identity)."""
    # Decoding would undo the cap: httpx inflates each received chunk in one go, so 2 KB of
    # stacked gzip becomes gigabytes before a single byte is counted. Undecoded, the bytes
    # the cap counts are the bytes Pillow gets, and an image needs no HTTP compression.
    codings = response.headers.get_list("Content-Encoding", split_commas=True)
    if any(coding.strip().lower() not in IDENTITY_CODINGS for coding in codings):
        declared = response.headers.get("Content-Encoding")
        raise ImageFetchError(
            f"refusing {display_url(url)}: Content-Encoding {declared!r} was not asked for",
            url=url,
            status=response.status_code,
        )


def split_url(url: str) -> SplitResult:
    """`urlsplit`, with a malformed URL reported as a permanent fetch error."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ImageFetchError(f"invalid URL {display_url(url)}", url=url) from exc


def port_of(url: str, parts: SplitResult) -> int:
    """The URL's port, or its scheme's default."""
    try:
        port = parts.port
    except ValueError as exc:
        raise ImageFetchError(f"invalid port in {display_url(url)}", url=url) from exc
    return port if port is not None else DEFAULT_PORTS[parts.scheme]


async def resolve(url: str, host: str, port: int) -> list[IPAddress]:
    """Every address `host` stands for: itself when it is an IP literal, else all DNS answers."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageDownloadError(f"cannot resolve {host}: {exc.strerror}", url=url) from exc
    except UnicodeError as exc:
        raise ImageFetchError(f"invalid host name in {display_url(url)}", url=url) from exc
    if not infos:
        raise ImageDownloadError(f"cannot resolve {host}: no addresses", url=url)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def redirect_target(url: str, response: httpx.Response) -> str:
    """The absolute URL a redirect points to."""
    location: str | None = response.headers.get("Location")
    if not location:
        raise ImageFetchError(
            f"redirect {response.status_code} without Location from {display_url(url)}",
            url=url,
            status=response.status_code,
        )
    return urljoin(url, location)


def raise_for_status(url: str, status: int) -> None:
    """Map a non-2xx status onto retryable or permanent errors; do nothing on 2xx."""
    if 200 <= status < 300:
        return
    message = f"HTTP {status} from {display_url(url)}"
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
        raise ImageDownloadError(message, url=url, status=status)
    raise ImageFetchError(message, url=url, status=status)
