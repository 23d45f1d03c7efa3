"""The operations dashboard: a static page (HTML, CSS, JavaScript; no build step, no CDN)
served at `/`, with its assets under `/dashboard/`.

The page holds no data and no secret: it asks for a bearer token (the `ops` identity's),
keeps it in the tab's sessionStorage and reads everything it shows from the REST API
(docs/rest.md) with `Authorization: Bearer <token>`; the services decide (401/403). So the
handlers here only serve the files, with headers that keep the page to its own origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page talks to this origin only, runs only its own scripts and cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets(directory: Path = STATIC) -> dict[str, Asset]:
    """Every file of the dashboard by name, read once (a handful of small files)."""
    return {
        path.name: Asset(path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.suffix in CONTENT_TYPES
    }


def add_dashboard_routes(app: web.Application) -> None:
    """GET `/` (the page) and GET `/dashboard/{file}` (its scripts and styles)."""
    assets = load_assets()

    def answer(asset: Asset) -> web.Response:
        return web.Response(body=asset.body, headers={**SECURITY_HEADERS, "Content-Type": asset.content_type})

    async def index(request: web.Request) -> web.Response:
        return answer(assets["index.html"])

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["file"])
        if found is None:
            raise web.HTTPNotFound(text="no such dashboard file")
        return answer(found)

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/{file}", asset)
