"""Cloudflare Images v1 (upload, get) served on 127.0.0.1 in the real API's envelopes.

The tests point the real `cloudflare` SDK at it (`CLOUDFLARE_API_BASE_URL`); it records what
it saw and fails on demand (`mode`).
"""

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

ACCOUNT = "acct123"
ACCOUNT_HASH = "HaSh_abc"
IMAGES_PATH = re.compile(rf"^/client/v4/accounts/{ACCOUNT}/images/v1(?:/(?P<id>[^/]+))?$")


@dataclass
class Upload:
    """One POST to the images endpoint as the fake API saw it."""

    authorization: str
    fields: dict[str, bytes]
    file_name: str
    file_type: str


@dataclass
class FakeCloudflare:
    """Cloudflare Images v1 (upload, get) on 127.0.0.1, with switchable failure modes."""

    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    mode: str = "ok"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, upload: Upload) -> tuple[int, Any]:
        with self.lock:
            self.uploads.append(upload)
            failure = self.failure(upload.authorization)
            if failure:
                return failure
            image_id = upload.fields["id"].decode()
            if self.mode == "exists-in-200":
                return 200, envelope_error(5409, ALREADY_EXISTS_TEXT)
            if image_id in self.images or self.mode == "conflict":
                return 409, envelope_error(5409, ALREADY_EXISTS_TEXT)
            self.images[image_id] = {
                "id": image_id,
                "filename": upload.file_name,
                "uploaded": "2025-01-01T00:00:00Z",
                "requireSignedURLs": False,
                "meta": json.loads(upload.fields["metadata"]),
                "variants": [f"https://imagedelivery.net/{ACCOUNT_HASH}/{image_id}/public"],
                "data": upload.fields["file"],
            }
            return 200, envelope_ok(self.images[image_id])

    def get(self, image_id: str, authorization: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.authorizations.append(authorization)
            if image_id not in self.images:
                return 404, envelope_error(5404, "Image not found")
            return 200, envelope_ok(self.images[image_id])

    def failure(self, authorization: str) -> tuple[int, Any] | None:
        return {
            "401": (401, envelope_error(10000, "Authentication error")),
            "400": (400, envelope_error(5400, "Bad request: image could not be decoded")),
            # A server that quotes the credential back must not get it into our messages.
            "400-echo": (400, envelope_error(5400, f"Bad request for {authorization}")),
            "500": (500, envelope_error(5500, "Internal server error")),
            "429": (429, envelope_error(971, "Please wait and consider throttling")),
            "502-html": (502, "<html><body>Bad gateway</body></html>"),
        }.get(self.mode)


ALREADY_EXISTS_TEXT = "Resource already exists. Verify the resource information and try again."


def envelope_ok(image: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in image.items() if k != "data"}
    return {"success": True, "errors": [], "messages": [], "result": result}


def envelope_error(code: int, message: str) -> dict[str, Any]:
    errors = [{"code": code, "message": message}]
    return {"success": False, "errors": errors, "messages": [], "result": None}


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Each form field's value and part headers (a plain parser: binary bytes stay intact)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary, content_type
    fields = {}
    for part in body.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        name = re.search(r'name="([^"]*)"', headers["Content-Disposition"])
        assert name
        fields[name.group(1)] = (value.removesuffix(b"\r\n"), headers)
    return fields


def handler_for(api: FakeCloudflare) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            match = IMAGES_PATH.match(self.path)
            if not match or match["id"]:
                self.answer(404, envelope_error(7003, "No route"))
                return
            body = self.rfile.read(int(self.headers["Content-Length"]))
            parts = parse_multipart(self.headers["Content-Type"], body)
            file_headers = parts["file"][1]
            filename = re.search(r'filename="([^"]*)"', file_headers["Content-Disposition"])
            upload = Upload(
                authorization=self.headers.get("Authorization", ""),
                fields={name: value for name, (value, _) in parts.items()},
                file_name=filename.group(1) if filename else "",
                file_type=file_headers.get("Content-Type", ""),
            )
            self.answer(*api.post(upload))

        def do_GET(self) -> None:
            match = IMAGES_PATH.match(self.path)
            if not match or not match["id"]:
                self.answer(404, envelope_error(7003, "No route"))
                return
            self.answer(*api.get(match["id"], self.headers.get("Authorization", "")))

        def answer(self, status: int, body: Any) -> None:
            is_text = isinstance(body, str)
            payload = body.encode() if is_text else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if is_text else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
