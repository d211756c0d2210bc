"""Running the API for real: uvicorn on a free port of 127.0.0.1, in the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from temporalio.client import Client

from infraudit.api.app import create_app
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from tests.cli_support import free_port


@asynccontextmanager
async def running_api(settings: Settings, client: Client | None) -> AsyncIterator[str]:
    """Serve the app over real HTTP for the block; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Caller:
    """An HTTP client of the API, authenticated as one org."""

    http: httpx.AsyncClient
    org_id: str
    key: str


@asynccontextmanager
async def caller(base_url: str, database_url: str, org_id: str) -> AsyncIterator[Caller]:
    """An authenticated client for a new key of ``org_id``."""
    key = await create_api_key(database_url, org_id)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        yield Caller(http, org_id, key)
