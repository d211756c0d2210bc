"""``/healthz`` and ``/readyz``: liveness and readiness probes, without an API key."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from infraudit import readiness, temporal
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
    dependency makes the probe fail in that time instead of hanging it
    (:func:`infraudit.readiness.check_all`, which the worker's ``/readyz`` uses too).
    """

    async def temporal_frontend() -> None:
        await temporal.check_health(await res.temporal_client(), res.settings)

    checks = await readiness.check_all(
        {"database": lambda: readiness.database_answers(res.db), "temporal": temporal_frontend},
        within=res.settings.temporal_rpc_timeout,
    )
    ready = readiness.all_ok(checks)
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, code)
