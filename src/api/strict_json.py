"""JSON request bodies read strictly: UTF-8 only, no duplicate keys, no absurdly long numbers.

Starlette's ``Request.json`` is Python's ``json.loads`` on the raw bytes, which guesses UTF-16 and
UTF-32 from the bytes and keeps the *last* of duplicate keys. RFC 8259 requires UTF-8 between
systems and leaves duplicate names undefined: ``{"event": "a", "event": "b"}`` means one event to
us and perhaps another to a proxy or log pipeline that read it first, so such a body is refused
rather than guessed at (the same reasoning as the I-JSON profile, RFC 7493). A byte order mark is
ignored, as RFC 8259 allows.

The routes of the ``/v1`` routers use :class:`StrictJSONRoute`; a refused body reaches the error
handlers (``infraudit.api.errors``) as a :class:`BodyProblem` and answers 422 naming ``body``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

#: Longest integer literal read (digits). Anything longer is far past the ±(2^53 - 1) that event
#: data may hold (``infraudit.event_data``), and Python refuses past 4300 digits anyway.
MAX_INTEGER_DIGITS = 100


class BodyProblem(ValueError):
    """Why a JSON body was refused; the message is shown to the caller after ``body: ``."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object from its members, refusing a name given twice."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BodyProblem(f"the key {key[:64]!r} appears twice in one object")
        obj[key] = value
    return obj


def _integer(text: str) -> int:
    """An integer literal, refusing one too long to mean a number anyone can read."""
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise BodyProblem(f"an integer of {digits} digits; JSON numbers carry at most ±(2^53 - 1)")
    return int(text)


def loads(body: bytes) -> Any:
    """``body`` as strict JSON; raises :class:`BodyProblem` or ``json.JSONDecodeError``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyProblem("not valid JSON: it is not UTF-8") from None
    return json.loads(
        text.removeprefix("\ufeff"), object_pairs_hook=_unique_keys, parse_int=_integer
    )


class StrictJSONRequest(Request):
    """A request whose ``json()`` is :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body FastAPI reads through :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
