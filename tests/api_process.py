"""The API as its own process (``infraudit api``, uvicorn), as operators run it.

For tests that kill it for real (SIGKILL right after it answered) and for the load test, which
samples its memory from /proc. Stopping and killing work as for the worker process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.cli_support import free_port
from tests.worker_process import WorkerProcess


class ApiProcess(WorkerProcess):
    """One ``python -m infraudit.cli api`` on ``INFRAUDIT_API_PORT`` of 127.0.0.1."""

    COMMAND = (sys.executable, "-m", "infraudit.cli", "api")

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.url = f"http://127.0.0.1:{env['INFRAUDIT_API_PORT']}"

    async def ready(self, within: float = 30.0) -> None:
        """Wait until ``/readyz`` answers 200: the store and Temporal both reachable."""
        deadline = asyncio.get_running_loop().time() + within
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"API exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"API not ready in {within}s:\n{self.log()}")
                await asyncio.sleep(0.1)


def api_env(worker_env: dict[str, str], port: int | None = None) -> dict[str, str]:
    """A worker's environment (``tests.worker_process.worker_env``) plus a port for the API."""
    port = port or free_port()
    return {
        **worker_env,
        "INFRAUDIT_API_HOST": "127.0.0.1",
        "INFRAUDIT_API_PORT": str(port),
        "INFRAUDIT_API_URL": f"http://127.0.0.1:{port}",
    }


@contextmanager
def api_process(env: dict[str, str], log_path: Path) -> Iterator[ApiProcess]:
    """A running API process for the block; stopped (or killed) at its end."""
    api = ApiProcess(env, log_path)
    try:
        yield api
    finally:
        api.stop()
