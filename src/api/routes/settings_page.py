"""Settings → Webhooks: the customer guide's page, served as HTML by the API process.

Every action goes through :mod:`infraudit.api.actions`, the functions the ``/v1`` routes call,
so the page refuses what the API refuses, with the same message (shown next to the field it
names), and reads the delivery log the same way. The browser is signed in by cookie
(:mod:`infraudit.api.signin`); an org sees only its own webhooks, and another org's webhook id
is the same 404 page as one that does not exist. None of these routes is in the OpenAPI
document: they are a page, not an API.

Changes are plain HTML forms answered with a redirect (so a reload never repeats them); htmx
(see :mod:`infraudit.api.page`) adds the parts that update in place: a test event's outcome,
and the delivery history and a delivery's detail while anything in them is pending.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from infraudit import events, ids
from infraudit.api import actions
from infraudit.api.deps import (
    QuotasDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    load_webhook,
)
from infraudit.api.errors import ApiError, problems
from infraudit.api.page import PAGE_PATH, PageAnswer, is_htmx, render
from infraudit.api.schemas import WebhookCreate, WebhookOut, WebhookUpdate
from infraudit.api.signin import (
    COOKIE,
    SECRET_COOKIE,
    SECRET_COOKIE_SECONDS,
    SIGN_IN_PATH,
    SignIn,
    SignInDep,
    SignInKeysDep,
    check_same_origin,
    secure_cookies,
)
from infraudit.config import Settings
from infraudit.deliveries import DeliveryRow
from infraudit.store import orgs
from infraudit.store.models import Webhook

router = APIRouter(include_in_schema=False)

WEBHOOKS_PATH = f"{PAGE_PATH}/webhooks"
#: The fields of the webhook forms; an error naming another field (``org``, ``webhook_id``)
#: is shown above the form.
FORM_FIELDS = ("url", "description", "event_types")
#: Refusals a form shows beside its fields or above them.
FORM_REFUSALS = frozenset(
    {
        status.HTTP_409_CONFLICT,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        status.HTTP_429_TOO_MANY_REQUESTS,
    }
)
#: What a redirect's ``?notice=`` says on the page it lands on (a fixed list: the query string
#: never carries text of its own onto the page).
NOTICES = {
    "saved": "Changes saved.",
    "enabled": "Webhook enabled: it receives its events again.",
    "disabled": "Webhook disabled: it receives no events until you enable it again.",
    "deleted": "Webhook deleted.",
    "signed-out": "You are signed out.",
}
#: Seconds between polls while something shown is pending (history, detail, a test's outcome).
POLL_SECONDS = 2
#: Latest-delivery lookups the list runs at once (one visibility query each).
LATEST_AT_ONCE = 8
_DELIVERY_ID = re.compile(ids.DELIVERY_ID_PATTERN)


def _webhook_path(webhook_id: str) -> str:
    return f"{WEBHOOKS_PATH}/{quote(webhook_id, safe='')}"


def _see_other(path: str) -> RedirectResponse:
    """After a change: the browser GETs ``path``, so a reload shows it again, never re-sends."""
    return RedirectResponse(path, status.HTTP_303_SEE_OTHER)


def _catalog() -> list[tuple[str, str]]:
    """The event types a webhook may subscribe to, with what triggers each (the guide's
    table)."""
    return [(name, events.EVENT_TYPES[name]) for name in events.PUBLIC_TYPES]


def _form_values(form: FormData) -> dict[str, Any]:
    """The webhook form's fields as the request models take them (text, and a list of the
    checked event types); a field sent as a file is treated as absent."""

    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    return {
        "url": text("url").strip(),
        "description": text("description").strip(),
        "event_types": [v for v in form.getlist("event_types") if isinstance(v, str)],
    }


def _errors_of(err: ApiError | ValidationError) -> dict[str, str]:
    """What to show where: ``{field: message}``, ``""`` for the form as a whole. The message
    is the API's, less the ``field:`` prefix that the field's own place makes redundant."""
    found: Sequence[tuple[str | None, str]]
    if isinstance(err, ValidationError):
        found = [(p["field"].split(".")[0], p["message"]) for p in problems(err.errors())]
    else:
        found = [(err.field, err.message)]
    shown: dict[str, str] = {}
    for field, message in found:
        key = field if field in FORM_FIELDS else ""
        if field and message.startswith(f"{field}: "):
            message = message[len(field) + 2 :]
        shown.setdefault(key, message)
    return shown


def _form_status(err: ApiError | ValidationError) -> int:
    """The status of a form shown again with its errors: 422 for input that does not
    validate, the API's own for a refusal of the org's state (409 at the cap, 429 over the
    rate). Anything else (a 404) is not the form's to show: it propagates to the error page."""
    if isinstance(err, ValidationError):
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    if err.status_code in FORM_REFUSALS:
        return err.status_code
    raise err


async def _form_errors(
    err: ApiError | ValidationError, url: str | None, settings: Settings
) -> dict[str, str]:
    """Every problem of a refused form at once: when the body's own checks fail, the URL is
    checked too (the same check the API runs next), so one Save shows all there is to fix."""
    shown = _errors_of(err)
    if isinstance(err, ValidationError) and url is not None and "url" not in shown:
        try:
            await actions.check_url(url, settings)
        except ApiError as url_err:
            shown = {**_errors_of(url_err), **shown}
    return shown


def _context(signin: SignIn, **values: Any) -> dict[str, Any]:
    return {"signin": signin, **values}


# --- signing in and out -----------------------------------------------------------------------


@router.get("/")
@router.get(PAGE_PATH)
async def home() -> RedirectResponse:
    """The page's front door is the webhook list (the guide's Settings → Webhooks)."""
    return _see_other(WEBHOOKS_PATH)


@router.get(SIGN_IN_PATH)
async def sign_in_form(
    request: Request, keys: SignInKeysDep, settings: SettingsDep, notice: str | None = None
) -> Response:
    """The sign-in form; a browser already signed in goes on to the list."""
    if keys.read(request.cookies.get(COOKIE)) is not None:
        return _see_other(WEBHOOKS_PATH)
    return render(
        request, "sign_in.html", {"notice": NOTICES.get(notice or ""), "dev": settings.dev}
    )


@router.post(SIGN_IN_PATH)
async def sign_in(
    request: Request, session: SessionDep, keys: SignInKeysDep, settings: SettingsDep
) -> Response:
    """Check the API key as ``/v1`` does; the browser keeps a signed cookie, never the key."""
    check_same_origin(request)
    key = (await request.form()).get("api_key")
    org = await orgs.org_for_api_key(session, key.strip()) if isinstance(key, str) else None
    if org is None:
        error = "That is not a valid API key. Check it and try again."
        raise PageAnswer(
            render(
                request,
                "sign_in.html",
                {"error": error, "dev": settings.dev},
                status.HTTP_422_UNPROCESSABLE_CONTENT,
            )
        )
    response = _see_other(WEBHOOKS_PATH)
    response.set_cookie(
        COOKIE,
        keys.sign(org),
        path=PAGE_PATH,
        secure=secure_cookies(request, settings),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post(f"{PAGE_PATH}/sign-out")
async def sign_out(request: Request, signin: SignInDep, settings: SettingsDep) -> Response:
    """Forget the sign-in: the cookie is deleted."""
    response = _see_other(f"{SIGN_IN_PATH}?notice=signed-out")
    response.delete_cookie(
        COOKIE,
        path=PAGE_PATH,
        secure=secure_cookies(request, settings),
        httponly=True,
        samesite="strict",
    )
    return response


# --- the list and the add form ------------------------------------------------------------------


async def _latest(
    hooks: Sequence[WebhookOut], org: str, res: ResourcesDep
) -> tuple[dict[str, DeliveryRow | None], str | None]:
    """Each webhook's most recent delivery, and a problem to show when the log cannot be read
    (the list itself, from the database, still shows)."""
    gate = asyncio.Semaphore(LATEST_AT_ONCE)

    async def newest(webhook_id: str) -> DeliveryRow | None:
        async with gate:
            rows = await actions.list_deliveries(webhook_id, org=org, res=res, limit=1)
        return rows[0] if rows else None

    try:
        found = await asyncio.gather(*(newest(h.id) for h in hooks))
    except ApiError as err:
        return dict.fromkeys((h.id for h in hooks), None), err.message
    return dict(zip((h.id for h in hooks), found, strict=True)), None


@router.get(WEBHOOKS_PATH)
async def list_webhooks(
    request: Request,
    signin: SignInDep,
    session: SessionDep,
    res: ResourcesDep,
    notice: str | None = None,
) -> Response:
    """The org's endpoints with URL, description, event types, state and latest delivery."""
    hooks = await actions.list_webhooks(signin.org_id, session)
    latest, log_error = await _latest(hooks, signin.org_id, res)
    context = _context(
        signin, hooks=hooks, latest=latest, log_error=log_error, notice=NOTICES.get(notice or "")
    )
    return render(request, "webhooks.html", context)


def _new_form(
    request: Request,
    signin: SignIn,
    settings: Settings,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    context = _context(
        signin,
        values=values or {"url": "", "description": "", "event_types": []},
        errors=errors or {},
        catalog=_catalog(),
        dev=settings.dev,
    )
    return render(request, "webhook_new.html", context, status_code)


@router.get(f"{WEBHOOKS_PATH}/new")
async def new_webhook(request: Request, signin: SignInDep, settings: SettingsDep) -> Response:
    """The Add webhook form: URL, description, event types from the catalog."""
    return _new_form(request, signin, settings)


@router.post(WEBHOOKS_PATH)
async def create_webhook(
    request: Request,
    signin: SignInDep,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    keys: SignInKeysDep,
) -> Response:
    """Save a new webhook, then show its page with the secret, once.

    Refused input shows the form again with each reason next to its field and saves nothing.
    The secret travels to the page sealed in a cookie that page deletes (see ``signin``).
    """
    values = _form_values(await request.form())
    try:
        body = WebhookCreate.model_validate(values)
        created = await actions.create_webhook(
            body, org=signin.org_id, session=session, settings=settings, quotas=quotas
        )
    except (ValidationError, ApiError) as err:
        code = _form_status(err)
        errors = await _form_errors(err, values["url"], settings)
        raise PageAnswer(_new_form(request, signin, settings, values, errors, code)) from err
    response = _see_other(_webhook_path(created.id))
    response.set_cookie(
        SECRET_COOKIE,
        keys.seal_secret(created.secret, webhook_id=created.id, signin=signin),
        max_age=SECRET_COOKIE_SECONDS,
        path=_webhook_path(created.id),
        secure=secure_cookies(request, settings),
        httponly=True,
        samesite="strict",
    )
    return response


# --- one webhook -------------------------------------------------------------------------------


async def page_webhook(webhook_id: str, signin: SignInDep, session: SessionDep) -> Webhook:
    """The ``{webhook_id}`` of the path if it is the signed-in org's; else the 404 page."""
    return await load_webhook(session, signin.org_id, webhook_id)


PageWebhookDep = Annotated[Webhook, Depends(page_webhook)]


async def _history(
    webhook_id: str, org: str, res: ResourcesDep, awaiting: str | None = None
) -> dict[str, Any]:
    """The history's rows, and whether the page should poll it: while a row is pending, or a
    delivery just started (``awaiting``) is not listed yet (the log lags about a second)."""
    try:
        rows = await actions.list_deliveries(webhook_id, org=org, res=res)
    except ApiError as err:
        return {"rows": [], "log_error": err.message, "polling": True, "awaiting": awaiting}
    if awaiting is not None and not _DELIVERY_ID.fullmatch(awaiting):
        awaiting = None
    if awaiting is not None and any(r.delivery_id == awaiting for r in rows):
        awaiting = None
    polling = awaiting is not None or any(r.status == "pending" for r in rows)
    return {"rows": rows, "log_error": None, "polling": polling, "awaiting": awaiting}


def _temporal_link(settings: Settings, delivery_id: str) -> str:
    """The delivery's workflow in the Temporal Web UI (its id is the workflow id; the UI opens
    the latest run of an id)."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{settings.temporal_ui_url}/namespaces/{namespace}/workflows/{quote(delivery_id)}"


async def _webhook_page(
    request: Request,
    hook: Webhook,
    signin: SignIn,
    res: ResourcesDep,
    *,
    secret: str | None = None,
    notice: str | None = None,
    test: str | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    shown = WebhookOut.model_validate(hook)
    test_result = None
    if test is not None and _DELIVERY_ID.fullmatch(test):
        test_result = await _test_outcome(hook, test, signin.org_id, res)
    context = _context(
        signin,
        hook=shown,
        secret=secret,
        notice=NOTICES.get(notice or ""),
        test_result=test_result,
        history=await _history(hook.id, signin.org_id, res, awaiting=test),
        values=values or shown.model_dump(),
        errors=errors or {},
        catalog=_catalog(),
        dev=res.settings.dev,
        poll_seconds=POLL_SECONDS,
    )
    return render(request, "webhook.html", context, status_code)


@router.get(f"{WEBHOOKS_PATH}/{{webhook_id}}")
async def read_webhook(
    request: Request,
    hook: PageWebhookDep,
    signin: SignInDep,
    res: ResourcesDep,
    keys: SignInKeysDep,
    notice: str | None = None,
    test: str | None = None,
) -> Response:
    """A webhook's page: its settings, actions and delivery history; right after it was
    added, its signing secret, this one time."""
    sealed = request.cookies.get(SECRET_COOKIE)
    secret = keys.open_secret(sealed, webhook_id=hook.id, signin=signin)
    response = await _webhook_page(
        request, hook, signin, res, secret=secret, notice=notice, test=test
    )
    if sealed is not None:
        response.delete_cookie(
            SECRET_COOKIE,
            path=_webhook_path(hook.id),
            secure=secure_cookies(request, res.settings),
            httponly=True,
            samesite="strict",
        )
    return response


@router.post(f"{WEBHOOKS_PATH}/{{webhook_id}}")
async def update_webhook(
    request: Request,
    webhook_id: str,
    signin: SignInDep,
    session: SessionDep,
    res: ResourcesDep,
    quotas: QuotasDep,
) -> Response:
    """Save the edit form: only the fields that changed are sent on, as a ``PATCH`` would."""
    values = _form_values(await request.form())
    current = WebhookOut.model_validate(await load_webhook(session, signin.org_id, webhook_id))
    changes: dict[str, Any] = {
        name: values[name]
        for name in FORM_FIELDS
        if (sorted(set(values[name])) if name == "event_types" else values[name])
        != getattr(current, name)
    }
    try:
        await actions.update_webhook(
            webhook_id,
            WebhookUpdate.model_validate(changes),
            org=signin.org_id,
            session=session,
            settings=res.settings,
            quotas=quotas,
        )
    except (ValidationError, ApiError) as err:
        code = _form_status(err)
        errors = await _form_errors(err, changes.get("url"), res.settings)
        hook = await load_webhook(session, signin.org_id, webhook_id)
        page = await _webhook_page(
            request, hook, signin, res, values=values, errors=errors, status_code=code
        )
        raise PageAnswer(page) from err
    return _see_other(f"{_webhook_path(webhook_id)}?notice=saved")


async def _set_enabled(
    webhook_id: str,
    enabled: bool,
    signin: SignIn,
    session: SessionDep,
    settings: Settings,
    quotas: QuotasDep,
) -> Response:
    await actions.update_webhook(
        webhook_id,
        WebhookUpdate(enabled=enabled),
        org=signin.org_id,
        session=session,
        settings=settings,
        quotas=quotas,
    )
    notice = "enabled" if enabled else "disabled"
    return _see_other(f"{_webhook_path(webhook_id)}?notice={notice}")


@router.post(f"{WEBHOOKS_PATH}/{{webhook_id}}/enable")
async def enable_webhook(
    webhook_id: str,
    signin: SignInDep,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
) -> Response:
    """Enable: the endpoint receives its events again."""
    return await _set_enabled(webhook_id, True, signin, session, settings, quotas)


@router.post(f"{WEBHOOKS_PATH}/{{webhook_id}}/disable")
async def disable_webhook(
    webhook_id: str,
    signin: SignInDep,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
) -> Response:
    """Disable: no new deliveries; those still retrying end at their next attempt."""
    return await _set_enabled(webhook_id, False, signin, session, settings, quotas)


@router.get(f"{WEBHOOKS_PATH}/{{webhook_id}}/delete")
async def confirm_delete(request: Request, hook: PageWebhookDep, signin: SignInDep) -> Response:
    """Ask before deleting: what goes, what stays."""
    context = _context(signin, hook=WebhookOut.model_validate(hook))
    return render(request, "webhook_delete.html", context)


@router.post(f"{WEBHOOKS_PATH}/{{webhook_id}}/delete")
async def delete_webhook(
    webhook_id: str, signin: SignInDep, session: SessionDep, quotas: QuotasDep
) -> Response:
    """Delete, once confirmed, and go back to the list."""
    await actions.delete_webhook(webhook_id, org=signin.org_id, session=session, quotas=quotas)
    return _see_other(f"{WEBHOOKS_PATH}?notice=deleted")


# --- test events and the delivery log -----------------------------------------------------------


async def _test_outcome(
    hook: Webhook, delivery_id: str, org: str, res: ResourcesDep
) -> dict[str, Any]:
    """What the test-event box shows: the delivery as far as it got, or why it cannot say."""
    try:
        detail = await actions.get_delivery(hook.id, delivery_id, org=org, res=res)
    except ApiError as err:
        return {"delivery_id": delivery_id, "detail": None, "error": err.message}
    return {"delivery_id": delivery_id, "detail": detail, "error": None}


@router.post(f"{WEBHOOKS_PATH}/{{webhook_id}}/test")
async def send_test(
    request: Request, hook: PageWebhookDep, signin: SignInDep, res: ResourcesDep
) -> Response:
    """Send Test event: the same ``webhook.ping`` as ``infraudit webhook test``.

    From htmx: the outcome box (which then follows the delivery) and the history, told to
    expect it. Without script: back to the webhook's page, which shows the same box.
    """
    try:
        delivery_id = (await actions.send_test(hook, org=signin.org_id, res=res)).delivery_id
    except ApiError as err:
        if not is_htmx(request):
            raise
        refused = {"delivery_id": None, "detail": None, "error": err.message}
        return render(request, "partials/test_result.html", _context(signin, hook=hook, **refused))
    if not is_htmx(request):
        return _see_other(f"{_webhook_path(hook.id)}?test={delivery_id}")
    context = _context(
        signin,
        hook=hook,
        history=await _history(hook.id, signin.org_id, res, awaiting=delivery_id),
        poll_seconds=POLL_SECONDS,
        **await _test_outcome(hook, delivery_id, signin.org_id, res),
    )
    return render(request, "partials/test_sent.html", context)


@router.get(f"{WEBHOOKS_PATH}/{{webhook_id}}/test/{{delivery_id}}")
async def read_test(
    request: Request, hook: PageWebhookDep, delivery_id: str, signin: SignInDep, res: ResourcesDep
) -> Response:
    """The outcome box of a test event, polled by htmx until the delivery ends."""
    outcome = await _test_outcome(hook, delivery_id, signin.org_id, res)
    context = _context(signin, hook=hook, poll_seconds=POLL_SECONDS, **outcome)
    return render(request, "partials/test_result.html", context)


@router.get(f"{WEBHOOKS_PATH}/{{webhook_id}}/history")
async def read_history(
    request: Request,
    hook: PageWebhookDep,
    signin: SignInDep,
    res: ResourcesDep,
    awaiting: str | None = None,
) -> Response:
    """The delivery history alone, polled by htmx while something in it is pending."""
    if not is_htmx(request):
        return _see_other(_webhook_path(hook.id))
    history = await _history(hook.id, signin.org_id, res, awaiting=awaiting)
    context = _context(signin, hook=hook, history=history, poll_seconds=POLL_SECONDS)
    return render(request, "partials/history.html", context)


@router.get(f"{WEBHOOKS_PATH}/{{webhook_id}}/deliveries/{{delivery_id}}")
async def read_delivery(
    request: Request,
    hook: PageWebhookDep,
    delivery_id: str,
    signin: SignInDep,
    res: ResourcesDep,
) -> Response:
    """One delivery: payload, every attempt, the next one's time while pending, and its
    workflow in the Temporal UI. Polled by htmx (the detail alone) while pending."""
    detail = await actions.get_delivery(hook.id, delivery_id, org=signin.org_id, res=res)
    context = _context(
        signin,
        hook=WebhookOut.model_validate(hook),
        delivery=detail,
        temporal_link=_temporal_link(res.settings, detail.delivery_id),
        poll_seconds=POLL_SECONDS,
    )
    template = "partials/delivery.html" if is_htmx(request) else "delivery.html"
    return render(request, template, context)
