"""Errors as ``application/problem+json`` (RFC 9457): a title and a status, and a detail naming
what was wrong; a browser (one that asks for HTML) gets the same as a small HTML page."""
from __future__ import annotations

import html
import json

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"


def wants_html(request: web.Request) -> bool:
    """Whether the client asked for HTML rather than JSON (a browser)."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not request.path.startswith("/api/")


def problem(request: web.Request | None, status: int, title: str, detail: str = "", **more: object) -> web.Response:
    """The error answer: problem+json, or HTML for a browser asking for a page."""
    if request is not None and wants_html(request):
        text = (
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{status} {html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(detail)}</p><p><a href=\"/\">The downtimes</a></p></body></html>"
        )
        return web.Response(status=status, text=text, content_type="text/html", charset="utf-8")
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {}), **more}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE)


class BadParameter(Exception):
    """A query parameter that cannot be read: answered 400, naming it."""

    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


class NotFound(Exception):
    """Nothing there, or nothing public there (the same answer for both): answered 404."""

    def __init__(self, detail: str = "There is nothing here."):
        super().__init__(detail)
        self.detail = detail
