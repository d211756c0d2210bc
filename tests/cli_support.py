"""Running the ``infraudit`` command for real: one-shot commands and the ``up`` stack.

Everything runs as a subprocess of the installed console script, so the tests cover the entry
point, the settings read from the environment and the exit codes exactly as a user meets them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from infraudit.cli.binaries import binary

#: How long `infraudit up` may take to print its announcement on a busy 2-core machine.
START_WITHIN = 120.0
_KEY_LINE = re.compile(r"Dev API key:\s+(\S+)")


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any ``INFRAUDIT_*`` of the developer's, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAUDIT_")}
    env.update(settings)
    return env


@dataclass(frozen=True)
class StackPorts:
    """Free ports for one `up` stack, so parallel test processes never collide."""

    temporal: int
    ui: int
    api: int

    @classmethod
    def pick(cls) -> StackPorts:
        """Three distinct free ports."""
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        temporal, ui, api = sorted(ports)
        return cls(temporal=temporal, ui=ui, api=api)

    @property
    def api_url(self) -> str:
        """Where the stack's API listens."""
        return f"http://127.0.0.1:{self.api}"

    def all(self) -> tuple[int, int, int]:
        """Every port the stack listens on."""
        return (self.temporal, self.ui, self.api)


def stack_env(ports: StackPorts) -> dict[str, str]:
    """Settings for a test stack: its ports and a retry schedule that ends within seconds."""
    return clean_env(
        INFRAUDIT_TEMPORAL_ADDRESS=f"127.0.0.1:{ports.temporal}",
        INFRAUDIT_TEMPORAL_UI_PORT=str(ports.ui),
        INFRAUDIT_API_PORT=str(ports.api),
        INFRAUDIT_API_URL=ports.api_url,
        INFRAUDIT_RETRY_INITIAL_INTERVAL="0.5",
        INFRAUDIT_RETRY_BACKOFF_COEFFICIENT="2",
        INFRAUDIT_DELIVERY_WINDOW="60",
        INFRAUDIT_HTTP_TIMEOUT="2",
    )


def run_cli(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """``infraudit <args>`` to completion, output captured as text."""
    return subprocess.run(
        [binary("infraudit"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc (Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def is_alive(pid: int) -> bool:
    """Whether a process with this pid still exists (zombies of other parents included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class UpProcess:
    """``infraudit up`` in a working folder; its output goes to files so it can never block."""

    def __init__(self, cwd: Path, env: dict[str, str], name: str = "up") -> None:
        self.cwd = cwd
        self.stdout_path = cwd / f"{name}.stdout"
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [binary("infraudit"), "up"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def __enter__(self) -> UpProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Never leave a stack behind, even when the test failed half-way."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def stdout(self) -> str:
        """What `up` printed on stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        """What `up` and its children printed on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, within: float = START_WITHIN) -> str:
        """Wait for the announcement; returns the dev API key it prints."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if "Press Ctrl-C to stop." in self.stdout:
                found = _KEY_LINE.search(self.stdout)
                assert found, f"no dev key in the announcement:\n{self.stdout}"
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(
                    f"`infraudit up` exited with {self.process.returncode}:\n"
                    f"{self.stdout}\n{self.stderr[-4000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"`infraudit up` not ready in {within}s:\n{self.stderr[-4000:]}")

    def stop(self, signum: int = signal.SIGINT, within: float = 20.0) -> int:
        """Send ``signum`` and return the exit code, which must come within ``within`` s."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`infraudit up` still running {within}s after {signum!r}:\n{self.stderr[-4000:]}"
            ) from None
