"""A Temporal dev server of a test's own, as ``infraudit up`` runs it, on the ports its settings
name: for tests that hang it (SIGSTOP), stop it or start it late without touching the session's
server (``tests/conftest.py``'s ``temporal_env``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from infraudit import temporal
from infraudit.cli.stack import temporal_command
from infraudit.config import Settings


class TemporalServer:
    """``temporal server start-dev`` as ``infraudit up`` runs it, in a folder of its own."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        """The server process (its database, in ``state_dir``, is kept across restarts)."""
        return subprocess.Popen(
            temporal_command(self.settings, self.state_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        """Start it and wait until it answers."""
        self.process = self.spawn()
        deadline = time.monotonic() + 60
        while True:
            try:
                await temporal.connect(self.settings, bounded=True)
                return
            except temporal.CONNECT_ERRORS:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Stop it for good (SIGTERM, then SIGKILL), resuming it first if it was paused."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Hang it: its sockets stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Wake it after :meth:`pause`; what it was sent meanwhile is answered now."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
