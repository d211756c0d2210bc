"""Measuring one scenario: drive submissions, wait for the receiver, read CPU and memory.

Every row of the report is measured the same way, so rows differ only in what is submitted:
the driver fixes each submission's *scheduled* time, the receiver process stamps each
delivery's receipt, and CPU comes from /proc before the first submission and after the system
has gone quiet again (a workflow still completes after its POST arrives; that work belongs to
the delivery too). Peak RSS is sampled from /proc while the scenario runs.

Latency is always receipt minus scheduled time. In a drain every submission is scheduled at the
start, so the latency includes the wait behind the others. In an open-loop step submission ``i``
is scheduled at ``start + i / rate`` whether or not the driver managed to send it then, so a
driver (or a publisher API) that falls behind shows up in the latency instead of quietly
lowering the offered rate; the lag itself is recorded too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from bench.procs import cpu_seconds, machine_busy_seconds, rss_bytes

#: Seconds between two memory samples while a scenario runs.
RSS_INTERVAL = 0.5


@dataclass(frozen=True)
class Item:
    """One submission: how many deliveries it leads to, and the coroutine that submits it.

    ``submit`` returns the delivery keys (the ``X-InfraAudit-Delivery`` values the receiver will
    see); a submission that raises counts as refused and its deliveries as never expected.
    """

    count: int
    submit: Callable[[], Awaitable[Sequence[str]]]


@dataclass
class Meter:
    """CPU seconds and memory of the processes that matter, by role.

    Roles: ``server`` (Temporal dev server tree, or Redis for Celery), ``worker`` (every worker
    process of the row), ``api``, ``driver`` (this process), ``receiver``.
    """

    pids: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)

    def add(self, role: str, pid: int, *, tree: bool = False) -> None:
        """Count ``pid`` (and its descendants if ``tree``) under ``role`` from now on."""
        self.pids.setdefault(role, []).append((pid, tree))

    def remove(self, role: str, pid: int) -> None:
        """Stop counting ``pid`` under ``role``."""
        left = [entry for entry in self.pids.get(role, []) if entry[0] != pid]
        if left:
            self.pids[role] = left
        else:
            self.pids.pop(role, None)

    def read(self) -> dict[str, float]:
        """CPU seconds used so far, by role, and by the whole machine (``machine``)."""
        used = {
            role: sum(cpu_seconds(pid, tree=tree) for pid, tree in entries)
            for role, entries in self.pids.items()
        }
        used["machine"] = machine_busy_seconds()
        return used

    def rss(self) -> dict[str, int]:
        """Resident bytes by role now."""
        return {
            role: sum(rss_bytes(pid, tree=tree) for pid, tree in entries)
            for role, entries in self.pids.items()
        }

    @asynccontextmanager
    async def rss_peaks(self) -> AsyncIterator[dict[str, int]]:
        """A dict that holds, once the block ends, each role's peak RSS during the block."""
        peaks: dict[str, int] = {}

        def sample() -> None:
            for role, value in self.rss().items():
                peaks[role] = max(peaks.get(role, 0), value)

        async def sampler() -> None:
            while True:
                sample()
                await asyncio.sleep(RSS_INTERVAL)

        task = asyncio.create_task(sampler())
        try:
            yield peaks
        finally:
            task.cancel()
            sample()

    async def idle_rate(self, roles: Sequence[str], seconds: float = 3.0) -> float:
        """CPU seconds per second that ``roles`` use while nothing is asked of them."""
        before = self.read()
        await asyncio.sleep(seconds)
        after = self.read()
        return sum(after.get(r, 0.0) - before.get(r, 0.0) for r in roles) / seconds

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
            used = sum(current.get(r, 0.0) - previous.get(r, 0.0) for r in roles)
            if used / interval < quiet:
                return
            previous = current


@dataclass(frozen=True)
class Arrival:
    """One accepted delivery as the receiver saw it: when, and on which attempt."""

    at: float
    attempt: int


class ReceiverControl:
    """The driver's side of the receiver: its URL, its counts, its log and its failure mix."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._http = httpx.AsyncClient(base_url=self.base, timeout=30)

    async def count(self) -> int:
        """Deliveries accepted since the last log read."""
        return int((await self._http.get("/_count")).text)

    async def refused(self) -> int:
        """Attempts answered 500 since the mode was last set."""
        return int((await self._http.get("/_refused")).text)

    async def set_mode(self, *, fail: int = 0, slow: int = 0, slow_seconds: float = 0.0) -> None:
        """Switch the failure mix (percent of first attempts); all zero turns it off."""
        params = {"fail": fail, "slow": slow, "slow_seconds": slow_seconds}
        (await self._http.get("/_mode", params=params)).raise_for_status()

    async def log(self) -> dict[str, Arrival]:
        """Accepted deliveries by key since the last read; the receiver then forgets them."""
        text = (await self._http.get("/_log")).text
        arrivals: dict[str, Arrival] = {}
        for line in text.splitlines():
            key, at, attempt = line.rsplit(" ", 2)
            arrivals.setdefault(key, Arrival(float(at), int(attempt)))
        return arrivals

    async def wait_for(self, count: int, within: float) -> bool:
        """Whether ``count`` deliveries were accepted within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.count() >= count:
                return True
            await asyncio.sleep(0.1)
        return False

    async def aclose(self) -> None:
        """Close the control connection."""
        await self._http.aclose()


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values``; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class Result:
    """What one scenario measured."""

    #: Deliveries the accepted submissions lead to.
    deliveries: int
    #: Receipt minus scheduled time, in ms, by delivery key (received deliveries only).
    latency_ms: dict[str, float]
    #: Attempt number the receiver accepted, by delivery key.
    attempts: dict[str, int]
    #: First submission to last receipt, in seconds.
    seconds: float
    #: CPU seconds by role between the two readings (and ``machine`` for the whole box).
    cpu: dict[str, float]
    #: Peak resident bytes by role while the scenario ran.
    rss: dict[str, int] = field(default_factory=dict)
    #: How long each submission took to return (start, enqueue or API answer), in ms.
    accept_ms: list[float] = field(default_factory=list)
    #: How late each submission left against its scheduled time, in ms (open loop only).
    lag_ms: list[float] = field(default_factory=list)
    #: Submissions that raised (refused by the API, a failed start, ...).
    refused: int = 0
    #: First submission's error, if any, for the log line.
    first_error: str = ""
    #: Offered rate in deliveries per second (None for a drain).
    rate: float | None = None
    #: Seconds until the last submission returned.
    submitted_seconds: float = 0.0
    #: Seconds between the two CPU readings (first submission to quiet again).
    window_seconds: float = 1.0

    @property
    def received(self) -> int:
        """Deliveries the receiver accepted."""
        return len(self.latency_ms)

    @property
    def throughput(self) -> float:
        """Deliveries received per second, first submission to last receipt."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, fraction: float, keys: Iterable[str] | None = None) -> float | None:
        """Nearest-rank percentile of publish-to-receipt latency in ms (of ``keys`` if given)."""
        if keys is None:
            return percentile(self.latency_ms.values(), fraction)
        return percentile((self.latency_ms[k] for k in keys if k in self.latency_ms), fraction)

    def accept_percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the time a submission took to return, in ms."""
        return percentile(self.accept_ms, fraction)

    def other_load(self) -> float:
        """Cores kept busy by processes this run did not start, while the scenario ran."""
        ours = sum(v for k, v in self.cpu.items() if k != "machine")
        return max(0.0, self.cpu.get("machine", 0.0) - ours) / self.window_seconds

    def busy_cores(self, roles: Iterable[str]) -> float:
        """Average cores ``roles`` kept busy from first submission to last receipt."""
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
    linger: float = 0.0,
) -> Result:
    """Submit ``items`` (a drain: all at once; open loop: ``rate`` per second) and measure.

    In a drain at most ``concurrency`` submissions are in flight; the open loop sends each at
    its scheduled time however many are still in flight, as independent publishers would.
    ``linger``: seconds to wait after the last receipt before waiting for quiet, for work that
    goes on without using CPU (a receiver taking seconds to answer a request it has read).
    """
    await receiver.log()
    requested: dict[str, float] = {}
    accept_ms: list[float] = []
    lag_ms: list[float] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency if rate is None else 1_000_000)

    async def one(index: int, item: Item, started: float) -> None:
        scheduled = started if rate is None else started + index / rate
        if rate is not None:
            await asyncio.sleep(max(0.0, scheduled - time.time()))
        async with gate:
            sent = time.time()
            if rate is not None:
                lag_ms.append(1000 * (sent - scheduled))
            try:
                keys = await item.submit()
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}"[:300])
                return
            accept_ms.append(1000 * (time.time() - sent))
        for key in keys:
            requested[key] = scheduled

    async with meter.rss_peaks() as peaks:
        before = meter.read()
        started = time.time()
        await asyncio.gather(*(one(i, item, started) for i, item in enumerate(items)))
        submitted = time.time() - started
        expected = len(requested)
        complete = await receiver.wait_for(expected, within)
        await asyncio.sleep(linger)
        await meter.settle(settle_roles, idle)
        after = meter.read()
        window = time.time() - started
    arrivals = {k: a for k, a in (await receiver.log()).items() if k in requested}
    if not complete:
        print(f"  warning: {len(arrivals)} of {expected} deliveries arrived in {within:.0f}s")
    if errors:
        print(f"  warning: {len(errors)} submissions refused, first: {errors[0]}")
    last = max((a.at for a in arrivals.values()), default=started)
    return Result(
        deliveries=expected,
        latency_ms={k: 1000 * (a.at - requested[k]) for k, a in arrivals.items()},
        attempts={k: a.attempt for k, a in arrivals.items()},
        seconds=last - started,
        cpu={role: after[role] - before.get(role, 0.0) for role in after},
        rss=dict(peaks),
        accept_ms=accept_ms,
        lag_ms=lag_ms,
        refused=len(errors),
        first_error=errors[0] if errors else "",
        rate=rate,
        submitted_seconds=submitted,
        window_seconds=window,
    )
