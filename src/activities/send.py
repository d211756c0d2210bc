"""The HTTP POST activity: load the endpoint, sign, POST, record the attempt.

Temporal's history keeps one set of events per activity however many attempts it took, so each
attempt carries the record of the earlier ones: it heartbeats the list before it fails, and the
next attempt starts from ``activity.info().heartbeat_details``. The final result (or the final
failure's details) holds every attempt.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from infraudit import __version__, signing
from infraudit.contract import Attempt, SendRequest
from infraudit.store import webhooks
from infraudit.store.db import Database

USER_AGENT = f"InfraAudit-Webhooks/{__version__}"

#: ApplicationError types the workflow tells apart.
ATTEMPT_FAILED = "AttemptFailed"
ENDPOINT_GONE = "EndpointGone"


def new_http_client() -> httpx.AsyncClient:
    """The one client a worker process shares: pooled keep-alive connections, no redirects."""
    return httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_connections=500, max_keepalive_connections=100),
    )


def attempts_from_details(details: Any) -> list[Attempt]:
    """Attempts carried in heartbeat or failure details (a list of attempt mappings)."""
    if not details:
        return []
    records = details[0] if isinstance(details, list | tuple) else details
    return [Attempt.model_validate(r) for r in records or []]


def describe_failure(attempt: Attempt) -> str:
    """One line on why an attempt failed, for the workflow's failure message."""
    if attempt.error:
        return attempt.error
    return f"HTTP {attempt.response_status}"


class SendActivities:
    """The POST activity with what it shares across calls: store and HTTP client."""

    def __init__(
        self, db: Database, http: httpx.AsyncClient, *, response_body_limit: int = 16 * 1024
    ) -> None:
        self._db = db
        self._http = http
        self._body_limit = response_body_limit

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> list[Attempt]:
        """One attempt at one delivery; raises so Temporal retries when it did not land."""
        info = activity.info()
        earlier = attempts_from_details(info.heartbeat_details)
        async with self._db.session() as session:
            target = await webhooks.load_signing_target(session, request.webhook_id)
        if target is None or not target.enabled:
            state = "deleted" if target is None else "disabled"
            raise ApplicationError(
                f"endpoint {request.webhook_id} was {state}; no further attempts",
                [a.model_dump(mode="json") for a in earlier],
                type=ENDPOINT_GONE,
                non_retryable=True,
            )
        attempt = await self._post(request, target.url, target.secret, info.attempt)
        attempts = [*earlier, attempt]
        if attempt.succeeded:
            return attempts
        records = [a.model_dump(mode="json") for a in attempts]
        activity.heartbeat(records)
        raise ApplicationError(describe_failure(attempt), records, type=ATTEMPT_FAILED)

    async def _post(self, request: SendRequest, url: str, secret: str, number: int) -> Attempt:
        """POST the body once within the timeout; never raises for the receiver's behaviour."""
        body = request.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.SIGNATURE_HEADER: signing.sign(body, secret),
            signing.EVENT_HEADER: request.event,
            signing.DELIVERY_HEADER: request.delivery_id,
            signing.WEBHOOK_HEADER: request.webhook_id,
        }
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        status: int | None = None
        response_body: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(request.timeout_seconds):
                async with self._http.stream("POST", url, content=body, headers=headers) as resp:
                    status = resp.status_code
                    response_body = await self._read_capped(resp)
        except TimeoutError:
            error = f"timed out after {request.timeout_seconds:g}s"
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        return Attempt(
            attempt=number,
            started_at=started_at,
            duration_ms=round((time.perf_counter() - clock) * 1000),
            response_status=status,
            response_body=response_body,
            error=error,
        )

    async def _read_capped(self, response: httpx.Response) -> str:
        """At most ``response_body_limit`` bytes of the body, reading no further than that."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            room = self._body_limit - size
            if room <= 0:
                break
            chunks.append(chunk[:room])
            size += min(len(chunk), room)
        return b"".join(chunks).decode("utf-8", errors="replace")
