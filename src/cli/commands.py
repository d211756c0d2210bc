"""The ``infraudit`` command: the HTTP API for people and scripts, and the processes to run.

Commands that manage webhooks talk to the registration API over HTTP with the org's API key, so
the CLI sees exactly what any other client sees and needs no database or Temporal access. The
process commands (``worker``, ``api``, ``db upgrade``, ``api-key create``, ``secrets``, ``up``) run
the engine itself. Settings come only from :mod:`infraudit.config` (``INFRAUDIT_*`` variables).

Exit codes: 0 success, 1 the API (or a process) reported a failure, 2 bad usage or configuration
(and, for ``webhook test``, a delivery still pending at the timeout).

Heavy modules (temporalio, SQLAlchemy, uvicorn) are imported inside the commands that use them,
so the HTTP commands start quickly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import httpx
import typer

from infraudit import event_data
from infraudit.cli.startup import configured_keyring, fail, load_settings, require_keyring
from infraudit.config import Settings, get_settings

if TYPE_CHECKING:
    from infraudit.store.secret_box import Keyring

app = typer.Typer(
    name="infraudit",
    help="InfraAudit webhooks: manage endpoints, publish events, run the engine.",
    no_args_is_help=True,
    add_completion=False,
    # Locals in a traceback would print the settings, API key included.
    pretty_exceptions_show_locals=False,
)
webhook_app = typer.Typer(
    help="Register, inspect and test webhook endpoints.", no_args_is_help=True
)
event_app = typer.Typer(help="Publish events to subscribed endpoints.", no_args_is_help=True)
db_app = typer.Typer(help="The registrations database.", no_args_is_help=True)
api_key_app = typer.Typer(help="Org API keys.", no_args_is_help=True)
secrets_app = typer.Typer(
    help="The keys that seal signing secrets at rest (INFRAUDIT_SECRET_KEYS).", no_args_is_help=True
)
app.add_typer(webhook_app, name="webhook")
app.add_typer(event_app, name="event")
app.add_typer(db_app, name="db")
app.add_typer(api_key_app, name="api-key")
app.add_typer(secrets_app, name="secrets")

#: How many seconds one API call may take before the CLI gives up on it.
HTTP_TIMEOUT = 30.0
#: Seconds between two looks at a test delivery.
POLL_INTERVAL = 0.5
#: Delivery states after which nothing changes any more.
FINAL_STATUSES = frozenset({"delivered", "failed"})

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]


# --- plumbing -------------------------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """The API's error message (``{"error": {"message"}}``), else the raw body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return response.text.strip() or response.reason_phrase


class Api:
    """A thin sync client of the registration API that turns failures into CLI exits."""

    def __init__(self, settings: Settings) -> None:
        if not settings.api_key:
            fail(
                "no API key: set INFRAUDIT_API_KEY (`infraudit up` prints a dev key; "
                "`infraudit api-key create --org ORG` makes one)",
                2,
            )
        self.base_url = settings.api_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {settings.api_key}"},
            timeout=HTTP_TIMEOUT,
        )

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request; an unreachable API exits 1 with the address it tried."""
        try:
            return self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as err:
            fail(f"cannot reach the API at {self.base_url}: {err or type(err).__name__}")

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One request whose 4xx/5xx exits 1 with the API's message; returns the JSON (or None)."""
        response = self.send(method, path, body=body, params=params)
        check(response)
        if response.status_code == httpx.codes.NO_CONTENT or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            fail(
                f"{self.base_url} answered HTTP {response.status_code} without JSON: "
                "is INFRAUDIT_API_URL the InfraAudit webhooks API?"
            )


def segment(value: str) -> str:
    """An id as one URL path segment, so a stray ``/`` or ``?`` cannot change the route."""
    return quote(value, safe="")


def check(response: httpx.Response) -> None:
    """Exit 1 with the API's own message when ``response`` is an error."""
    if response.is_error:
        fail(f"{error_message(response)} (HTTP {response.status_code})")


def print_json(value: Any) -> None:
    """JSON on stdout, indented for people, stable for ``jq``."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def cell(value: Any) -> str:
    """A table cell: empty for null, comma-joined lists, yes/no booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    return str(value).replace("\n", " ")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table; no colours or box characters, so it survives pipes and logs."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """``label: value`` lines, labels aligned."""
    width = max(len(label) for label, _ in pairs) + 1
    for label, value in pairs:
        typer.echo(f"{(label + ':').ljust(width)} {cell(value)}")


def print_webhook(hook: dict[str, Any]) -> None:
    """One endpoint as labelled fields."""
    print_fields(
        [
            ("ID", hook.get("id")),
            ("URL", hook.get("url")),
            ("Events", hook.get("event_types")),
            ("Description", hook.get("description")),
            ("Enabled", hook.get("enabled")),
            ("Created", hook.get("created_at")),
            ("Updated", hook.get("updated_at")),
        ]
    )


# --- webhook ---------------------------------------------------------------------------------


@webhook_app.command("create")
def webhook_create(
    url: Annotated[str, typer.Option("--url", help="HTTPS URL that receives the events.")],
    event: Annotated[
        list[str], typer.Option("--event", help="An event type to subscribe to (repeatable).")
    ],
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint; prints its id and its signing secret (shown this one time)."""
    body: dict[str, Any] = {"url": url, "event_types": event}
    if description is not None:
        body["description"] = description
    hook = Api(load_settings()).call("POST", "/v1/webhooks", body=body)
    if as_json:
        print_json(hook)
        return
    print_webhook(hook)
    typer.echo(f"Secret:      {hook.get('secret')}")
    typer.echo(
        "\nThe signing secret is shown only once: store it now. Verify each delivery's "
        "X-InfraAudit-Signature header with it."
    )


@webhook_app.command("list")
def webhook_list(as_json: JsonOption = False) -> None:
    """The org's endpoints."""
    listed = Api(load_settings()).call("GET", "/v1/webhooks")
    if as_json:
        print_json(listed)
        return
    hooks = listed.get("data", [])
    if not hooks:
        typer.echo("No webhooks yet: create one with `infraudit webhook create`.")
        return
    print_table(
        ["ID", "URL", "EVENTS", "ENABLED", "DESCRIPTION"],
        [
            [
                h.get("id"),
                h.get("url"),
                h.get("event_types"),
                h.get("enabled"),
                h.get("description"),
            ]
            for h in hooks
        ],
    )


@webhook_app.command("show")
def webhook_show(webhook_id: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """One endpoint."""
    hook = Api(load_settings()).call("GET", f"/v1/webhooks/{segment(webhook_id)}")
    if as_json:
        print_json(hook)
    else:
        print_webhook(hook)


@webhook_app.command("update")
def webhook_update(
    webhook_id: Annotated[str, typer.Argument()],
    url: Annotated[str | None, typer.Option("--url", help="New endpoint URL.")] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", help="Replace the subscriptions with these (repeatable)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Resume or pause deliveries.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change an endpoint; only the options given change."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if event:
        body["event_types"] = event
    if description is not None:
        body["description"] = description
    if enabled is not None:
        body["enabled"] = enabled
    if not body:
        fail("nothing to update: give --url, --event, --description, --enable or --disable", 2)
    hook = Api(load_settings()).call("PATCH", f"/v1/webhooks/{segment(webhook_id)}", body=body)
    if as_json:
        print_json(hook)
    else:
        print_webhook(hook)


@webhook_app.command("delete")
def webhook_delete(webhook_id: Annotated[str, typer.Argument()]) -> None:
    """Remove an endpoint; deliveries still retrying to it stop at their next attempt."""
    Api(load_settings()).call("DELETE", f"/v1/webhooks/{segment(webhook_id)}")
    typer.echo(f"Deleted {webhook_id}.")


def wait_for_delivery(
    api: Api, webhook_id: str, delivery_id: str, timeout: float
) -> dict[str, Any] | None:
    """Poll a delivery until it is final or ``timeout`` passes; None if it never became visible.

    The delivery log is Temporal visibility, which lags the start by about a second: a 404
    right after the ping was accepted means "not yet", so it is polled like a pending state.
    """
    deadline = time.monotonic() + timeout
    path = f"/v1/webhooks/{segment(webhook_id)}/deliveries/{segment(delivery_id)}"
    latest: dict[str, Any] | None = None
    while True:
        response = api.send("GET", path)
        if response.status_code != httpx.codes.NOT_FOUND:
            check(response)
            latest = response.json()
            if latest.get("status") in FINAL_STATUSES:
                return latest
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return latest
        time.sleep(min(POLL_INTERVAL, remaining))


def print_delivery(delivery: dict[str, Any]) -> None:
    """A delivery's outcome and every attempt."""
    print_fields(
        [
            ("Delivery", delivery.get("delivery_id")),
            ("Webhook", delivery.get("webhook_id")),
            ("Event", delivery.get("event")),
            ("Status", delivery.get("status")),
            ("Response status", delivery.get("response_status")),
            ("Attempts", delivery.get("attempt_count")),
            ("Next attempt", delivery.get("next_attempt_at")),
        ]
    )
    attempts = delivery.get("attempts") or []
    if attempts:
        typer.echo("")
        print_table(
            ["ATTEMPT", "RESPONSE", "DURATION_MS", "STARTED", "ERROR"],
            [
                [
                    a.get("attempt"),
                    a.get("response_status"),
                    a.get("duration_ms"),
                    a.get("started_at"),
                    a.get("error"),
                ]
                for a in attempts
            ],
        )


@webhook_app.command("test")
def webhook_test(
    webhook_id: Annotated[str, typer.Argument()],
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the outcome.")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Send a webhook.ping and wait for its outcome.

    Exits 0 when delivered, 1 when failed, 2 when still pending at the timeout (the delivery
    goes on retrying; `infraudit webhook deliveries` shows it later).
    """
    api = Api(load_settings())
    started = api.call("POST", f"/v1/webhooks/{segment(webhook_id)}/test")
    delivery_id = started["delivery_id"]
    if not as_json:
        typer.echo(f"Sent test delivery {delivery_id}; waiting up to {timeout:g}s...", err=True)
    delivery = wait_for_delivery(api, webhook_id, delivery_id, timeout)
    shown = delivery or {"delivery_id": delivery_id, "webhook_id": webhook_id, "status": "pending"}
    if as_json:
        print_json(shown)
    else:
        print_delivery(shown)
    status = shown.get("status")
    if status == "delivered":
        return
    if status == "failed":
        raise typer.Exit(1)
    if not as_json:
        typer.echo(
            f"Still {status} after {timeout:g}s; it keeps retrying. "
            f"See `infraudit webhook deliveries {webhook_id}`.",
            err=True,
        )
    raise typer.Exit(2)


@webhook_app.command("deliveries")
def webhook_deliveries(
    webhook_id: Annotated[str, typer.Argument()],
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=100, help="How many, newest first (at most the 100 the log shows)."
        ),
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """The endpoint's recent deliveries, newest first."""
    listed = Api(load_settings()).call(
        "GET", f"/v1/webhooks/{segment(webhook_id)}/deliveries", params={"limit": limit}
    )
    if as_json:
        print_json(listed)
        return
    rows = listed.get("data", [])
    if not rows:
        typer.echo("No deliveries yet.")
        return
    print_table(
        ["DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "RESPONSE", "TIMESTAMP"],
        [
            [
                r.get("delivery_id"),
                r.get("event"),
                r.get("status"),
                r.get("attempt_count"),
                r.get("response_status"),
                r.get("timestamp") or r.get("created_at"),
            ]
            for r in rows
        ],
    )


# --- event -----------------------------------------------------------------------------------


@event_app.command("publish")
def event_publish(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. drift.detected")],
    data: Annotated[str, typer.Option("--data", help="The event's data, a JSON object.")] = "{}",
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="Your event id; publishing it again delivers nothing twice."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish an event to every endpoint of the org subscribed to its type."""
    try:
        parsed = json.loads(data)
    except ValueError as err:
        fail(f"--data is not valid JSON: {err}", 2)
    if not isinstance(parsed, dict):
        fail("--data must be a JSON object", 2)
    try:
        event_data.check(parsed)
    except ValueError as err:
        fail(f"--data: {err}", 2)
    body: dict[str, Any] = {"event": event_type, "data": parsed}
    if event_id is not None:
        body["id"] = event_id
    published = Api(load_settings()).call("POST", "/v1/events", body=body)
    if as_json:
        print_json(published)
        return
    delivery_ids = published.get("delivery_ids", [])
    typer.echo(f"Published {published.get('event_id')} to {len(delivery_ids)} endpoint(s).")
    for delivery_id in delivery_ids:
        typer.echo(f"  {delivery_id}")


# --- processes -------------------------------------------------------------------------------


@app.command()
def worker() -> None:
    """Run the Temporal worker (both workflows, all activities) until stopped."""
    from infraudit.cli import processes

    processes.worker_main()


@app.command()
def api() -> None:
    """Serve the registration API with uvicorn on INFRAUDIT_API_HOST:INFRAUDIT_API_PORT."""
    from infraudit.cli import processes

    processes.api_main()


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 9000,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="INFRAUDIT_LISTEN_SECRET",
            help="The webhook's whsec_ secret, to check signatures (or INFRAUDIT_LISTEN_SECRET, "
            "which keeps it out of the process list).",
        ),
    ] = None,
    status: Annotated[
        int, typer.Option(min=100, max=599, help="Status to answer with (503 shows retries).")
    ] = 200,
    quiet: Annotated[bool, typer.Option(help="One line per delivery, no bodies.")] = False,
) -> None:
    """Receive webhooks locally: print each delivery and check its signature."""
    import uvicorn

    from infraudit.cli.listen import create_listener

    typer.echo(f"Listening on http://127.0.0.1:{port}/ (answering {status}); Ctrl-C stops.")
    listener = create_listener(secret=secret, status=status, echo=typer.echo, show_body=not quiet)
    uvicorn.run(listener, host="127.0.0.1", port=port, log_level="warning")


def upgrade_database(settings: Settings) -> None:
    """Migrate to the newest schema, sealing plain secrets with the configured keys.

    The keys are needed only when the store still holds plain secrets (schema 0001); without
    them that upgrade exits 2 with one line and changes nothing.
    """
    from infraudit.store import migrate
    from infraudit.store.secret_box import SecretKeyError

    try:
        migrate.upgrade(settings.database_url, configured_keyring(settings))
    except SecretKeyError as err:
        fail(str(err), 2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the newest migration (safe to run on every deploy).

    Plain signing secrets left by older releases are sealed with INFRAUDIT_SECRET_KEYS.
    """
    from infraudit.store.db import shown_url

    settings = load_settings()
    upgrade_database(settings)
    shown = shown_url(settings.database_url)
    typer.echo(f"{shown} is at the newest schema.")


async def create_api_key(database_url: str, org_id: str) -> str:
    """A new key for ``org_id`` (the org is created if new), committed before it is returned."""
    from infraudit.store import orgs
    from infraudit.store.db import Database

    db = Database(database_url)
    try:
        async with db.session() as session, session.begin():
            return await orgs.create_api_key(session, org_id)
    finally:
        await db.dispose()


@api_key_app.command("create")
def api_key_create(
    org: Annotated[str, typer.Option("--org", help="The org id (created if new).")],
) -> None:
    """Create an API key for an org. Only the key goes to stdout, so ``$(...)`` captures it.

    The key is stored hashed: this is the only time it is shown.
    """
    settings = load_settings()
    upgrade_database(settings)
    try:
        key = asyncio.run(create_api_key(settings.database_url, org))
    except ValueError as err:
        fail(str(err), 2)
    typer.echo(key)
    typer.echo(f"API key for org {org!r}; it is shown only this once.", err=True)


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key for INFRAUDIT_SECRET_KEYS (only the key, on stdout)."""
    from infraudit.store.secret_box import new_key

    typer.echo(new_key())


#: Rows re-sealed per transaction by ``secrets rotate`` (short transactions, bounded memory).
ROTATE_PAGE = 500


async def rotate_secrets(database_url: str, keyring: Keyring) -> tuple[int, list[str]]:
    """Re-seal every secret under the newest key, one committed page at a time.

    Returns how many were re-sealed and one line per secret that no key opens.
    """
    from infraudit.store import webhooks
    from infraudit.store.db import Database

    db = Database(database_url, keyring)
    resealed = 0
    problems: list[str] = []
    after: str | None = None
    try:
        while True:
            async with db.session() as session, session.begin():
                page = await webhooks.reseal_secrets(
                    session, after_webhook_id=after, limit=ROTATE_PAGE
                )
            resealed += page.resealed
            problems += page.unreadable
            if page.last_webhook_id is None:
                return resealed, problems
            after = page.last_webhook_id
    finally:
        await db.dispose()


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-seal every signing secret under the newest key (the first of INFRAUDIT_SECRET_KEYS).

    Safe while the API and workers run, provided they all hold every key listed here. When it
    reports no problem, the older keys can be dropped from INFRAUDIT_SECRET_KEYS everywhere.
    Exit 1 when some secret could not be opened (each is named on stderr; none is changed).
    """
    settings = load_settings()
    keyring = require_keyring(settings)
    resealed, problems = asyncio.run(rotate_secrets(settings.database_url, keyring))
    typer.echo(f"Re-sealed {resealed} signing secret(s) under key {keyring.current_id}.")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def up() -> None:
    """Run the whole local stack: Temporal with its Web UI, the worker and the API.

    State lives in ./.infraudit, so a restart keeps webhooks, deliveries and the dev API key.
    Ctrl-C stops everything.
    """
    from infraudit.cli import stack

    stack.prepare_environment()
    get_settings.cache_clear()
    raise typer.Exit(stack.up(load_settings()))
