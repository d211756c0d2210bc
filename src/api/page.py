"""The frame of the Settings page: templates, static files, security headers, error pages.

The page is server-rendered HTML (Jinja2 through FastAPI's ``Jinja2Templates``) plus two scripts
served from ``static/``: htmx (vendored, version and licence in ``static/VENDORED.md``) and our
``app.js``. Nothing is fetched from another host and nothing runs inline, so the
Content-Security-Policy allows only this origin's files: an injected ``<script>`` or ``style``
attribute would not run even if some text escaped escaping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infraudit import __version__, urls
from infraudit.contract import MAX_ATTEMPTS

#: Where the page lives; ``/`` redirects here too.
PAGE_PATH = "/settings"
STATIC_PATH = f"{PAGE_PATH}/static"
_HERE = Path(__file__).parent

TEMPLATES = Jinja2Templates(directory=_HERE / "templates")

#: Only this origin's scripts, styles, images and requests; no frames, plugins, or forms posting
#: elsewhere. ``style-src 'self'`` also refuses ``style=""`` attributes, which the templates
#: never use (htmx's own inline indicator style is turned off in ``base.html``).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

#: Headers on every response of the page (its HTML, fragments, redirects and static files).
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
#: HTML and fragments are the org's data: never stored by the browser or a proxy, so the back
#: button cannot bring back a page (a new signing secret above all) from a cache.
NO_STORE = "no-store"
#: Over https, browsers are told to keep to https (a year).
STRICT_TRANSPORT = "max-age=31536000"


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (it sets ``HX-Request: true``): the page then answers with
    a fragment, or an ``HX-Redirect``, instead of a whole page or a redirect."""
    return request.headers.get("hx-request") == "true"


def is_page_path(path: str) -> bool:
    """Whether ``path`` belongs to the Settings page (``/`` redirects to it)."""
    return path in ("/", PAGE_PATH) or path.startswith(f"{PAGE_PATH}/")


class PageAnswer(Exception):
    """Ends a page request with ``response``: a redirect, or a form shown again with its errors.

    Raised, not returned, so the request's database transaction rolls back on the way out
    (``deps.session``): a form that is shown again with errors has changed nothing.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PageHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` (and ``no-store`` on everything but the
    static files) to the page's responses. The ``/v1`` API and ``/docs`` are left as they
    were: Swagger UI loads its script from a CDN, which this policy would refuse."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_page_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        extra = dict(SECURITY_HEADERS)
        if not scope["path"].startswith(f"{STATIC_PATH}/"):
            extra["Cache-Control"] = NO_STORE
        if scope.get("scheme") == "https":
            extra["Strict-Transport-Security"] = STRICT_TRANSPORT
        encoded = [(k.lower().encode(), v.encode()) for k, v in extra.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in encoded}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + encoded}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def utc_text(value: datetime) -> str:
    """``2024-01-15 10:30:00 UTC``: how a time reads before ``app.js`` shows it in the
    browser's time zone, and the tooltip that keeps the UTC value at hand after."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_utc(value: datetime) -> str:
    """``2024-01-15T10:30:00.123Z``: the machine-readable ``<time datetime>`` value."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pretty_json(value: Any) -> str:
    """A payload as indented JSON, keys in the order they were sent, text as it was (no
    ``\\u`` escapes): the same content as the bytes that were signed, laid out to read."""
    return json.dumps(value, indent=2, ensure_ascii=False)


# ``redact``: where a URL shows outside the page's own fields (the title, kept in browser
# history), its credentials and query string are left out.
TEMPLATES.env.filters.update(
    utc_text=utc_text, iso_utc=iso_utc, pretty_json=pretty_json, redact=urls.redact
)
TEMPLATES.env.globals.update(
    static=STATIC_PATH, page=PAGE_PATH, version=__version__, max_attempts=MAX_ATTEMPTS
)


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """A template as the response."""
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> Response | None:
    """An error of a page request as a page saying ``message`` (``errors.install``'s hook);
    None for other requests, which get JSON."""
    if not is_page_path(request.url.path):
        return None
    return render(request, "error.html", {"status": status_code, "message": message}, status_code)


async def _page_answer(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageAnswer)
    return exc.response


def install(app: FastAPI) -> None:
    """Serve the static files, add the headers, and answer :class:`PageAnswer`."""
    app.mount(STATIC_PATH, StaticFiles(directory=_HERE / "static"), name="static")
    app.add_middleware(PageHeaders)
    app.add_exception_handler(PageAnswer, _page_answer)
