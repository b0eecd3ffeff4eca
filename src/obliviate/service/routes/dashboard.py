"""``/dashboard``: a monitoring page with no build step (plain HTML, vanilla JS, inline SVG).

The page itself is public and holds no data: it asks for an API key (or reads one from the
URL fragment ``#key=...``, which browsers never send to the server), keeps it in
``sessionStorage`` and calls the JSON API with it, so every number it shows passes the same
scope checks as any other client (``unlearn:read`` for the queue and requests, any key for
models). A strict Content-Security-Policy allows only this origin's script: the page renders
data with ``textContent``, never as HTML.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FILES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("obliviate.service").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_FILES[name], headers=_HEADERS)


@router.get("/dashboard")
def dashboard() -> Response:
    """The dashboard page."""
    return _serve("dashboard.html")


@router.get("/dashboard/dashboard.js")
def dashboard_js() -> Response:
    """The dashboard's script."""
    return _serve("dashboard.js")


@router.get("/dashboard/dashboard.css")
def dashboard_css() -> Response:
    """The dashboard's style sheet."""
    return _serve("dashboard.css")
