"""One benchmark run: start everything, measure every row, return what the report needs.

Every row POSTs to the one receiver on 127.0.0.1, and each system gets the machine to itself:
a system's worker is stopped before the next one's starts. The order:

1. Temporal dev server, receiver, store; the idle server's CPU.
2. A bare Temporal, B no Temporal, C Celery + Redis: a drain, the open-loop ladder, and (A, C)
   the failure mix.
3. D, the engine started directly, on one real ``infraudit worker``: drain, then the first level
   of stored work (the drain's deliveries are most of it), then ladder and failure mix.
4. E, the engine through a real ``infraudit api``: drain, ladder, failure mix; F adds a second
   ``infraudit worker``: drain, ladder.
5. Stored work: the levels between the first and the last, the fan-out of one event to
   ``fanout`` endpoints through the API (which stores that many more deliveries), and the last
   level. Seeding stops at the run's time budget; the report says where it stopped and why.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError

from bench import celery_app, engine, procs
from bench.bare import RETRY_BACKOFF, RETRY_INITIAL_SECONDS
from bench.measure import Item, Meter, ReceiverControl, Result, percentile, run_items
from bench.receiver import bucket
from bench.signed import engine_http_client, envelope_body, signed_headers
from bench.systems import (
    add_endpoints,
    add_many_endpoints,
    connect,
    redis_cleanup,
    redis_info,
    start_temporal,
)
from infraudit import ids
from infraudit.client import deliver_once
from infraudit.config import Settings
from infraudit.contract import DELIVER_WEBHOOK
from infraudit.store import migrate, orgs, secret_box, webhooks
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring

EVENT = "drift.detected"
DATA: dict[str, object] = {"resource": "sg-0123456789abcdef0", "region": "eu-west-1", "drift": 3}
#: Submissions in flight at once in a drain (the fan-out activity's cap on concurrent starts).
START_CONCURRENCY = 64
#: Orgs of the run: the drains' and ladders' endpoints, the API rows', the seeded deliveries',
#: and the fan-out's.
BENCH_ORG = "bench"
API_ORG = "bench-api"
SEED_ORG = "bench-seed"
FANOUT_ORG = "bench-fanout"
SEED_HOOKS = 20
#: A ladder stops climbing after a step whose p99 passes this (ms), or that lost deliveries:
#: the system is saturated and higher rates would only grow a backlog.
SATURATED_MS = 5000.0
#: The failure mix: percent of first attempts answered 500, percent answered after a delay.
FAIL_SHARE = 20
SLOW_SHARE = 10
SLOW_SECONDS = 8.0
#: Deliveries whose history length is read, per row (the mean is reported).
HISTORY_SAMPLE = 20
#: Seeded deliveries started at a time.
SEED_BATCH = 500
#: Seconds kept back from the budget for the last level's measurements, stopping and writing.
BUDGET_RESERVE = 45.0


@dataclass(frozen=True)
class System:
    """One row of the comparison: its letter, name, what a delivery is, and its processes."""

    letter: str
    name: str
    how: str
    #: Processes whose CPU is the system's cost (``driver`` is the publisher, this process).
    roles: tuple[str, ...]


SYSTEMS = {
    s.letter: s
    for s in (
        System(
            "A",
            "A bare Temporal",
            "1 workflow + 1 regular activity, plain POST",
            ("server", "worker", "driver"),
        ),
        System("B", "B no Temporal", "sign + POST from one asyncio loop", ("driver",)),
        System(
            "C",
            "C Celery + Redis",
            f"1 task, autoretry + backoff + acks_late, {celery_app.CONCURRENCY} threads",
            ("server", "worker", "driver"),
        ),
        System(
            "D",
            "D engine, direct",
            "`deliver_once` starts DeliverWebhook; 1 `infraudit worker`",
            ("server", "worker", "driver"),
        ),
        System(
            "E",
            "E engine, API",
            "`POST /v1/events` to `infraudit api`; 1 `infraudit worker`",
            ("server", "worker", "api", "driver"),
        ),
        System(
            "F",
            "F engine, API, 2 workers",
            "as E with 2 `infraudit worker` processes",
            ("server", "worker", "api", "driver"),
        ),
    )
}


@dataclass
class Options:
    """Sizes of one run (the command-line flags); the defaults fit 15 minutes on 2 cores."""

    drain: int = 1000
    ladder: tuple[float, ...] = (10, 20, 30, 40, 50)
    step_seconds: float = 5.0
    failure_rate: float = 15.0
    failure_seconds: float = 8.0
    endpoints: int = 10
    api_endpoints: int = 1
    fanout: int = 10_000
    stored: tuple[int, ...] = (1_000, 10_000, 50_000)
    log_requests: int = 40
    api_rate: float = 30.0
    api_seconds: float = 5.0
    budget_minutes: float = 15.0
    redis_url: str = celery_app.DEFAULT_BROKER
    quick: bool = False

    @classmethod
    def small(cls) -> Options:
        """``--quick``: every row and section at a tiny size, to check the harness works."""
        return cls(
            drain=60,
            ladder=(5, 10),
            step_seconds=2.0,
            failure_rate=10.0,
            failure_seconds=2.0,
            endpoints=4,
            fanout=40,
            stored=(100, 500, 900),
            log_requests=5,
            api_rate=10.0,
            api_seconds=1.0,
            budget_minutes=6.0,
            quick=True,
        )


@dataclass
class Row:
    """One scenario of one system."""

    system: str
    #: ``drain``, ``ladder``, ``failure`` or ``fanout``.
    shape: str
    result: Result
    #: What sets this row apart from the system's others (``10 concurrent``, ``+ SQL read``).
    variant: str = ""
    #: Mean history events of a delivery's workflow (a sample), and of its publish workflow.
    history: float | None = None
    publish_history: float | None = None
    #: Failure mix: mean history events of deliveries whose first attempt failed.
    retried_history: float | None = None
    #: The ladder stopped after this step.
    saturated: bool = False


@dataclass
class ScalePoint:
    """Latencies with ``stored`` closed deliveries in the namespace."""

    target: int
    stored: int
    #: Deliveries stored by the seeding stand-in so far (the rest were delivered for real).
    seeded: int
    log_ms: list[float]
    log_rows: int
    publish: Result
    note: str = ""


@dataclass
class Run:
    """Everything the report prints."""

    options: Options
    rows: list[Row] = field(default_factory=list)
    scale: list[ScalePoint] = field(default_factory=list)
    fanout: Row | None = None
    #: Why the fan-out had fewer endpoints than asked for (empty when it had them all).
    fanout_note: str = ""
    idle_server_cpu: float = 0.0
    seeded: int = 0
    seed_seconds: float = 0.0
    #: (section, seconds) in the order they ran.
    sections: list[tuple[str, float]] = field(default_factory=list)
    #: (process, command line) of every process the run started.
    commands: list[tuple[str, str]] = field(default_factory=list)
    redis_version: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    def find(self, system: str, shape: str, variant: str = "") -> Row | None:
        """The first row of ``system`` and ``shape`` (and ``variant`` if given)."""
        for row in self.rows:
            if row.system == system and row.shape == shape and variant in row.variant:
                return row
        return None


async def history_length(client: Client, workflow_id: str) -> int:
    """Events in a workflow's history, as the server counts them."""
    described = await client.get_workflow_handle(workflow_id).describe()
    return int(described.raw_description.workflow_execution_info.history_length)


async def closed_deliveries(client: Client) -> int:
    """Closed DeliverWebhook executions in the namespace (as visibility counts them)."""
    query = f"WorkflowType = '{DELIVER_WEBHOOK}' AND ExecutionStatus != 'Running'"
    return int((await client.count_workflows(query)).count)


def _redacted(env: dict[str, str]) -> str:
    """``NAME=value`` pairs for the report, the sealing keys left out."""
    return " ".join(
        f"{k}={'<generated>' if k == secret_box.KEYS_VARIABLE else v}" for k, v in env.items()
    )


class Bench:
    """The running systems of one benchmark run and the rows measured against them."""

    def __init__(
        self,
        options: Options,
        client: Client,
        db: Database,
        receiver: ReceiverControl,
        *,
        clock: float,
    ) -> None:
        self.options = options
        self.client = client
        self.db = db
        self.receiver = receiver
        self.meter = Meter()
        self.idle = 0.0
        self.run = Run(options)
        self.hooks: list[str] = []
        self.api_hooks: list[str] = []
        self.targets: dict[str, tuple[str, str]] = {}
        self.api_keys: dict[str, str] = {}
        self.publish_ids: dict[str, str] = {}
        #: When the run started (``time.monotonic()``): the budget counts from here.
        self.clock = clock
        self.deadline = self.clock + 60 * options.budget_minutes - BUDGET_RESERVE
        self.env: dict[str, str] = {}
        self.engine_settings: Settings | None = None
        self.state = Path()
        self.api: httpx.AsyncClient | None = None
        self.seeder: subprocess.Popen[str] | None = None
        self.seed_hooks: list[str] = []

    # --- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def tag() -> str:
        """A short random tag that keeps keys of different scenarios apart."""
        return uuid.uuid4().hex[:8]

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time a part of the run for the report's budget table."""
        started = time.monotonic()
        print(f"== {name} (at {started - self.clock:.0f}s)", flush=True)
        try:
            yield
        finally:
            self.run.sections.append((name, time.monotonic() - started))

    async def quiesce(self, quiet: float = 3.0, limit: float = 90.0) -> None:
        """Let late deliveries of an unfinished scenario arrive, then forget them, so they are
        not counted as arrivals of the next scenario."""
        deadline = time.monotonic() + limit
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = await self.receiver.count()
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            await asyncio.sleep(0.5)
        await self.receiver.log()

    async def scenario(
        self,
        system: str,
        shape: str,
        items: Sequence[Item],
        *,
        rate: float | None = None,
        offered: float | None = None,
        concurrency: int = START_CONCURRENCY,
        within: float = 240.0,
        linger: float = 0.0,
        variant: str = "",
        keep: bool = True,
    ) -> Row:
        """Run one scenario of ``system``; ``rate`` is submissions/s, ``offered`` deliveries/s."""
        roles = [r for r in SYSTEMS[system].roles if r != "driver"] or ["driver"]
        result = await run_items(
            items,
            receiver=self.receiver,
            meter=self.meter,
            settle_roles=roles,
            idle=self.idle,
            rate=rate,
            concurrency=concurrency,
            within=within,
            linger=linger,
        )
        result.rate = offered if offered is not None else rate
        if result.received < result.deliveries:
            await self.quiesce()
        load = "drain" if result.rate is None else f"{result.rate:g}/s"
        print(
            f"  {system} {shape} {variant} {load}: {result.received}/{result.deliveries} in "
            f"{result.seconds:.1f}s, {result.throughput:.1f}/s, p50 "
            f"{result.percentile(0.5) or 0:.0f} ms, p99 {result.percentile(0.99) or 0:.0f} ms, "
            f"other load {result.other_load():.2f}",
            flush=True,
        )
        row = Row(system, shape, result, variant)
        if keep:
            self.run.rows.append(row)
        return row

    async def ladder(
        self, system: str, items_for: Callable[[int], list[Item]], per_item: int = 1
    ) -> None:
        """The open-loop ladder: each offered rate for ``step_seconds``, until saturated."""
        o = self.options
        for rate in o.ladder:
            items = items_for(max(1, round(rate * o.step_seconds)))
            row = await self.scenario(
                system,
                "ladder",
                items,
                rate=rate / per_item,
                offered=rate,
                within=o.step_seconds + 60,
            )
            r = row.result
            if (r.percentile(0.99) or 0) > SATURATED_MS or r.received < r.deliveries or r.refused:
                row.saturated = True
                print("  saturated: this row's ladder stops here", flush=True)
                return

    async def failure(
        self, system: str, items_for: Callable[[int], list[Item]], per_item: int = 1
    ) -> Row:
        """The failure mix at ``failure_rate``: some first attempts fail, some are slow."""
        o = self.options
        await self.receiver.set_mode(fail=FAIL_SHARE, slow=SLOW_SHARE, slow_seconds=SLOW_SECONDS)
        try:
            return await self.scenario(
                system,
                "failure",
                items_for(max(1, round(o.failure_rate * o.failure_seconds))),
                rate=o.failure_rate / per_item,
                offered=o.failure_rate,
                within=o.failure_seconds + SLOW_SECONDS + 120,
                # The slow answers go on after their request arrived: wait them out.
                linger=SLOW_SECONDS + 1,
            )
        finally:
            await self.receiver.set_mode()

    async def mean_history(self, workflow_ids: Sequence[str]) -> float | None:
        """Mean history length of the workflows that exist among ``workflow_ids``."""
        lengths: list[int] = []
        for workflow_id in workflow_ids[:HISTORY_SAMPLE]:
            try:
                lengths.append(await history_length(self.client, workflow_id))
            except RPCError:
                continue
        return sum(lengths) / len(lengths) if lengths else None

    async def histories(self, row: Row) -> None:
        """Fill ``row``'s history columns from a sample of its deliveries."""
        keys = list(row.result.latency_ms)
        clean = [k for k in keys if bucket(k) >= FAIL_SHARE] if row.shape == "failure" else keys
        row.history = await self.mean_history(clean)
        if row.shape == "failure":
            row.retried_history = await self.mean_history(
                [k for k in keys if bucket(k) < FAIL_SHARE]
            )
        publish = [self.publish_ids[k] for k in keys if k in self.publish_ids]
        if publish:
            row.publish_history = await self.mean_history(publish)

    @asynccontextmanager
    async def helper_worker(self, mode: str, task_queue: str) -> AsyncIterator[None]:
        """A worker of :mod:`bench.workers` whose CPU counts as ``worker`` while it runs."""
        proc = procs.spawn_python("bench.workers", mode, "--task-queue", task_queue, env=self.env)
        try:
            ready = await asyncio.to_thread(procs.read_ready_line, proc)
            if ready != "ready":
                raise RuntimeError(f"bench.workers {mode} said {ready!r}")
            self.meter.add("worker", proc.pid)
            yield
        finally:
            self.meter.remove("worker", proc.pid)
            await asyncio.to_thread(procs.stop, proc)

    # --- A: bare Temporal -------------------------------------------------------------------

    async def system_a(self) -> None:
        """Baseline A: BareDelivery started directly."""
        queue = "bench-bare"
        url = f"{self.receiver.base}/bare"

        def items(n: int) -> list[Item]:
            tag = self.tag()

            def make(key: str) -> Item:
                async def submit() -> list[str]:
                    await self.client.start_workflow("BareDelivery", url, id=key, task_queue=queue)
                    return [key]

                return Item(1, submit)

            return [make(f"bare-{tag}-{i}") for i in range(n)]

        self.run.commands.append(("A worker", f"python -m bench.workers bare --task-queue {queue}"))
        async with self.helper_worker("bare", queue):
            await self.histories(await self.scenario("A", "drain", items(self.options.drain)))
            await self.ladder("A", items)
            await self.histories(await self.failure("A", items))

    # --- B: no Temporal ---------------------------------------------------------------------

    def _plain_items(self, n: int, http: httpx.AsyncClient, *, load: bool) -> list[Item]:
        tag = self.tag()

        def make(i: int) -> Item:
            hook = self.hooks[i % len(self.hooks)]
            delivery_id = ids.delivery_id(f"evt_{tag}_{i}", hook)

            async def submit() -> list[str]:
                if load:
                    async with self.db.session() as session:
                        target = await webhooks.load_signing_target(session, hook)
                    assert target is not None
                    url, secret = target.url, target.secret
                else:
                    url, secret = self.targets[hook]
                body = envelope_body(
                    event=EVENT, data=DATA, webhook_id=hook, delivery_id=delivery_id
                )
                headers = signed_headers(
                    body, secret=secret, event=EVENT, delivery_id=delivery_id, webhook_id=hook
                )
                async with asyncio.timeout(10):
                    response = await http.post(url, content=body, headers=headers, timeout=10)
                response.raise_for_status()
                return [delivery_id]

            return Item(1, submit)

        return [make(i) for i in range(n)]

    async def system_b(self) -> None:
        """Baseline B: the same signed POSTs from this process, one shared httpx client."""
        http = engine_http_client()
        n = self.options.drain
        try:
            for concurrency in (10, 100):
                await self.scenario(
                    "B",
                    "drain",
                    self._plain_items(n, http, load=False),
                    concurrency=concurrency,
                    variant=f"{concurrency} concurrent",
                )
            await self.scenario(
                "B",
                "drain",
                self._plain_items(n, http, load=True),
                concurrency=100,
                variant="+ SQL read, 100 concurrent",
            )
            await self.ladder("B", lambda count: self._plain_items(count, http, load=False))
        finally:
            await http.aclose()

    # --- C: Celery + Redis ------------------------------------------------------------------

    async def system_c(self, temporal_pid: int) -> None:
        """Baseline C: one Celery task per delivery on the machine's Redis."""
        redis_pid, self.run.redis_version = redis_info(self.options.redis_url)
        queue = f"bench-{self.tag()}"
        celery_app.configure(self.options.redis_url, queue)
        env = {celery_app.BROKER_VARIABLE: self.options.redis_url, celery_app.QUEUE_VARIABLE: queue}
        self.run.commands.append(("C worker", f"{_redacted(env)} python -m bench.celery_app"))

        def items(n: int) -> list[Item]:
            tag = self.tag()

            def make(i: int) -> Item:
                hook = self.hooks[i % len(self.hooks)]
                delivery_id = ids.delivery_id(f"evt_{tag}_{i}", hook)
                url, secret = self.targets[hook]

                async def submit() -> list[str]:
                    body = envelope_body(
                        event=EVENT, data=DATA, webhook_id=hook, delivery_id=delivery_id
                    ).decode()
                    args = (url, body, secret, EVENT, delivery_id, hook)
                    await asyncio.to_thread(celery_app.deliver.apply_async, args=args, queue=queue)
                    return [delivery_id]

                return Item(1, submit)

            return [make(i) for i in range(n)]

        proc = procs.spawn_python("bench.celery_app", env=env)
        self.meter.remove("server", temporal_pid)
        self.meter.add("server", redis_pid)
        try:
            await asyncio.to_thread(procs.read_ready_line, proc, skip_until="ready")
            self.meter.add("worker", proc.pid)
            await self.scenario("C", "drain", items(self.options.drain))
            await self.ladder("C", items)
            await self.failure("C", items)
        finally:
            self.meter.remove("worker", proc.pid)
            self.meter.remove("server", redis_pid)
            self.meter.add("server", temporal_pid, tree=True)
            await asyncio.to_thread(procs.stop, proc)
            redis_cleanup(self.options.redis_url, queue)

    # --- D, E, F: the engine ----------------------------------------------------------------

    def _direct_items(self, n: int) -> list[Item]:
        assert self.engine_settings is not None
        settings = self.engine_settings

        def make(i: int) -> Item:
            hook = self.hooks[i % len(self.hooks)]

            async def submit() -> list[str]:
                delivery_id = await deliver_once(
                    self.client,
                    settings,
                    org_id=BENCH_ORG,
                    webhook_id=hook,
                    url=self.targets[hook][0],
                    event=EVENT,
                    data=DATA,
                )
                return [delivery_id]

            return Item(1, submit)

        return [make(i) for i in range(n)]

    def _api_items(self, events: int, org: str, hooks: Sequence[str]) -> list[Item]:
        """``events`` publishes through the API, each to every one of ``hooks``."""
        assert self.api is not None
        api = self.api
        tag = self.tag()
        headers = {"Authorization": f"Bearer {self.api_keys[org]}"}

        def make(i: int) -> Item:
            event_id = f"evt_{tag}_{i}"

            async def submit() -> list[str]:
                body = {"event": EVENT, "data": DATA, "id": event_id}
                response = await api.post("/v1/events", json=body, headers=headers)
                if response.status_code != httpx.codes.ACCEPTED:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                keys = response.json().get("delivery_ids") or [
                    ids.delivery_id(event_id, hook) for hook in hooks
                ]
                publish_id = ids.publish_workflow_id(org, event_id)
                for key in keys[:1]:
                    self.publish_ids[key] = publish_id
                return list(keys)

            return Item(len(hooks), submit)

        return [make(i) for i in range(events)]

    def _api_deliveries(self, n: int) -> list[Item]:
        """Events to the API org enough for ``n`` deliveries."""
        k = len(self.api_hooks)
        return self._api_items(math.ceil(n / k), API_ORG, self.api_hooks)

    async def start_engine_worker(self, name: str) -> subprocess.Popen[bytes]:
        """One more ``infraudit worker``, counted as ``worker``."""
        proc = await engine.start_worker(self.client, self.env, self.state / f"{name}.log")
        self.meter.add("worker", proc.pid)
        return proc

    async def stop_engine_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one ``infraudit worker`` and stop counting it."""
        self.meter.remove("worker", proc.pid)
        await asyncio.to_thread(procs.stop, proc)

    async def system_def(self) -> None:
        """D, E and F, with the stored-work levels and the fan-out where they belong."""
        o = self.options
        k = len(self.api_hooks)
        worker = await self.start_engine_worker("worker-1")
        api_proc = await engine.start_api(self.env, self.state / "api.log")
        self.meter.add("api", api_proc.pid)
        self.api = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.env['INFRAUDIT_API_PORT']}",
            timeout=60,
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        )
        try:
            with self.section("D engine, direct"):
                await self.histories(await self.scenario("D", "drain", self._direct_items(o.drain)))
            with self.section("Stored work, first level"):
                await self.scale_level(0)
            with self.section("D engine, direct (ladder, failure mix)"):
                await self.ladder("D", self._direct_items)
                await self.histories(await self.failure("D", self._direct_items))
            with self.section("E engine, API"):
                drain = await self.scenario("E", "drain", self._api_deliveries(o.drain))
                await self.histories(drain)
                await self.ladder("E", self._api_deliveries, per_item=k)
                await self.histories(await self.failure("E", self._api_deliveries, per_item=k))
            second = await self.start_engine_worker("worker-2")
            try:
                with self.section("F engine, API, 2 workers"):
                    drain = await self.scenario("F", "drain", self._api_deliveries(o.drain))
                    await self.histories(drain)
                    await self.ladder("F", self._api_deliveries, per_item=k)
            finally:
                await self.stop_engine_worker(second)
            for index in range(1, len(o.stored) - 1):
                with self.section(f"Stored work, level {index + 1}"):
                    await self.scale_level(index)
            if o.fanout > 0:
                with self.section(f"Fan-out to {o.fanout:,} endpoints"):
                    await self.fanout_row()
            if len(o.stored) > 1:
                with self.section("Stored work, last level"):
                    await self.scale_level(len(o.stored) - 1)
        finally:
            if self.seeder is not None:
                await asyncio.to_thread(procs.stop, self.seeder)
            await self.api.aclose()
            self.meter.remove("api", api_proc.pid)
            await asyncio.to_thread(procs.stop, api_proc)
            await self.stop_engine_worker(worker)

    async def fanout_row(self) -> None:
        """One event through the API to ``fanout`` endpoints, until every delivery arrived.

        When E's drain rate says that many would end past the budget, the fan-out shrinks to
        what fits (the report says so): the run's 15 minutes are a promise too.
        """
        n = self.options.fanout
        drain = self.run.find("E", "drain")
        if drain is not None and drain.result.throughput > 0:
            fits = int(0.9 * drain.result.throughput * (self.deadline - time.monotonic()))
            if fits < n:
                self.run.fanout_note = (
                    f"reduced from {n:,} endpoints: at E's drain rate "
                    f"({drain.result.throughput:,.1f}/s) {n:,} deliveries would have ended "
                    f"past the {self.options.budget_minutes:g}-minute budget"
                )
                print(f"  {self.run.fanout_note}", flush=True)
                n = fits
        if n <= 0:
            return
        hooks = await add_many_endpoints(self.db, FANOUT_ORG, self.receiver.base, EVENT, n)
        async with self.db.session() as session, session.begin():
            self.api_keys[FANOUT_ORG] = await orgs.create_api_key(session, FANOUT_ORG)
        row = await self.scenario(
            "E",
            "fanout",
            self._api_items(1, FANOUT_ORG, hooks),
            within=max(300.0, n / 10),
            keep=False,
        )
        await self.histories(row)
        self.run.fanout = row

    # --- stored work ------------------------------------------------------------------------

    async def seed(self, count: int) -> str:
        """Store ``count`` more closed deliveries with the seeding stand-in, within the budget.

        They are started by the engine's own ``deliver_once`` (so memo, search attributes and
        input are a real delivery's), on a task queue whose worker completes them at once.
        Returns a note when the budget stopped the seeding early.
        """
        assert self.engine_settings is not None
        if self.seeder is None:
            self.seed_hooks = await add_endpoints(
                self.db, SEED_ORG, self.receiver.base, EVENT, SEED_HOOKS
            )
            self.seeder = procs.spawn_python(
                "bench.workers", "seed", "--task-queue", "bench-seed", env=self.env
            )
            if await asyncio.to_thread(procs.read_ready_line, self.seeder) != "ready":
                raise RuntimeError("the seeding worker did not start")
            self.run.commands.append(
                ("Seeding worker", "python -m bench.workers seed --task-queue bench-seed")
            )
        settings = self.engine_settings.model_copy(update={"task_queue": "bench-seed"})
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def one(i: int) -> None:
            hook = self.seed_hooks[i % SEED_HOOKS]
            async with gate:
                await deliver_once(
                    self.client,
                    settings,
                    org_id=SEED_ORG,
                    webhook_id=hook,
                    url=f"{self.receiver.base}/seed",
                    event=EVENT,
                    data=DATA,
                )

        base = await closed_deliveries(self.client)
        done = 0
        note = ""
        while done < count:
            if time.monotonic() > self.deadline:
                note = (
                    f"seeding stopped {count - done:,} short of the level to keep the run "
                    f"within {self.options.budget_minutes:g} minutes"
                )
                break
            batch = min(SEED_BATCH, count - done)
            await asyncio.gather(*(one(i) for i in range(done, done + batch)))
            done += batch
            # Starts outrun completions; keep at most one batch waiting, so that when seeding
            # stops no backlog is left to compete with the measurements that follow.
            await self.settled_count(base + done - SEED_BATCH)
        self.run.seeded += done
        return note

    async def settled_count(self, expected: int, limit: float = 60.0) -> int:
        """Closed deliveries once visibility has caught up with ``expected`` (or stopped)."""
        deadline = time.monotonic() + limit
        count = await closed_deliveries(self.client)
        while count < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            count = await closed_deliveries(self.client)
        return count

    async def scale_level(self, index: int) -> None:
        """Top the namespace up to level ``index`` of closed deliveries, then measure the
        delivery log and ``POST /v1/events`` there."""
        assert self.api is not None
        o = self.options
        target = o.stored[index]
        stored = await self.settled_count(0, limit=0)
        note = ""
        if stored < target:
            started = time.monotonic()
            before = self.run.seeded
            stopped = await self.seed(target - stored)
            stored = await self.settled_count(stored + self.run.seeded - before)
            self.run.seed_seconds += time.monotonic() - started
            rate = self.run.seeded / max(self.run.seed_seconds, 1e-9)
            note = stopped
            if stopped and rate > 0:
                note += (
                    f": the rest, at the {rate:,.0f}/s seeding managed, would have taken "
                    f"{(target - stored) / rate / 60:.1f} more minutes"
                )
        print(f"  {stored:,} closed deliveries stored ({self.run.seeded:,} seeded)", flush=True)
        hook = self.hooks[0]
        headers = {"Authorization": f"Bearer {self.api_keys[BENCH_ORG]}"}
        log_ms: list[float] = []
        rows = 0
        for _ in range(o.log_requests):
            started = time.perf_counter()
            response = await self.api.get(
                f"/v1/webhooks/{hook}/deliveries", params={"limit": 100}, headers=headers
            )
            log_ms.append(1000 * (time.perf_counter() - started))
            response.raise_for_status()
            rows = len(response.json()["data"])
        events = max(1, round(o.api_rate * o.api_seconds))
        publish = await self.scenario(
            "E",
            "stored",
            self._api_items(events, API_ORG, self.api_hooks[:1]),
            rate=o.api_rate,
            offered=o.api_rate,
            keep=False,
        )
        print(
            f"  delivery log p50 {percentile(log_ms, 0.5) or 0:.0f} ms, p95 "
            f"{percentile(log_ms, 0.95) or 0:.0f} ms ({rows} rows); POST /v1/events p99 "
            f"{publish.result.accept_percentile(0.99) or 0:.0f} ms",
            flush=True,
        )
        self.run.scale.append(
            ScalePoint(target, stored, self.run.seeded, log_ms, rows, publish.result, note)
        )


async def run(options: Options) -> Run:
    """Start the dev server, receiver and store; measure every row; stop what was started."""
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="infraudit-bench-") as folder:
        state = Path(folder)
        port = procs.free_port()
        address = f"127.0.0.1:{port}"
        server = start_temporal(state, port)
        receiver_proc = procs.spawn_python("bench.receiver")
        db_url = f"sqlite:///{state / 'store.db'}"
        db: Database | None = None
        receiver: ReceiverControl | None = None
        try:
            receiver_port = int(await asyncio.to_thread(procs.read_ready_line, receiver_proc))
            receiver = ReceiverControl(receiver_port)
            client = await connect(address)
            keys = secret_box.new_key()
            migrate.upgrade(db_url, Keyring(secret_box.decode_keys(keys)))
            db = Database(db_url, Keyring(secret_box.decode_keys(keys)))
            bench = Bench(options, client, db, receiver, clock=clock)
            bench.state = state
            bench.run.commands += [
                (
                    "Benchmark",
                    shlex.join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
                ),
                ("Temporal dev server", shlex.join(map(str, server.args))),  # type: ignore[arg-type]
                ("Receiver", "python -m bench.receiver"),
            ]
            bench.meter.add("server", server.pid, tree=True)
            bench.meter.add("driver", os.getpid())
            bench.meter.add("receiver", receiver_proc.pid)
            bench.hooks = await add_endpoints(
                db, BENCH_ORG, receiver.base, EVENT, options.endpoints
            )
            bench.api_hooks = await add_endpoints(
                db, API_ORG, receiver.base, EVENT, options.api_endpoints
            )
            async with db.session() as session, session.begin():
                for org in (BENCH_ORG, API_ORG):
                    bench.api_keys[org] = await orgs.create_api_key(session, org)
            async with db.session() as session:
                for hook in bench.hooks:
                    target = await webhooks.load_signing_target(session, hook)
                    assert target is not None
                    bench.targets[hook] = (target.url, target.secret)
            queue = "bench-engine"
            bench.env = engine.engine_env(
                address=address,
                database_url=db_url,
                secret_keys=keys,
                task_queue=queue,
                api_port=procs.free_port(),
            )
            bench.engine_settings = Settings(
                database_url=db_url,
                temporal_address=address,
                task_queue=queue,
                secret_keys=SecretStr(keys),
                retry_initial_interval=RETRY_INITIAL_SECONDS,
                retry_backoff_coefficient=RETRY_BACKOFF,
            )
            env_text = _redacted(bench.env)
            bench.run.commands += [
                ("D/E/F worker (one each; two for F)", f"{env_text} infraudit worker"),
                ("E/F API", f"{env_text} infraudit api"),
            ]
            with bench.section("Idle dev server"):
                # Its first seconds are busy starting up: wait for that before calling it idle.
                await bench.meter.settle(["server"], 0.0, interval=1.0, limit=30.0)
                bench.idle = await bench.meter.idle_rate(["server"])
                bench.run.idle_server_cpu = bench.idle
            with bench.section("A bare Temporal"):
                await bench.system_a()
            with bench.section("B no Temporal"):
                await bench.system_b()
            with bench.section("C Celery + Redis"):
                await bench.system_c(server.pid)
            await bench.system_def()
            bench.run.seconds = time.monotonic() - bench.clock
            return bench.run
        finally:
            if receiver is not None:
                await receiver.aclose()
            if db is not None:
                await db.dispose()
            procs.stop(receiver_proc)
            procs.stop(server)
