"""The engine's worker as its own process (``python worker.py``), as operators run it.

For tests that need what an in-process worker cannot give: its real log output at INFO (the
logging setup of ``main()``), and a worker that dies with SIGKILL in the middle of a POST.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from temporalio.client import Client

from infraudit.store.secret_box import KEYS_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
#: The line ``run_worker`` logs once it polls: the worker is ready for tasks.
READY = "worker polling"


class WorkerProcess:
    """One ``python worker.py`` whose stdout and stderr go to ``log_path``."""

    #: The command line; ``tests/api_process.py`` runs the API the same way.
    COMMAND: tuple[str, ...] = (sys.executable, str(ROOT / "worker.py"))

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.COMMAND,
                cwd=log_path.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    async def ready(self, within: float = 30.0) -> None:
        """Wait until the worker polls its task queue (its startup logs that)."""
        deadline = asyncio.get_running_loop().time() + within
        while READY not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"worker not ready in {within}s:\n{self.log()}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish or report anything."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after its graceful shutdown (attempts
        under way may take the 10 s HTTP timeout plus grace)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_env(client: Client, *, database_url: str, task_queue: str) -> dict[str, str]:
    """This process's environment pointed at the test server, store and a task queue.

    The test session's signing-secret keys (``INFRAUDIT_SECRET_KEYS``) come along with the rest.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("INFRAUDIT_") or key == KEYS_VARIABLE
    }
    env.update(
        INFRAUDIT_TEMPORAL_ADDRESS=client.service_client.config.target_host,
        INFRAUDIT_TEMPORAL_NAMESPACE=client.namespace,
        INFRAUDIT_DATABASE_URL=database_url,
        INFRAUDIT_TASK_QUEUE=task_queue,
        INFRAUDIT_DEV="true",  # the tests' receivers are plain HTTP on 127.0.0.1
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[WorkerProcess]:
    """A running worker process for the block; stopped (or killed) at its end."""
    worker = WorkerProcess(env, log_path)
    try:
        yield worker
    finally:
        worker.stop()
