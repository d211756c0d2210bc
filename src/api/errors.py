"""One error shape for every 4xx: ``{"error": {"message", "field", "errors"}}``.

Clients (and our CLI) read ``message``; ``field`` names the offending input so a form can point
at it. Unhandled exceptions never reach a client as a bare 500 page. A request of the Settings
page gets the same status and message as an HTML page instead (``install``'s ``page``), so a
browser never shows raw JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from infraudit.api.strict_json import BodyProblem
from infraudit.store.db import OUTAGE_ERRORS

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One validation problem: the input it concerns (dotted path) and what is wrong with it."""

    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


class ErrorDetail(BaseModel):
    """What went wrong; ``field`` is null when no single input is to blame (a 404 route, a 503)."""

    model_config = ConfigDict(extra="forbid")

    message: str
    field: str | None
    errors: list[FieldError]


class ErrorBody(BaseModel):
    """The body of every error response, whatever its status; the OpenAPI document says so."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


#: What each error status means to a caller: the OpenAPI descriptions, and the statuses
#: ``error_responses`` accepts. ``docs/api.md`` tells the same in its table.
_STATUS_MEANINGS: dict[int, str] = {
    401: "Missing or unknown API key.",
    404: "No such webhook or delivery in your org (another org's answers the same).",
    409: "The request conflicts with the current state (a test ping to a disabled webhook, "
    "an event id reused for a different event, a new webhook for an org at its cap).",
    413: "The request body is over its size limit.",
    422: "A body, JSON document or parameter that does not validate; `field` names it.",
    429: "Over the org's rate limit; retry after `Retry-After` seconds.",
    503: "The database or Temporal is unavailable; the message says what became of the request. "
    "Retry after `Retry-After` seconds.",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}

#: Headers an error status always carries (RFC 9110: 401 names its scheme, 503 may say when to
#: come back; RFC 6585: so may 429), declared so clients and schema checkers can rely on them.
_STATUS_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with: `Bearer`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses a route can answer, all in ``ErrorBody``.

    Declaring 422 here also keeps FastAPI from advertising its own validation-error shape,
    which is not what ``install``'s handler answers.
    """
    return {
        code: {
            "model": ErrorBody,
            "description": _STATUS_MEANINGS[code],
            **({"headers": _STATUS_HEADERS[code]} if code in _STATUS_HEADERS else {}),
        }
        for code in codes
    }


class ApiError(Exception):
    """An error a route raises to answer with a given status and field."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field
        self.headers = headers


#: Seconds a 503 asks the caller to wait before retrying: a hint, no one knows when an outage
#: ends, but a caller retrying at once would only add load to whatever is struggling.
OUTAGE_RETRY_AFTER = 5


def unavailable(message: str) -> ApiError:
    """A 503 saying ``message`` (what became of the request), with ``Retry-After``."""
    return ApiError(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        message,
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER)},
    )


def error_body(
    message: str, field: str | None = None, errors: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The JSON body of an error response, checked against ``ErrorBody``."""
    detail = ErrorDetail(
        message=message, field=field, errors=[FieldError.model_validate(e) for e in errors]
    )
    return ErrorBody(error=detail).model_dump(mode="json")


#: Renders an error for a browser page: ``(request, status, message)`` → the HTML response, or
#: None when the request is not the page's (then it is answered in JSON).
ErrorPage = Callable[[Request, int, str], Response | None]


def _answer(
    request: Request,
    status_code: int,
    message: str,
    field: str | None = None,
    *,
    errors: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The error as the page's HTML when the request is one of the page's, else as JSON."""
    page: ErrorPage | None = getattr(request.app.state, "error_page", None)
    rendered = page(request, status_code, message) if page is not None else None
    if rendered is None:
        body = error_body(message, field, errors)
        return JSONResponse(body, status_code=status_code, headers=headers)
    rendered.headers.update(headers or {})
    return rendered


def _field_name(location: Sequence[Any]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _problem(error: Mapping[str, Any]) -> dict[str, str]:
    """One pydantic/FastAPI validation error as ``{"field", "message"}``.

    A body that is not JSON at all comes as ``json_invalid`` located at ``("body", <offset>)``:
    the offset is no field, so it names ``body`` and says where parsing stopped.
    """
    if error.get("type") == "json_invalid":
        reason = error.get("ctx", {}).get("error", "decode error")
        offset = error.get("loc", ())[-1]
        return {"field": "body", "message": f"not valid JSON: {reason} at character {offset}"}
    return {"field": _field_name(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}


def problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's or FastAPI's validation errors as ``[{"field", "message"}]``: what the
    ``errors`` list of a 422 holds, and what the Settings page shows next to its fields."""
    return [_problem(e) for e in errors]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = problems(exc.errors())
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return _answer(
        request,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"{first['field']}: {first['message']}",
        first["field"],
        errors=errors,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _answer(request, exc.status_code, exc.message, exc.field, headers=exc.headers)


def _allowed_methods(request: Request, listed: str) -> str:
    """Every method served at the request's path, for a 405's ``Allow`` header (RFC 9110).

    Starlette's ``listed`` names only the methods of the first route whose path matches, but
    FastAPI makes one route per method (``GET`` and ``DELETE`` of a webhook are two routes), so
    the methods of every operation the OpenAPI document has at this path are added.
    """
    methods = {m.strip() for m in listed.split(",") if m.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].fullmatch(request.scope["path"]):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


#: Why FastAPI's body parser gave up on a JSON body, by the exception it caught.
_UNREADABLE_BODY = {
    UnicodeDecodeError: "not valid JSON: it is not UTF-8",
    RecursionError: "not valid JSON we can read: nested too deeply",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and exc.__cause__ is not None:
        # FastAPI answers 400 "error parsing the body" when decoding the body raised (not UTF-8,
        # nested past the parser's recursion limit). To a caller that is malformed JSON like
        # any other, which this API answers 422 naming ``body``.
        cause = exc.__cause__
        if isinstance(cause, BodyProblem):
            reason = str(cause)
        else:
            reason = _UNREADABLE_BODY.get(type(cause), "not valid JSON")
        return _answer(request, status.HTTP_422_UNPROCESSABLE_CONTENT, f"body: {reason}", "body")
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
    return _answer(request, exc.status_code, str(exc.detail), headers=headers or None)


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """503 for a database outage. Its transaction rolled back, so the request changed nothing.

    The log line carries the driver's own message (host and port included) but not SQLAlchemy's
    text, which repeats the statement's parameters.
    """
    assert isinstance(exc, OUTAGE_ERRORS)
    cause = getattr(exc, "orig", None) or exc
    log.warning("database unavailable: %s: %s", type(cause).__name__, cause)
    outage = unavailable(
        "the database is unavailable: nothing was read or changed; retry in a few seconds"
    )
    return await _api_error(request, outage)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _answer(request, status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


def install(app: FastAPI, page: ErrorPage | None = None) -> None:
    """Register the handlers on ``app``; ``page`` renders the errors of the Settings page."""
    app.state.error_page = page
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for outage in OUTAGE_ERRORS:
        app.add_exception_handler(outage, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
