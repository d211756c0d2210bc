"""A local receiver for trying webhooks out: ``infraudit listen``.

It prints each delivery as it arrives, checks its signature when given the secret, and answers
with a status of the user's choice, so a developer can watch a success or the retry schedule
without writing a receiver first.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infraudit import signing


def describe(body: bytes, headers: dict[str, str], secret: str | None) -> str:
    """One line about a delivery: event, delivery id, signature verdict."""
    event = headers.get(signing.EVENT_HEADER.lower(), "?")
    delivery = headers.get(signing.DELIVERY_HEADER.lower(), "?")
    if secret is None:
        verdict = "signature not checked (no --secret)"
    elif signing.verify_signature(body, secret, headers.get(signing.SIGNATURE_HEADER.lower())):
        verdict = "signature valid"
    else:
        verdict = "SIGNATURE INVALID"
    return f"{event} {delivery}: {verdict}"


def create_listener(
    *, secret: str | None, status: int, echo: Callable[[str], None], show_body: bool = True
) -> Starlette:
    """An ASGI app answering every POST with ``status`` and reporting it through ``echo``."""

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        echo(describe(body, headers, secret))
        if show_body:
            try:
                echo(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
            except ValueError:
                echo(body.decode("utf-8", errors="replace"))
        return JSONResponse({"received": True}, status_code=status)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
