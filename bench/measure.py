"""Measuring one scenario: drive submissions, wait for the receiver, read CPU, compute stats.

Every row of the table is measured the same way, so rows differ only in what is submitted:
requested-at stamps are taken by the driver, received-at stamps by the receiver process, and
CPU from /proc before the first submission and after the system has gone quiet again (a
workflow still completes after its POST arrives; that work belongs to the delivery too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from bench.procs import cpu_seconds, machine_busy_seconds


@dataclass(frozen=True)
class Item:
    """One submission: the delivery keys it leads to, and the coroutine that submits it."""

    keys: Sequence[str]
    submit: Callable[[], Awaitable[object]]


@dataclass
class Meter:
    """CPU seconds of the processes that matter, by role (server, worker, driver, receiver)."""

    pids: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        """CPU seconds used so far, by role, and by the whole machine (``machine``)."""
        used = {role: cpu_seconds(pid, tree=tree) for role, (pid, tree) in self.pids.items()}
        used["machine"] = machine_busy_seconds()
        return used

    async def idle_rate(self, roles: Sequence[str], seconds: float = 3.0) -> float:
        """CPU seconds per second that ``roles`` use while nothing is asked of them."""
        before = self.read()
        await asyncio.sleep(seconds)
        after = self.read()
        return sum(after[r] - before[r] for r in roles) / seconds

    async def settle(
        self, roles: Sequence[str], idle: float, interval: float = 0.5, limit: float = 30.0
    ) -> None:
        """Wait until ``roles`` are back to (about) their idle CPU rate."""
        quiet = max(0.04, 3 * idle)
        deadline = time.monotonic() + limit
        previous = self.read()
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            current = self.read()
            if sum(current[r] - previous[r] for r in roles) / interval < quiet:
                return
            previous = current


class ReceiverControl:
    """The driver's side of the receiver: its URL, its arrival count and its log."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._http = httpx.AsyncClient(base_url=self.base, timeout=30)

    async def count(self) -> int:
        """Requests received since the last log read."""
        return int((await self._http.get("/_count")).text)

    async def log(self) -> dict[str, float]:
        """Arrival time by delivery key since the last read; the receiver then forgets them."""
        text = (await self._http.get("/_log")).text
        arrivals: dict[str, float] = {}
        for line in text.splitlines():
            key, _, at = line.rpartition(" ")
            arrivals.setdefault(key, float(at))
        return arrivals

    async def wait_for(self, count: int, within: float) -> bool:
        """Whether ``count`` requests arrived within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.count() >= count:
                return True
            await asyncio.sleep(0.05)
        return False

    async def aclose(self) -> None:
        """Close the control connection."""
        await self._http.aclose()


@dataclass
class Result:
    """What one scenario measured."""

    deliveries: int
    received: int
    seconds: float
    latencies_ms: list[float]
    cpu: dict[str, float]
    #: Seconds until the last submission returned (workflow started, or POST answered).
    submitted_seconds: float = 0.0
    #: Seconds between the two CPU readings (first submission to quiet again).
    window_seconds: float = 1.0

    @property
    def throughput(self) -> float:
        """Deliveries received per second, first submission to last arrival."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile of start-to-received latency, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[index]

    def other_load(self) -> float:
        """Cores kept busy by processes this run did not start, while the row ran."""
        ours = sum(v for k, v in self.cpu.items() if k != "machine")
        return max(0.0, self.cpu.get("machine", 0.0) - ours) / self.window_seconds

    def busy_cores(self, roles: Sequence[str]) -> float:
        """Average cores that ``roles`` kept busy from first submission to last arrival."""
        return sum(self.cpu.get(r, 0.0) for r in roles) / self.seconds if self.seconds else 0.0

    def cpu_ms_per_delivery(self, role: str) -> float:
        """CPU milliseconds of ``role`` per received delivery."""
        return 1000 * self.cpu.get(role, 0.0) / max(self.received, 1)


async def run_items(
    items: Sequence[Item],
    *,
    receiver: ReceiverControl,
    meter: Meter,
    settle_roles: Sequence[str],
    idle: float,
    rate: float | None,
    concurrency: int,
    within: float = 240.0,
) -> Result:
    """Submit ``items`` (all at once, or ``rate`` per second) and measure until quiet again.

    In a burst every key counts as requested when the burst began, so its latency includes the
    wait in Temporal's queues: it shows how long the last of N waits, not a single delivery's
    latency. Paced rows show the latency of one delivery at that offered load.
    """
    await receiver.log()
    expected = sum(len(item.keys) for item in items)
    requested: dict[str, float] = {}
    gate = asyncio.Semaphore(concurrency)
    before = meter.read()
    started = time.time()

    async def one(index: int, item: Item) -> None:
        if rate is not None:
            await asyncio.sleep(max(0.0, started + index / rate - time.time()))
        stamp = time.time() if rate is not None else started
        for key in item.keys:
            requested[key] = stamp
        async with gate:
            await item.submit()

    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    submitted = time.time() - started
    complete = await receiver.wait_for(expected, within)
    await meter.settle(settle_roles, idle)
    after = meter.read()
    window = time.time() - started
    arrivals = {k: at for k, at in (await receiver.log()).items() if k in requested}
    if not complete:
        print(f"  warning: {len(arrivals)} of {expected} deliveries arrived in {within:.0f}s")
    last = max(arrivals.values(), default=started)
    return Result(
        deliveries=expected,
        received=len(arrivals),
        seconds=last - started,
        submitted_seconds=submitted,
        window_seconds=window,
        latencies_ms=[1000 * (at - requested[k]) for k, at in arrivals.items()],
        cpu={role: after[role] - before[role] for role in after},
    )
