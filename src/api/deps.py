"""Request dependencies: settings, a database session, the Temporal client, the caller's org."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from infraudit import temporal
from infraudit.api.errors import ApiError
from infraudit.config import Settings
from infraudit.store import orgs
from infraudit.store.db import Database


@dataclass
class Resources:
    """What the app shares across requests; made in the lifespan."""

    settings: Settings
    db: Database
    client: Client | None = None
    _connecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def temporal_client(self) -> Client:
        """The Temporal client, connecting on first use so the API starts before Temporal."""
        if self.client is None:
            async with self._connecting:
                if self.client is None:
                    self.client = await temporal.connect(self.settings)
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


async def temporal_client(res: Resources) -> Client:
    """The Temporal client; 503 while Temporal is unreachable.

    Routes call this after their own checks, so a bad id is a 404 even while Temporal is down.
    """
    try:
        return await res.temporal_client()
    except RuntimeError as err:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, f"Temporal unreachable: {err}") from err


SettingsDep = Annotated[Settings, Depends(settings)]
SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


async def org_id(request: Request, s: SessionDep) -> str:
    """The org of the ``Authorization: Bearer`` API key; 401 without a valid one."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            field="Authorization",
            headers=unauthorized,
        )
    found = await orgs.org_for_api_key(s, key.strip())
    if found is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "invalid API key",
            field="Authorization",
            headers=unauthorized,
        )
    return found


OrgDep = Annotated[str, Depends(org_id)]
