"""Request dependencies: settings, a database session, the Temporal client, rate limits, the org
and its webhook, as ``Annotated`` aliases (``SessionDep``, ``OrgDep``, ``WebhookDep``) that routes
declare by type, as in the FastAPI full-stack template's ``api/deps.py``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from infraudit import temporal
from infraudit.api.errors import ApiError, unavailable
from infraudit.api.quotas import Quotas
from infraudit.config import Settings
from infraudit.contract import WEBHOOK_ID_PATTERN
from infraudit.store import orgs, webhooks
from infraudit.store.db import Database
from infraudit.store.models import Webhook

if TYPE_CHECKING:
    from infraudit.api.signin import SignInKeys

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """What the app shares across requests; made in the lifespan."""

    settings: Settings
    db: Database
    quotas: Quotas
    signin_keys: SignInKeys
    client: Client | None = None
    _connecting: asyncio.Task[Client] | None = field(default=None, repr=False)

    async def temporal_client(self) -> Client:
        """The Temporal client, connecting on first use so the API starts before Temporal.

        Bounded (see :func:`infraudit.temporal.connect`), and requests arriving meanwhile share
        the one attempt under way rather than queue for their own, so none waits more than about
        ``temporal_rpc_timeout`` seconds; the next request after a failed attempt tries again.
        Raises one of ``temporal.CONNECT_ERRORS`` while Temporal cannot be reached.
        """
        if self.client is None:
            if self._connecting is None or self._connecting.done():
                self._connecting = asyncio.create_task(
                    temporal.connect(self.settings, bounded=True)
                )
            # Shielded: a caller that hangs up does not cancel the attempt the others await.
            self.client = await asyncio.shield(self._connecting)
        return self.client


def resources(request: Request) -> Resources:
    """The app's shared resources."""
    return request.app.state.resources  # type: ignore[no-any-return]


ResourcesDep = Annotated[Resources, Depends(resources)]


def settings(res: ResourcesDep) -> Settings:
    """The API process's settings."""
    return res.settings


async def session(res: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the route returns without error.

    Used with ``scope="function"``: the commit happens before the response is sent, so a
    client never sees a success for a write that is not yet (or never) committed.
    """
    async with res.db.session() as s, s.begin():
        yield s


def quotas(res: ResourcesDep) -> Quotas:
    """The API process's rate limits and caps."""
    return res.quotas


@asynccontextmanager
async def temporal_calls(res: Resources, unfinished: str) -> AsyncIterator[Client]:
    """The Temporal client for a route's calls; Temporal down, hung or busy answers 503.

    Connecting or any call in the block failing for an outage (``temporal.is_outage``) ends the
    request with a 503 whose message is ``unfinished``: what became of the request and what is
    safe to do next, which only the route knows. The server's address and the RPC error stay in
    the log. Routes enter the block after their own checks, so a bad id is a 404 even while
    Temporal is down.
    """
    try:
        client = await res.temporal_client()
    except temporal.CONNECT_ERRORS as err:
        log.warning("Temporal unreachable: %s", str(err) or type(err).__name__)
        raise unavailable(f"Temporal is unreachable: {unfinished}") from err
    try:
        yield client
    except RPCError as err:
        if not temporal.is_outage(err):
            raise
        log.warning("Temporal did not answer: %s", str(err) or type(err).__name__)
        raise unavailable(f"Temporal did not answer: {unfinished}") from err


SettingsDep = Annotated[Settings, Depends(settings)]
QuotasDep = Annotated[Quotas, Depends(quotas)]
SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


#: The API key scheme, declared in the OpenAPI document on every route that depends on
#: ``org_id``. ``auto_error=False``: a missing or non-Bearer header reaches ``org_id`` as None, so
#: the 401 has our error shape rather than FastAPI's ``{"detail": ...}``.
api_key = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="iak_...",
    description="An org's API key, made by `infraudit api-key create --org ORG`.",
    auto_error=False,
)

ApiKeyDep = Annotated[HTTPAuthorizationCredentials | None, Security(api_key)]


async def org_id(credentials: ApiKeyDep, s: SessionDep) -> str:
    """The org of the ``Authorization: Bearer`` API key; 401 without a valid one."""
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key> (an org API key, iak_…)",
            field="Authorization",
            headers=unauthorized,
        )
    found = await orgs.org_for_api_key(s, credentials.credentials)
    if found is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "invalid API key",
            field="Authorization",
            headers=unauthorized,
        )
    return found


OrgDep = Annotated[str, Depends(org_id)]


async def load_webhook(session: AsyncSession, org: str, webhook_id: str) -> Webhook:
    """The org's endpoint or a 404 naming ``webhook_id``; another org's endpoint is a 404 too,
    so ids of other orgs cannot be told from ids that do not exist.

    The one lookup of a webhook by id, for ``WebhookDep`` and for the routes (and the Settings
    page) that must take a rate-limit token before looking (:mod:`infraudit.api.actions`).
    """
    # An id of another form names no webhook: it is not looked up (PostgreSQL refuses some
    # text, such as NUL, that SQLite would search for) nor repeated back at any length.
    well_formed = re.fullmatch(WEBHOOK_ID_PATTERN, webhook_id) is not None
    hook = await webhooks.get_webhook(session, org, webhook_id) if well_formed else None
    if hook is None:
        shown = webhook_id if well_formed else "with that id"
        raise ApiError(status.HTTP_404_NOT_FOUND, f"webhook {shown} not found", field="webhook_id")
    return hook


async def webhook(webhook_id: str, org: OrgDep, session: SessionDep) -> Webhook:
    """The ``{webhook_id}`` of the path, if it is the caller's org's; else 404."""
    return await load_webhook(session, org, webhook_id)


WebhookDep = Annotated[Webhook, Depends(webhook)]
