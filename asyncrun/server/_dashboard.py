"""The web dashboard: its page at ``/`` and its static files under ``/ui/``.

The files are in ``_ui/`` beside this module (the front-end libraries are vendored in
``_ui/vendor/`` by ``nox -s vendor_ui``), read once, and served from memory: only the files that
exist are routes, so no path can reach outside that folder, and any other ``/ui/...`` path gets
the API's JSON 404. The page talks to the same JSON API as the SDK with the same tokens, which
it keeps in the browser's session storage; the server sets no cookie and holds no session.

Every answer carries a strict Content-Security-Policy: scripts and styles only from this
origin (plus the page's one inline import map, by its hash), requests only to this origin, no
frames, no form submissions, no referrer.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._core.errors import NotFound

UI_DIR: Final = Path(__file__).with_name("_ui")
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}
_IMPORT_MAP: Final = re.compile(rb'<script type="importmap">(.*?)</script>', re.S)


def _policy(index: bytes) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _IMPORT_MAP.findall(index)
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class Dashboard:
    """The dashboard's files, read once from ``root``."""

    def __init__(self, root: Path = UI_DIR) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for path in sorted(root.rglob("*")):
            kind = _TYPES.get(path.suffix)
            if path.is_file() and kind is not None:
                body = path.read_bytes()
                tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self.files[path.relative_to(root).as_posix()] = (body, kind, tag)
        self.headers = {
            "Content-Security-Policy": _policy(self.files.get("index.html", (b"",))[0]),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",  # revalidated by ETag: a new version shows at once
        }

    def _serve(self, request: Request, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            raise NotFound(f"no route {request.method} {request.url.path}")
        body, kind, tag = found
        headers = {**self.headers, "ETag": tag}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type=kind)

    async def index(self, request: Request) -> Response:
        return self._serve(request, "index.html")

    async def asset(self, request: Request) -> Response:
        return self._serve(request, request.path_params["path"])

    def routes(self) -> list[Route]:
        """``GET /`` (the page) and ``GET /ui/{path}`` (its files)."""
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/ui/{path:path}", self.asset, methods=["GET"]),
        ]
