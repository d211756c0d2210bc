"""The bounded load test: ``make load`` (``python -m tests.load``), a few minutes on loopback.

The whole stack runs as in production, each part its own process: a file-backed Temporal dev
server (``infraudit up``'s command line), ``python worker.py`` and ``infraudit api`` (uvicorn),
with a SQLite store and sealed secrets, all in a temporary folder and on free ports. This
process is the customers: it publishes events through the API at a steady rate for three orgs
and receives the deliveries on four receivers that behave differently:

- ``steady`` answers 200 at once;
- ``flaky`` answers 503 to the first POST of one delivery in five;
- ``slow`` answers 200 after 2 s;
- ``timeout`` holds the first POST of one delivery in twenty until the worker's 10 s timeout.

Retries wait 5 s, then 10 s (``INFRAUDIT_RETRY_INITIAL_INTERVAL=5``), so retried deliveries
finish inside the run. Afterwards it checks what customers rely on and exits 1 if any fails:

- every expected delivery (each event to each subscribed endpoint) arrived, answered 2xx;
- a delivery id arrives more than once only when every earlier POST of it was refused or
  timed out (a retry explains it), never after a 2xx; nothing unexpected arrives;
- every POST is signed with its endpoint's secret and carries the same bytes as its repeats;
- Temporal agrees: every delivery workflow ended delivered, none failed or still running;
- the worker's and the API's resident memory (``VmRSS`` from /proc, sampled every 2 s) is flat:
  the median of the last tenth of the run is within 10% of the median of its second third.

It then writes its numbers into ``docs/reliability.md`` between the ``load:begin``/``load:end``
markers. Not part of ``make test``: it takes about five minutes of both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from infraudit import ids, signing, temporal
from infraudit.cli.commands import create_api_key
from infraudit.config import Settings
from infraudit.contract import DELIVER_WEBHOOK
from infraudit.store import migrate
from infraudit.store.secret_box import KEYS_VARIABLE, Keyring, new_key
from tests.api_process import ApiProcess, api_env
from tests.cli_support import free_port
from tests.ledger import Ledger, Reply, Rule, ledger
from tests.temporal_server import TemporalServer
from tests.worker_process import ROOT, WorkerProcess, worker_env

REPORT = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"

#: Seconds between RSS samples.
SAMPLE_EVERY = 2.0
#: Allowed growth of resident memory from the run's second third to its last tenth.
FLAT = 0.10
#: Event types published in turn; every endpoint takes the first, ``steady`` both.
EVENT_TYPES = ("drift.detected", "alert.created")


def one_in(delivery_id: str, n: int) -> bool:
    """Whether this delivery is among the one in ``n`` a receiver picks (stable per id)."""
    return int(hashlib.sha256(delivery_id.encode()).hexdigest(), 16) % n == 0


KINDS: dict[str, Rule] = {
    "steady": lambda _d, _n: Reply(),
    "flaky": lambda d, n: Reply(503) if n == 1 and one_in(d, 5) else Reply(),
    "slow": lambda _d, _n: Reply(delay=2.0),
    "timeout": lambda d, n: Reply(hold=True) if n == 1 and one_in(d, 20) else Reply(),
}


@dataclass
class Hook:
    """One registered endpoint: its org, kind, secret and event types."""

    webhook_id: str
    org_id: str
    kind: str
    secret: str
    event_types: tuple[str, ...]


@dataclass
class Run:
    """What the run did and saw."""

    minutes: float
    rate: float
    hooks: list[Hook] = field(default_factory=list)
    published: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # id: org, type, t
    api_retries: int = 0
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # role: (t, KiB)
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # role: CPU seconds, load and drain


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of ``pid``, or of the whole machine (all cores) when None.

    Set beside the processes of the stack, the machine's figure shows how much else ran.
    """
    if pid is None:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system = (int(f) for f in fields[:3])
        return (user + nice + system) / _TICKS
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def sample_rss(pids: dict[str, int], run: Run, started: float) -> None:
    """Append every role's RSS every :data:`SAMPLE_EVERY` seconds until cancelled."""
    while True:
        for role, pid in pids.items():
            kib = rss_kib(pid)
            if kib is not None:
                run.rss.setdefault(role, []).append((time.monotonic() - started, kib))
        await asyncio.sleep(SAMPLE_EVERY)


async def register(api_url: str, database_url: str, run: Run, receivers: dict[str, Ledger]) -> None:
    """Three orgs, each with one endpoint of every kind, registered through the API."""
    for n in range(3):
        org_id = f"load-{n}-{uuid.uuid4().hex[:6]}"
        key = await create_api_key(database_url, org_id)
        async with httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            for kind, receiver in receivers.items():
                types = EVENT_TYPES if kind == "steady" else EVENT_TYPES[:1]
                answer = await http.post(
                    "/v1/webhooks", json={"url": receiver.url, "event_types": list(types)}
                )
                answer.raise_for_status()
                body = answer.json()
                run.hooks.append(Hook(body["id"], org_id, kind, body["secret"], types))


async def publish(api_url: str, database_url: str, run: Run) -> None:
    """POST events at ``run.rate`` per second for ``run.minutes``, round robin over orgs and
    event types; a 503 or a broken connection is published again with the same id."""
    orgs = sorted({h.org_id for h in run.hooks})
    keys = {org: await create_api_key(database_url, org) for org in orgs}
    async with httpx.AsyncClient(
        base_url=api_url, timeout=60, limits=httpx.Limits(max_connections=None)
    ) as http:

        async def post(org: str, event: str, event_id: str) -> None:
            body = {"event": event, "id": event_id, "data": {"resource": f"sg-{event_id[-6:]}"}}
            for _ in range(10):
                try:
                    answer = await http.post(
                        "/v1/events", json=body, headers={"Authorization": f"Bearer {keys[org]}"}
                    )
                    if answer.status_code == 202:
                        return
                    if answer.status_code not in (429, 503):
                        raise RuntimeError(f"POST /v1/events: {answer.status_code} {answer.text}")
                except httpx.TransportError:
                    pass
                run.api_retries += 1
                await asyncio.sleep(1.0)
            raise RuntimeError(f"event {event_id} not accepted after 10 tries")

        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        n = 0
        while (now := time.monotonic()) - started < run.minutes * 60:
            org, event = orgs[n % len(orgs)], EVENT_TYPES[(n // len(orgs)) % len(EVENT_TYPES)]
            event_id = f"evt_load_{n:06d}_{uuid.uuid4().hex[:6]}"
            run.published[event_id] = (org, event, now)
            tasks.append(asyncio.create_task(post(org, event, event_id)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / run.rate - time.monotonic()))
        await asyncio.gather(*tasks)


def expected(run: Run) -> dict[str, tuple[Hook, float]]:
    """Delivery id → its endpoint and when its event was published."""
    wanted: dict[str, tuple[Hook, float]] = {}
    for event_id, (org, event, at) in run.published.items():
        for hook in run.hooks:
            if hook.org_id == org and event in hook.event_types:
                wanted[ids.delivery_id(event_id, hook.webhook_id)] = (hook, at)
    return wanted


def delivered(receivers: dict[str, Ledger], wanted: dict[str, tuple[Hook, float]]) -> int:
    """How many wanted deliveries got a 2xx answer so far."""
    return sum(1 for d, (hook, _) in wanted.items() if receivers[hook.kind].answered_2xx(d))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Verdict:
    """The checks' results, for the report and the exit code."""

    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def check(self, ok: bool, text: str) -> None:
        self.lines.append(f"- {'ok' if ok else '**FAILED**'}: {text}")
        self.failed |= not ok


async def verify(
    run: Run, receivers: dict[str, Ledger], client_settings: Settings
) -> tuple[Verdict, list[str]]:
    """Every check of the module docstring; the verdict and the table rows of numbers."""
    wanted = expected(run)
    verdict = Verdict()
    missing = [d for d, (hook, _) in wanted.items() if not receivers[hook.kind].answered_2xx(d)]
    verdict.check(not missing, f"{len(wanted)} deliveries expected, {len(missing)} missing")

    unexpected = 0
    repeats = explained = unexplained = 0
    bad_signatures = changed_bytes = 0
    secrets = {h.webhook_id: h.secret for h in run.hooks}
    for receiver in receivers.values():
        for delivery_id, posts in receiver.by_delivery().items():
            if delivery_id not in wanted:
                unexpected += len(posts)
                continue
            bad_signatures += sum(
                not signing.verify_signature(p.body, secrets[p.webhook_id], p.signature)
                for p in posts
            )
            changed_bytes += len({p.body for p in posts}) - 1
            repeats += len(posts) - 1
            for earlier in posts[:-1]:
                if earlier.status is None or not 200 <= earlier.status < 300:
                    explained += 1
                else:
                    unexplained += 1
    verdict.check(unexpected == 0, f"{unexpected} POSTs of deliveries nobody published")
    verdict.check(
        unexplained == 0,
        f"{repeats} repeated POSTs, {explained} after a refused or timed-out attempt, "
        f"{unexplained} after a 2xx",
    )
    verdict.check(bad_signatures == 0, f"{bad_signatures} POSTs with a bad signature")
    verdict.check(changed_bytes == 0, f"{changed_bytes} repeats whose bytes differed")

    client = await temporal.connect(client_settings)
    base = f"WorkflowType = '{DELIVER_WEBHOOK}'"
    counts = {
        status: (await client.count_workflows(f"{base} AND DeliveryStatus = '{status}'")).count
        for status in ("delivered", "failed", "pending")
    }
    verdict.check(
        counts == {"delivered": len(wanted), "failed": 0, "pending": 0},
        f"Temporal's delivery log: {counts['delivered']} delivered, {counts['failed']} failed, "
        f"{counts['pending']} pending",
    )

    rows: list[str] = []
    load = run.load_seconds
    for role in ("worker", "API", "Temporal"):
        samples = run.rss.get(role, [])
        middle = [kib for t, kib in samples if load / 3 <= t <= 2 * load / 3]
        last = [kib for t, kib in samples if 0.9 * load <= t <= load]
        if not middle or not last:
            verdict.check(False, f"{role}: too few memory samples")
            continue
        before, after = statistics.median(middle), statistics.median(last)
        growth = after / before - 1
        peak = max(kib for _, kib in samples)
        rows.append(
            f"| {role} RSS, MiB (second third → last tenth; peak) | "
            f"{before / 1024:.0f} → {after / 1024:.0f} ({growth:+.1%}); {peak / 1024:.0f} |"
        )
        if role != "Temporal":  # the dev server's caches are not ours to judge
            verdict.check(growth <= FLAT, f"{role} memory {growth:+.1%} over the run")

    latencies: dict[str, list[float]] = {}
    for delivery_id, (hook, published_at) in wanted.items():
        landed = [
            p.arrived
            for p in receivers[hook.kind].of(delivery_id)
            if p.status is not None and 200 <= p.status < 300
        ]
        if landed:
            latencies.setdefault(hook.kind, []).append(landed[0] - published_at)
    numbers = [
        f"| events published | {len(run.published)} ({run.rate:g}/s for {run.minutes:g} min) |",
        f"| deliveries expected / arrived with a 2xx | {len(wanted)} / "
        f"{len(wanted) - len(missing)} |",
        f"| repeated POSTs (all after a 503 or a timeout) | {repeats} |",
        f"| API answers other than 202, published again | {run.api_retries} |",
        f"| drain after the last event, s | {run.drain_seconds:.0f} |",
        "| CPU seconds while loading and draining: "
        + ", ".join(run.cpu)
        + " | "
        + " / ".join(f"{seconds:.1f}" for seconds in run.cpu.values())
        + f" (of {(os.cpu_count() or 1) * (run.load_seconds + run.drain_seconds):.0f} available)"
        + " |",
        f"| CPU seconds of other processes on the machine meanwhile | "
        f"{run.cpu['machine'] - sum(v for k, v in run.cpu.items() if k != 'machine'):.1f} |",
    ]
    for kind in KINDS:
        if values := latencies.get(kind):
            numbers.append(
                f"| event to the arrival of the POST answered 2xx, `{kind}`, s (p50 / p95 / max) | "
                f"{percentile(values, 0.5):.2f} / {percentile(values, 0.95):.2f} / "
                f"{max(values):.2f} |"
            )
    return verdict, numbers + rows


def render(verdict: Verdict, numbers: list[str]) -> str:
    """The report section that goes between the markers."""
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    return "\n".join(
        [
            BEGIN,
            f"Run of {time.strftime('%Y-%m-%d')} on this machine ({machine}):",
            "",
            "| measure | value |",
            "|---|---|",
            *numbers,
            "",
            *verdict.lines,
            END,
        ]
    )


def write_report(section: str, path: Path = REPORT) -> None:
    """Replace the section between the markers of ``path`` (or append it)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


async def main(minutes: float, rate: float, write: bool) -> int:
    """Run the stack, load it, drain, verify, report; the exit code."""
    run = Run(minutes=minutes, rate=rate)
    with tempfile.TemporaryDirectory(prefix="infraudit-load-") as folder:
        state = Path(folder)
        key = new_key()
        settings = Settings(
            database_url=f"sqlite:///{state / 'infraudit.db'}",
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_port=free_port(),
            task_queue="load",
            secret_keys=SecretStr(key),
        )
        os.environ[KEYS_VARIABLE] = key
        migrate.upgrade(settings.database_url, Keyring.from_settings(settings))
        server = TemporalServer(settings, state)
        await server.start()
        worker: WorkerProcess | None = None
        api: ApiProcess | None = None
        try:
            client = await temporal.connect(settings)
            env = worker_env(
                client, database_url=settings.database_url, task_queue=settings.task_queue
            )
            env.update(
                INFRAUDIT_RETRY_INITIAL_INTERVAL="5",
                INFRAUDIT_RETRY_BACKOFF_COEFFICIENT="2",
                INFRAUDIT_DELIVERY_WINDOW="300",
                INFRAUDIT_EVENTS_PER_SECOND="1000",
                INFRAUDIT_EVENT_BURST="1000",
            )
            worker = WorkerProcess(env, state / "worker.log")
            api = ApiProcess(api_env(env), state / "api.log")
            await worker.ready()
            await api.ready()
            async with (
                ledger(KINDS["steady"]) as steady,
                ledger(KINDS["flaky"]) as flaky,
                ledger(KINDS["slow"]) as slow,
                ledger(KINDS["timeout"]) as timeouts,
            ):
                receivers = {"steady": steady, "flaky": flaky, "slow": slow, "timeout": timeouts}
                await register(api.url, settings.database_url, run, receivers)
                pids = {"worker": worker.process.pid, "API": api.process.pid}
                assert server.process is not None
                pids["Temporal"] = server.process.pid
                roles: dict[str, int | None] = {**pids, "this driver": os.getpid(), "machine": None}
                cpu_before = {role: cpu_seconds(pid) for role, pid in roles.items()}
                started = time.monotonic()
                sampler = asyncio.create_task(sample_rss(pids, run, started))
                print(f"load: {minutes:g} min at {rate:g} events/s ...", flush=True)
                await publish(api.url, settings.database_url, run)
                run.load_seconds = time.monotonic() - started
                sampler.cancel()
                wanted = expected(run)
                drain_started = time.monotonic()
                while delivered(receivers, wanted) < len(wanted):
                    if time.monotonic() - drain_started > 300:
                        break
                    await asyncio.sleep(1.0)
                run.drain_seconds = time.monotonic() - drain_started
                run.cpu = {role: cpu_seconds(pid) - cpu_before[role] for role, pid in roles.items()}
                await asyncio.sleep(15)  # late repeats would show by now; visibility catches up
                verdict, numbers = await verify(run, receivers, settings)
                for role, process in (("worker", worker), ("API", api)):
                    verdict.check(process.process.poll() is None, f"the {role} is still running")
        finally:
            for process in (api, worker):
                if process is not None:
                    process.stop()
            server.stop()
    section = render(verdict, numbers)
    print(section)
    if write:
        write_report(section)
        print(f"wrote {REPORT}")
    return 1 if verdict.failed else 0


def cli(argv: list[str] | None = None) -> None:
    """``python -m tests.load [--minutes M] [--rate R] [--no-write]``."""
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="how long events are published")
    parser.add_argument("--rate", type=float, default=4.0, help="events per second")
    parser.add_argument(
        "--no-write", action="store_true", help="print the numbers, leave docs/reliability.md"
    )
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(main(args.minutes, args.rate, not args.no_write)))


if __name__ == "__main__":
    cli()
