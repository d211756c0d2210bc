"""The engine's own processes, as an operator runs them: ``infraudit worker`` and ``infraudit api``.

Rows D, E and F measure these real commands (not a worker assembled by the bench), so whatever
the engine's worker or API is configured to do is what gets measured. Their settings come from
``INFRAUDIT_*`` variables (:func:`engine_env`); their output goes to log files in the run's
state folder.

A worker is ready when the Temporal server lists it (its identity is ``<pid>@<host>``) as a
poller of both the workflow and the activity task queue: a poller from an earlier worker may
still be listed for minutes, so the pid is what is matched.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench import procs
from bench.bare import RETRY_BACKOFF, RETRY_INITIAL_SECONDS

#: The engine's command line, as ``infraudit up`` runs its children.
CLI = [sys.executable, "-m", "infraudit.cli"]
#: Per-org publish rate and burst for the bench's API: far above any rate the bench offers, so
#: the API's rate limit (10 events/s by default) never refuses the load being measured.
UNLIMITED_EVENTS = "1000000"


def engine_env(
    *,
    address: str,
    database_url: str,
    secret_keys: str,
    task_queue: str,
    api_port: int,
) -> dict[str, str]:
    """``INFRAUDIT_*`` settings shared by the bench's API and worker processes.

    The retry policy's first wait is :data:`bench.bare.RETRY_INITIAL_SECONDS` (the engine's
    default is 5 minutes) so that the failure mix ends within the run; everything else is the
    engine's default.
    """
    return {
        "INFRAUDIT_TEMPORAL_ADDRESS": address,
        "INFRAUDIT_DATABASE_URL": database_url,
        "INFRAUDIT_SECRET_KEYS": secret_keys,
        "INFRAUDIT_TASK_QUEUE": task_queue,
        "INFRAUDIT_RETRY_INITIAL_INTERVAL": str(RETRY_INITIAL_SECONDS),
        "INFRAUDIT_RETRY_BACKOFF_COEFFICIENT": str(RETRY_BACKOFF),
        "INFRAUDIT_DEV": "1",
        "INFRAUDIT_API_HOST": "127.0.0.1",
        "INFRAUDIT_API_PORT": str(api_port),
        "INFRAUDIT_EVENTS_PER_SECOND": UNLIMITED_EVENTS,
        "INFRAUDIT_EVENT_BURST": UNLIMITED_EVENTS,
    }


def _tail(log: Path, lines: int = 20) -> str:
    """The end of a process's log, for an error message (the run's folder is removed after)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _polling(client: Client, task_queue: str, pid: int) -> bool:
    """Whether the process ``pid`` polls ``task_queue`` for workflow and activity tasks."""
    for kind in (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    ):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=kind,
            )
        )
        if not any(p.identity.startswith(f"{pid}@") for p in described.pollers):
            return False
    return True


async def start_worker(
    client: Client, env: dict[str, str], log: Path, within: float = 60.0
) -> subprocess.Popen[bytes]:
    """``infraudit worker``, returned once the server lists it as a poller."""
    proc = procs.spawn_logged([*CLI, "worker"], log, env)
    deadline = time.monotonic() + within
    while not await _polling(client, env["INFRAUDIT_TASK_QUEUE"], proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            procs.stop(proc)
            raise RuntimeError(f"infraudit worker did not start polling:\n{_tail(log)}")
        await asyncio.sleep(0.2)
    return proc


async def start_api(
    env: dict[str, str], log: Path, within: float = 60.0
) -> subprocess.Popen[bytes]:
    """``infraudit api``, returned once ``/healthz`` answers 200."""
    proc = procs.spawn_logged([*CLI, "api"], log, env)
    url = f"http://127.0.0.1:{env['INFRAUDIT_API_PORT']}/healthz"
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(url)).status_code == httpx.codes.OK:
                    return proc
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                procs.stop(proc)
                raise RuntimeError(f"infraudit api did not answer /healthz:\n{_tail(log)}")
            await asyncio.sleep(0.2)
