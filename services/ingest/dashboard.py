"""The operator dashboard at /ui: static HTML, JavaScript and CSS shipped in the package (mailstream/ingest/ui/).

The page holds no data and needs no key to load: it asks for an API key, keeps it in the browser's
sessionStorage and sends it as `Authorization: Bearer` to the same API every other client uses, so the page
can do and see exactly what that key can (a tenant's key, its own tenant). The Content-Security-Policy allows
scripts, styles and requests from this origin only (no inline script or style, no other host), and no framing.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from mailstream.ingest.problems import Problem

# `name` in the URL -> (file in ui/, media type)
FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors' equivalent for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated, so an upgraded ingest's page is seen at once
}


def ui_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once; a missing one (a wheel built without them) fails ingest at start."""
    folder = resources.files("mailstream.ingest").joinpath("ui")
    return {name: (folder.joinpath(file).read_bytes(), media) for name, (file, media) in FILES.items()}


def dashboard_router() -> APIRouter:
    files = ui_files()
    router = APIRouter(include_in_schema=False)  # a page, not part of the API's contract

    @router.get("/ui")
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=308)

    @router.get("/ui/{name:path}")
    async def ui(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise Problem(404, "Not found", f"the dashboard has no file {name!r}", headers=HEADERS)
        body, media = found
        return Response(body, media_type=media, headers=HEADERS)

    return router
