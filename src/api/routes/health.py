"""``/healthz`` and ``/readyz``: liveness and readiness probes, without an API key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from infraudit import temporal
from infraudit.api.deps import ResourcesDep
from infraudit.api.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer."}},
)
async def readyz(res: ResourcesDep) -> JSONResponse:
    """The database and Temporal both answer; 503 naming the one that does not.

    Both are asked at once and each may take ``temporal_rpc_timeout`` seconds, so a hung
    dependency makes the probe fail in that time instead of hanging it.
    """

    async def database() -> None:
        async with res.db.session() as s:
            await s.execute(text("SELECT 1"))

    async def temporal_frontend() -> None:
        await temporal.check_health(await res.temporal_client(), res.settings)

    async def check(probe: Callable[[], Awaitable[None]]) -> str:
        try:
            async with asyncio.timeout(res.settings.temporal_rpc_timeout):
                await probe()
        except Exception as err:  # refused, timed out, any driver or RPC error: not ready
            return f"unavailable: {type(err).__name__}"
        return "ok"

    database_state, temporal_state = await asyncio.gather(check(database), check(temporal_frontend))
    checks = {"database": database_state, "temporal": temporal_state}
    ready = all(v == "ok" for v in checks.values())
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, code)
