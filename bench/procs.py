"""Processes of a benchmark run: CPU time read from /proc, child processes, free ports.

The engine's cost lives in several processes (Temporal server, worker, the driver that starts
workflows, the receiver), so CPU is read per process from /proc rather than from the driver's
own clock: that is how the server's share and the worker's share can be told apart.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _family(pid: int, tree: bool) -> list[int]:
    """``pid`` and, when ``tree``, its live descendants."""
    pids = [pid]
    if tree:
        children = _children()
        stack = [pid]
        while stack:
            for child in children.get(stack.pop(), []):
                pids.append(child)
                stack.append(child)
    return pids


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User+system CPU seconds of ``pid`` and (by default) its live descendants.

    The Temporal CLI may run the server in a child process, so the whole tree is counted.
    """
    total = 0.0
    for one in _family(pid, tree):
        fields = _stat_fields(one)
        if fields is not None:
            # utime and stime are fields 14 and 15 of stat; index 11 and 12 after the name.
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def rss_bytes(pid: int, *, tree: bool = True) -> int:
    """Resident memory of ``pid`` (and by default its descendants) now, in bytes (``VmRSS``).

    Sampled while a row runs, its maximum is the row's peak RSS; ``VmHWM`` would be the peak
    since the process started, which for the long-lived dev server spans every earlier row.
    """
    total = 0
    for one in _family(pid, tree):
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes) since boot.

    Compared with the processes a row measures, it shows load from anything else running on
    the machine at the same time, which would make that row's numbers unreliable. Interrupt
    time is left out: it is mostly the kernel carrying our own loopback traffic.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + steal) / _TICKS


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn_python(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Run ``python -m module`` from the repo with stdout piped for its ready line."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )


def spawn_logged(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Run ``args`` from the repo with stdout and stderr appended to ``log``.

    For the engine's own processes (``infraudit api``, ``infraudit worker``): they log a line per
    failed attempt, which a pipe nobody reads would let pile up until the process blocks.
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            args, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def read_ready_line(proc: subprocess.Popen[str], *, skip_until: str | None = None) -> str:
    """The first stdout line of a helper process: it prints one when it is ready to serve.

    ``skip_until``: read past other lines (a banner) until this one.
    """
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args} exited before it was ready (code {proc.wait()})")
        if skip_until is None or line.strip() == skip_until:
            return line.strip()


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL the one process this run started."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
