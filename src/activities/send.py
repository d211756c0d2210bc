"""The HTTP POST activity: load the endpoint, record the attempt, sign, POST, record its outcome.

Temporal's history keeps one set of events per activity however many attempts it took, so each
attempt carries the record of the earlier ones in its heartbeat details: the next attempt starts
from ``activity.info().heartbeat_details`` and the final result (or the final failure's details)
holds every attempt.

Every POST that may have reached the receiver is in that record (issue 6, kind 9): an attempt
heartbeats itself *in flight* and waits for the server to store it before it sends, and
:func:`settle_attempts` turns an in-flight record whose attempt is over, or a missing attempt
number, into "worker lost during the attempt" (a worker killed mid-POST).

The outcome of an attempt is the status the receiver answered (kind 2): what goes wrong after
the status line (a reset mid-body, a body that stalls, bad chunked framing) is a ``note`` on the
attempt and never turns a 2xx into a retry. Error texts name the kind of failure, are never
empty and never carry the URL (which may hold credentials or tokens).

A host the SSRF guard refuses (:mod:`infraudit.egress`: no public address to connect to) ends
the delivery at once: the attempt says ``refused: …``, nothing was sent, and no later attempt
would be let through, so none is made.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from infraudit import __version__, egress, logs, signing, urls
from infraudit.contract import Attempt, SendRequest
from infraudit.store import webhooks
from infraudit.store.db import Database
from infraudit.store.secret_box import UnreadableSecret

USER_AGENT = f"InfraAudit-Webhooks/{__version__}"

#: ApplicationError types the workflow tells apart.
ATTEMPT_FAILED = "AttemptFailed"
ENDPOINT_GONE = "EndpointGone"
TARGET_REFUSED = "TargetRefused"
NOT_OWNED = "WebhookNotOwned"

#: ``error`` of an attempt that started (it may have reached the receiver) but never reported.
LOST = "worker lost during the attempt"
#: ``note`` of the attempt a reader sees still running.
IN_PROGRESS = "in progress"

#: Longest library detail quoted in an error text (h11 quotes the receiver's bytes).
_DETAIL_LIMIT = 200


#: Seconds an idle keep-alive connection to a receiver is kept for the next POST (httpx: 5 s).
KEEPALIVE_EXPIRY_SECONDS = 1.0


def new_http_client(
    guard: egress.Guard, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The one client a worker process shares: pooled keep-alive connections, no redirects,
    every connection made by ``guard`` (:mod:`infraudit.egress`: the SSRF policy, applied to
    the address actually connected to).

    No timeout of its own: httpx's default (5 s for connect, read, write and pool wait each)
    would sit under the 10 s the guide promises, so every request passes its own (the send
    activity: ``SendRequest.timeout_seconds`` for every phase, inside one overall deadline).
    No cap on connections either: the worker's activity slots already bound how many POSTs run
    at once, and a cap below that makes POSTs wait for a slow receiver's connection to free up.
    ``trust_env=False``: proxy variables, ``.netrc`` and ``SSL_CERT_FILE`` of the worker's
    environment must not change where a customer's event goes, add credentials to it or change
    which certificates are trusted. ``verify``: certificates are checked against certifi's CA
    bundle and the URL's host name; only a test passes a context trusting its own CA.
    ``keepalive_expiry``: an idle pooled connection is dropped after
    :data:`KEEPALIVE_EXPIRY_SECONDS`, before common servers close it themselves (gunicorn after
    2 s): a POST written into a connection the receiver is closing fails without reaching it.
    """
    limits = httpx.Limits(
        max_connections=None,
        max_keepalive_connections=100,
        keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
    )
    return httpx.AsyncClient(
        transport=egress.GuardedTransport(guard, verify=verify, limits=limits),
        follow_redirects=False,
        trust_env=False,
        timeout=None,
    )


def attempts_from_details(details: Any) -> list[Attempt]:
    """Attempts carried in heartbeat or failure details (a list of attempt mappings)."""
    if not details:
        return []
    records = details[0] if isinstance(details, list | tuple) else details
    return [Attempt.model_validate(r) for r in records or []]


def settle_attempts(
    attempts: Iterable[Attempt], *, through: int = 0, running: int | None = None
) -> list[Attempt]:
    """Every attempt from 1 on, in order, with the ones whose worker was lost said so.

    ``through`` is the highest attempt number known to have started (from Temporal: the
    activity's attempt counter); ``running`` the number of an attempt still under way, if any.
    An in-flight record of an attempt that is over, and any number up to ``through`` without a
    record, may have reached the receiver without telling us how it went: both read
    :data:`LOST`. The running attempt's record reads :data:`IN_PROGRESS`; before it has one,
    it has not sent anything and is left out.
    """
    by_number = {a.attempt: a for a in attempts}
    last = max([through, *by_number])
    settled: list[Attempt] = []
    for number in range(1, last + 1):
        record = by_number.get(number)
        if number == running:
            if record is not None:
                settled.append(record.model_copy(update={"note": IN_PROGRESS}))
        elif record is None:
            settled.append(Attempt(attempt=number, error=LOST))
        elif record.in_flight:
            settled.append(record.model_copy(update={"error": LOST}))
        else:
            settled.append(record)
    return settled


def describe_failure(attempt: Attempt) -> str:
    """One line on why an attempt failed, for the workflow's failure message."""
    if attempt.error:
        return attempt.error
    return f"HTTP {attempt.response_status}"


#: Socket errors in the receiver's terms; others keep the system's text (``os.strerror``).
_SOCKET_ERRORS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the receiver",
    errno.EPIPE: "connection closed by the receiver",
}


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what caused it, outermost first (httpx → httpcore → anyio → OSError)."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _os_reason(err: BaseException) -> str | None:
    """The operating system's or TLS layer's words for what broke, from the exception chain.

    The outer messages are often empty (httpx.ReadError after a reset) or vague ("All
    connection attempts failed"). Errnos become their standard text, so the addresses in the
    socket layer's own message stay out; resolver errors (negative errnos) keep theirs.
    """
    for seen in _chain(err):
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return seen.reason or type(seen).__name__
        if isinstance(seen, OSError) and seen.errno:
            if seen.errno < 0:
                return seen.strerror or f"resolver error {seen.errno}"
            return _SOCKET_ERRORS.get(seen.errno) or os.strerror(seen.errno)
    return None


def _detail(err: BaseException) -> str:
    """The library's own message, shortened: used only for kinds whose messages carry no URL."""
    text = str(err).strip()
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 3] + "..."
    return text


def http_error_text(err: BaseException, *, answered: bool) -> str:
    """A clear, non-empty text for an exception from the POST, prefixed by its kind.

    ``answered`` tells whether the receiver's status line had already arrived: then the text
    says the trouble was in the response body. Texts are built from our words plus the socket
    or protocol detail, never from ``str(err)`` of kinds whose message can hold the URL.
    """
    kind = type(err).__name__
    reason = _os_reason(err)
    phase = "while reading the response body" if answered else "before it answered"
    if isinstance(err, httpx.ConnectError):
        if any(isinstance(seen, ssl.SSLError) for seen in _chain(err)):
            return f"{kind}: the TLS handshake with the receiver failed ({reason})"
        return f"{kind}: could not connect to the receiver ({reason or 'no reason given'})"
    if isinstance(err, httpx.ReadError):
        return f"{kind}: {reason or 'the connection broke'} {phase}"
    if isinstance(err, httpx.WriteError):
        return f"{kind}: {reason or 'the connection broke'} while sending the request"
    if isinstance(err, httpx.RemoteProtocolError):
        if not answered and "without sending a response" in str(err):
            return f"{kind}: the receiver closed the connection without answering"
        what = "the response body is cut short or badly framed" if answered else "bad answer"
        return f"{kind}: {what} ({_detail(err) or 'no detail'})"
    if isinstance(err, httpx.LocalProtocolError):
        return f"{kind}: the request could not be sent ({_detail(err) or 'no detail'})"
    if isinstance(err, httpx.DecodingError):
        return f"{kind}: the response body could not be decoded ({_detail(err) or 'no detail'})"
    if isinstance(err, httpx.UnsupportedProtocol):
        return f"{kind}: the endpoint URL's scheme is not http or https"
    if isinstance(err, httpx.InvalidURL):
        return f"{kind}: the endpoint URL is not valid"
    if isinstance(err, httpx.ProxyError):
        return f"{kind}: the proxy refused the request ({_detail(err) or 'no detail'})"
    if isinstance(err, httpx.TimeoutException):
        return f"{kind}: timed out {phase}"
    if isinstance(err, httpx.HTTPError):
        return f"{kind}: the HTTP request failed {phase}"
    return f"{kind}: unexpected error in the HTTP client {phase}"


class SendActivities:
    """The POST activity with what it shares across calls: store and HTTP client."""

    def __init__(self, db: Database, http: httpx.AsyncClient, *, response_body_limit: int) -> None:
        self._db = db
        self._http = http
        self._body_limit = response_body_limit

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> list[Attempt]:
        """One attempt at one delivery; raises so Temporal retries when it did not land.

        Its number is ``request.first_attempt`` plus Temporal's attempt count of this activity;
        the records of the attempts before it come from the heartbeat details, or for its
        first attempt from ``request.earlier``.
        """
        info = activity.info()
        number = request.first_attempt + info.attempt - 1
        logs.bind(webhook_id=request.webhook_id, event=request.event, attempt=number)
        recorded = attempts_from_details(info.heartbeat_details) or request.earlier
        earlier = settle_attempts(recorded, through=number - 1)
        if earlier and earlier[-1].error == LOST:
            activity.logger.info(
                "attempt %d to webhook %s: %s", earlier[-1].attempt, request.webhook_id, LOST
            )
        try:
            async with self._db.session() as session:
                target = await webhooks.load_signing_target(session, request.webhook_id)
        except UnreadableSecret as err:
            # No key of this worker opens the stored secret: nothing is sent, the attempt fails
            # saying why (never with the secret), and a later attempt can deliver once the keys
            # are fixed. An operator has to act, so it is one warning line of ours; the error
            # itself is BENIGN so the SDK adds no traceback (the cause is known and stated).
            failed = Attempt(
                attempt=number, started_at=datetime.now(UTC), duration_ms=0, error=str(err)
            )
            await _record([*earlier, failed])
            activity.logger.warning(
                "attempt %d to webhook %s not sent: %s", number, request.webhook_id, err
            )
            raise ApplicationError(
                str(err),
                _records([*earlier, failed]),
                type=ATTEMPT_FAILED,
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        except Exception as err:
            # The store is down or broken: nothing is sent. The attempt says so (by the error's
            # kind only: its text may hold connection details) instead of later reading as a
            # lost worker's. Not benign: an operator has to act; the traceback stays the cause.
            reason = f"not sent: the endpoint could not be loaded ({type(err).__name__})"
            failed = Attempt(
                attempt=number, started_at=datetime.now(UTC), duration_ms=0, error=reason
            )
            await _record([*earlier, failed])
            raise ApplicationError(
                reason, _records([*earlier, failed]), type=ATTEMPT_FAILED
            ) from err
        if target is not None and request.org_id is not None and target.org_id != request.org_id:
            # Started (directly, by another service) for an org that does not own the endpoint:
            # sending would hand one org's event to another org's endpoint, outside both orgs'
            # logs. Nothing is sent and no attempt is made; the owner is not named. Not benign:
            # the starter has a bug that someone has to fix.
            raise ApplicationError(
                f"webhook {request.webhook_id} does not belong to org {request.org_id}; "
                "nothing sent, no further attempts",
                _records(earlier),
                type=NOT_OWNED,
                non_retryable=True,
            )
        if target is None or not target.enabled or target.secret is None:
            state = "deleted" if target is None else "disabled"
            raise ApplicationError(
                f"endpoint {request.webhook_id} was {state}; no further attempts",
                _records(earlier),
                type=ENDPOINT_GONE,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        try:
            urls.parse(target.url)
        except urls.InvalidEndpointUrl as err:
            # A row stored before the URL rules existed (the API refuses such URLs now): no
            # attempt can use it, so the delivery ends at once saying why.
            raise ApplicationError(
                f"endpoint URL cannot be used: {err}; no further attempts",
                _records(earlier),
                type=ENDPOINT_GONE,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        started = Attempt(attempt=number, started_at=datetime.now(UTC))
        await _record([*earlier, started])
        clock = time.perf_counter()
        try:
            attempt = await self._post(request, target.url, target.secret, started)
        except egress.RefusedTarget as refused:
            # The SSRF policy refused every address of the host before anything was sent: no
            # later attempt would be let through either, so the delivery ends here, as an
            # outcome (benign), with no response since none was asked for.
            attempt = started.model_copy(
                update={
                    "duration_ms": round((time.perf_counter() - clock) * 1000),
                    "error": f"refused: {refused}; nothing was sent, and it is not retried",
                }
            )
            await _record([*earlier, attempt])
            activity.logger.info(
                "attempt %d to webhook %s at %s: %s",
                attempt.attempt,
                request.webhook_id,
                urls.redact(target.url),
                attempt.error,
            )
            raise ApplicationError(
                str(attempt.error),
                _records([*earlier, attempt]),
                type=TARGET_REFUSED,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        attempts = [*earlier, attempt]
        if attempt.succeeded:
            return attempts
        await _record(attempts)
        activity.logger.info(
            "attempt %d to webhook %s at %s failed: %s",
            attempt.attempt,
            request.webhook_id,
            urls.redact(target.url),
            describe_failure(attempt),
        )
        raise ApplicationError(
            describe_failure(attempt),
            _records(attempts),
            type=ATTEMPT_FAILED,
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _post(self, request: SendRequest, url: str, secret: str, started: Attempt) -> Attempt:
        """POST the body once within the timeout; never raises for the receiver's behaviour.

        ``timeout_seconds`` bounds the whole attempt (waiting for a pooled connection,
        connecting, sending, the answer and its body) and each of those phases, so no library
        default cuts in below it. The status is the outcome once it arrived; trouble after
        that is the attempt's ``note``.
        """
        body = request.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            # Uncompressed answers only: the body cap counts bytes as they arrive, and a small
            # compressed body could inflate without bound in the decoder first.
            "Accept-Encoding": "identity",
            signing.SIGNATURE_HEADER: signing.sign(body, secret),
            signing.EVENT_HEADER: request.event,
            signing.DELIVERY_HEADER: request.delivery_id,
            signing.WEBHOOK_HEADER: request.webhook_id,
        }
        limit = request.timeout_seconds
        clock = time.perf_counter()
        status: int | None = None
        received = bytearray()
        problem: str | None = None
        try:
            async with (
                asyncio.timeout(limit),
                self._http.stream(
                    "POST", url, content=body, headers=headers, timeout=httpx.Timeout(limit)
                ) as response,
            ):
                status = response.status_code
                await self._read_capped(response, received)
        except (TimeoutError, httpx.TimeoutException):
            phase = " while reading the response body" if status is not None else ""
            problem = f"timed out after {limit:g}s{phase}"
        except egress.RefusedTarget:
            raise  # not the receiver's behaviour: the caller ends the delivery
        except Exception as err:
            known = isinstance(err, httpx.HTTPError | httpx.InvalidURL)
            if not known:
                activity.logger.warning(
                    "unexpected %s from the HTTP client", type(err).__name__, exc_info=True
                )
            problem = http_error_text(err, answered=status is not None)
        answered = status is not None
        return started.model_copy(
            update={
                "duration_ms": round((time.perf_counter() - clock) * 1000),
                "response_status": status,
                "response_body": received.decode("utf-8", errors="replace") if answered else None,
                "error": None if answered else problem,
                "note": problem if answered else None,
            }
        )

    async def _read_capped(self, response: httpx.Response, into: bytearray) -> None:
        """Up to ``response_body_limit`` bytes of the body into ``into``, reading no further.

        Bytes go into the caller's buffer as they arrive, so a body cut short keeps its start.
        """
        async for chunk in response.aiter_bytes():
            into += chunk[: self._body_limit - len(into)]
            if len(into) >= self._body_limit:
                return


def _records(attempts: Iterable[Attempt]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in attempts]


async def _record(attempts: list[Attempt]) -> None:
    """Store ``attempts`` as this activity's heartbeat details, and wait until the server has.

    ``activity.heartbeat`` only queues a heartbeat for the SDK to send later, so a worker
    killed right after it would lose the record; this RPC returns once Temporal stored it. When
    it cannot be stored the error propagates and nothing is sent; that attempt then reads as
    lost, erring on the side of listing a POST that may have happened.

    A local activity (a delivery's first attempt) has no heartbeats: its record while it runs
    is the open workflow task itself, which ``DeliverWebhook`` reads as a lost attempt if its
    worker is lost (:mod:`infraudit.workflows.delivery`).
    """
    if activity.info().is_local:
        return
    handle = activity.client().get_async_activity_handle(task_token=activity.info().task_token)
    await handle.heartbeat(_records(attempts))
