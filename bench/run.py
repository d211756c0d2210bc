"""One benchmark run: start everything, measure every row, return what the report needs.

Order matters on 2 cores: each system gets the machine to itself (baseline A's worker is
stopped before the engine's starts), and the 10,000-endpoint fan-out goes last because it
leaves 10,000 deliveries open on a queue no worker polls.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from bench import procs
from bench.measure import Item, Meter, ReceiverControl, Result, run_items
from bench.systems import add_endpoints, add_many_endpoints, connect, start_temporal
from infraudit import ids, signing
from infraudit.activities.fanout import start_delivery
from infraudit.activities.send import USER_AGENT, new_http_client
from infraudit.client import start_publish
from infraudit.config import Settings
from infraudit.contract import DeliverWebhookInput, DeliveryPolicy
from infraudit.store import migrate, secret_box, webhooks
from infraudit.store.db import Database
from infraudit.store.secret_box import Keyring

EVENT = "drift.detected"
DATA: dict[str, Any] = {"resource": "sg-0123456789abcdef0", "region": "eu-west-1", "drift": 3}
#: Concurrent workflow starts in a burst: the same cap the fan-out activity uses.
START_CONCURRENCY = 64


@dataclass
class Options:
    """Sizes of one run (the command-line flags)."""

    n: int = 500
    paced_n: int = 100
    rate: float = 10.0
    endpoints: int = 10
    fanout: int = 10_000
    concurrency: tuple[int, ...] = (10, 100)


@dataclass
class Row:
    """One table row: which system, how it was driven, what it measured."""

    name: str
    how: str
    result: Result
    #: Process whose CPU is the "worker" column: the Temporal worker, or the driver for B.
    worker_role: str = "worker"
    history: int | None = None
    publish_history: int | None = None
    paced: bool = False


@dataclass
class FanOut:
    """The 10,000-endpoint fan-out: time until PublishEvent returned every delivery id."""

    endpoints: int
    returned: int
    seconds: float
    history: int
    cpu: dict[str, float]
    #: Seconds between the two CPU readings (the fan-out, then until the server was quiet).
    window: float = 1.0


@dataclass
class Run:
    """Everything the report prints."""

    options: Options
    rows: list[Row] = field(default_factory=list)
    fanout: FanOut | None = None
    idle_server_cpu: float = 0.0
    aiohttp_transport: str = ""


async def history_length(client: Client, workflow_id: str) -> int:
    """Events in a workflow's history, as the server counts them."""
    described = await client.get_workflow_handle(workflow_id).describe()
    return int(described.raw_description.workflow_execution_info.history_length)


@asynccontextmanager
async def worker_process(
    mode: str, task_queue: str, env: dict[str, str], meter: Meter
) -> AsyncIterator[None]:
    """A worker subprocess whose CPU the meter reads as ``worker`` while it runs."""
    proc = procs.spawn_python("bench.workers", mode, "--task-queue", task_queue, env=env)
    try:
        ready = await asyncio.to_thread(procs.read_ready_line, proc)
        if ready != "ready":
            raise RuntimeError(f"worker said {ready!r}")
        meter.pids["worker"] = (proc.pid, False)
        yield
    finally:
        meter.pids.pop("worker", None)
        await asyncio.to_thread(procs.stop, proc)


async def signed_post(
    http: httpx.AsyncClient, *, delivery_id: str, webhook_id: str, url: str, secret: str
) -> int:
    """Baseline B's delivery: the engine's envelope, signature, headers and POST, no Temporal."""
    envelope = signing.build_envelope(
        event=EVENT,
        timestamp=datetime.now(UTC),
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        data=DATA,
    )
    body = signing.envelope_body(envelope)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.SIGNATURE_HEADER: signing.sign(body, secret),
        signing.EVENT_HEADER: EVENT,
        signing.DELIVERY_HEADER: delivery_id,
        signing.WEBHOOK_HEADER: webhook_id,
    }
    async with (
        asyncio.timeout(10),
        http.stream("POST", url, content=body, headers=headers, timeout=10) as response,
    ):
        await response.aread()
    return response.status_code


async def loaded_post(
    http: httpx.AsyncClient, db: Database, *, delivery_id: str, webhook_id: str
) -> int:
    """Baseline B with the activity's store read: URL and secret from SQL, then the POST."""
    async with db.session() as session:
        target = await webhooks.load_signing_target(session, webhook_id)
    assert target is not None
    return await signed_post(
        http, delivery_id=delivery_id, webhook_id=webhook_id, url=target.url, secret=target.secret
    )


def aiohttp_client() -> httpx.AsyncClient | None:
    """An httpx client over the httpx-aiohttp transport, when that package is installed."""
    if importlib.util.find_spec("httpx_aiohttp") is None:
        return None
    import httpx_aiohttp  # type: ignore[import-not-found]

    return httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport())


class Bench:
    """The running systems of one benchmark run and the rows measured against them."""

    def __init__(
        self, options: Options, client: Client, db: Database, receiver: ReceiverControl
    ) -> None:
        self.options = options
        self.client = client
        self.db = db
        self.receiver = receiver
        self.meter = Meter()
        self.idle = 0.0
        self.run = Run(options)
        self.hooks: list[str] = []
        self.targets: dict[str, tuple[str, str]] = {}
        self.org_id = "bench-org"

    def _tag(self) -> str:
        return uuid.uuid4().hex[:8]

    async def measure(
        self,
        items: list[Item],
        *,
        rate: float | None,
        concurrency: int = START_CONCURRENCY,
        roles: tuple[str, ...] = ("server", "worker"),
    ) -> Result:
        """Run one scenario and print a line about it."""
        result = await run_items(
            items,
            receiver=self.receiver,
            meter=self.meter,
            settle_roles=roles,
            idle=self.idle,
            rate=rate,
            concurrency=concurrency if rate is None else 10_000,
        )
        print(
            f"  {result.received}/{result.deliveries} in {result.seconds:.1f}s, "
            f"{result.throughput:.1f}/s, p50 {result.percentile(0.5) or 0:.0f} ms, "
            f"p99 {result.percentile(0.99) or 0:.0f} ms; all submitted after "
            f"{result.submitted_seconds:.1f}s",
            flush=True,
        )
        return result

    async def bare_rows(self, task_queue: str) -> None:
        """Baseline A: BareDelivery started N times directly, burst then paced."""
        url = f"{self.receiver.base}/bare"
        for count, rate in ((self.options.n, None), (self.options.paced_n, self.options.rate)):
            print(f"A bare Temporal, {count} {'paced' if rate else 'burst'}", flush=True)
            tag = self._tag()
            keys = [f"bare-{tag}-{i}" for i in range(count)]
            items = [
                Item(
                    [key],
                    lambda key=key: self.client.start_workflow(  # type: ignore[misc]
                        "BareDelivery", url, id=key, task_queue=task_queue
                    ),
                )
                for key in keys
            ]
            result = await self.measure(items, rate=rate)
            self.run.rows.append(
                Row(
                    "A bare Temporal",
                    "1 workflow + 1 activity, plain POST",
                    result,
                    history=await history_length(self.client, keys[0]),
                    paced=rate is not None,
                )
            )

    def _direct_items(self, count: int, task_queue: str, policy: DeliveryPolicy) -> list[Item]:
        tag = self._tag()
        items: list[Item] = []
        for i in range(count):
            hook = self.hooks[i % len(self.hooks)]
            event_id = f"evt_{tag}_{i}"
            delivery_id = ids.delivery_id(event_id, hook)

            def submit(hook: str = hook, event_id: str = event_id, did: str = delivery_id) -> Any:
                return start_delivery(
                    self.client,
                    task_queue=task_queue,
                    delivery=DeliverWebhookInput(
                        webhook_id=hook,
                        org_id=self.org_id,
                        event=EVENT,
                        event_id=event_id,
                        data=DATA,
                        timestamp=datetime.now(UTC),
                        policy=policy,
                    ),
                    delivery_id=did,
                    url=self.targets[hook][0],
                )

            items.append(Item([delivery_id], submit))
        return items

    def _publish_items(self, events: int, task_queue: str) -> tuple[list[Item], str]:
        tag = self._tag()
        items: list[Item] = []
        for e in range(events):
            event_id = f"evt_{tag}_{e}"
            keys = [ids.delivery_id(event_id, hook) for hook in self.hooks]

            def submit(event_id: str = event_id) -> Any:
                return start_publish(
                    self.client,
                    org_id=self.org_id,
                    event=EVENT,
                    data=DATA,
                    event_id=event_id,
                    task_queue=task_queue,
                )

            items.append(Item(keys, submit))
        return items, ids.publish_workflow_id(self.org_id, f"evt_{tag}_0")

    async def engine_rows(self, task_queue: str, settings: Settings) -> None:
        """Our engine: DeliverWebhook started directly, then PublishEvent to K endpoints."""
        policy = DeliveryPolicy.from_settings(settings)
        opts = self.options
        for count, rate in ((opts.n, None), (opts.paced_n, opts.rate)):
            print(f"Engine, start_delivery, {count} {'paced' if rate else 'burst'}", flush=True)
            items = self._direct_items(count, task_queue, policy)
            result = await self.measure(items, rate=rate)
            self.run.rows.append(
                Row(
                    "Engine, direct",
                    "DeliverWebhook via start_delivery",
                    result,
                    history=await history_length(self.client, items[0].keys[0]),
                    paced=rate is not None,
                )
            )
        k = len(self.hooks)
        for count, rate in ((opts.n, None), (opts.paced_n, opts.rate)):
            events = max(1, count // k)
            print(f"Engine, PublishEvent, {events} events x {k} endpoints", flush=True)
            items, publish_id = self._publish_items(events, task_queue)
            result = await self.measure(items, rate=rate / k if rate else None)
            self.run.rows.append(
                Row(
                    "Engine, publish",
                    f"PublishEvent to {k} endpoints each",
                    result,
                    history=await history_length(self.client, items[0].keys[0]),
                    publish_history=await history_length(self.client, publish_id),
                    paced=rate is not None,
                )
            )

    async def unsandboxed_row(self, task_queue: str, settings: Settings) -> None:
        """Diagnostic: the engine's direct burst with the workflow sandbox off (half size)."""
        count = max(1, self.options.n // 2)
        print(f"Engine without the workflow sandbox, {count} burst", flush=True)
        items = self._direct_items(count, task_queue, DeliveryPolicy.from_settings(settings))
        result = await self.measure(items, rate=None)
        self.run.rows.append(
            Row(
                "Engine, no sandbox",
                "diagnostic: as direct, UnsandboxedWorkflowRunner",
                result,
                history=await history_length(self.client, items[0].keys[0]),
            )
        )

    def _plain_items(self, count: int, http: httpx.AsyncClient, *, load: bool) -> list[Item]:
        tag = self._tag()
        items: list[Item] = []
        for i in range(count):
            hook = self.hooks[i % len(self.hooks)]
            delivery_id = ids.delivery_id(f"evt_{tag}_{i}", hook)
            url, secret = self.targets[hook]
            if load:

                def submit(did: str = delivery_id, hook: str = hook) -> Any:
                    return loaded_post(http, self.db, delivery_id=did, webhook_id=hook)

            else:

                def submit(
                    did: str = delivery_id, hook: str = hook, url: str = url, secret: str = secret
                ) -> Any:
                    return signed_post(
                        http, delivery_id=did, webhook_id=hook, url=url, secret=secret
                    )

            items.append(Item([delivery_id], submit))
        return items

    async def plain_rows(self) -> None:
        """Baseline B: the same signed POSTs from one asyncio loop and one httpx client."""
        opts = self.options
        roles = ("driver",)
        http = new_http_client()
        try:
            for concurrency in opts.concurrency:
                print(f"B no Temporal, {opts.n} burst, {concurrency} concurrent", flush=True)
                items = self._plain_items(opts.n, http, load=False)
                result = await self.measure(items, rate=None, concurrency=concurrency, roles=roles)
                self.run.rows.append(
                    Row(
                        "B no Temporal",
                        f"sign + POST, {concurrency} concurrent",
                        result,
                        worker_role="driver",
                    )
                )
            top = max(opts.concurrency)
            print(f"B no Temporal + SQL read, {opts.n} burst, {top} concurrent", flush=True)
            items = self._plain_items(opts.n, http, load=True)
            result = await self.measure(items, rate=None, concurrency=top, roles=roles)
            self.run.rows.append(
                Row(
                    "B + SQL read",
                    f"load URL+secret, sign, POST, {top} concurrent",
                    result,
                    worker_role="driver",
                )
            )
            print(f"B no Temporal, {opts.paced_n} paced", flush=True)
            items = self._plain_items(opts.paced_n, http, load=False)
            result = await self.measure(items, rate=opts.rate, roles=roles)
            self.run.rows.append(
                Row("B no Temporal", "sign + POST", result, worker_role="driver", paced=True)
            )
        finally:
            await http.aclose()
        fast = aiohttp_client()
        if fast is None:
            self.run.aiohttp_transport = "not installed (httpx_aiohttp is not importable)"
            return
        try:
            print(f"B over httpx-aiohttp, {opts.n} burst, 100 concurrent", flush=True)
            items = self._plain_items(opts.n, fast, load=False)
            result = await self.measure(items, rate=None, concurrency=100, roles=roles)
            self.run.rows.append(
                Row(
                    "B, httpx-aiohttp",
                    "sign + POST, 100 concurrent",
                    result,
                    worker_role="driver",
                )
            )
            self.run.aiohttp_transport = "measured"
        finally:
            await fast.aclose()

    async def fanout_row(self, env: dict[str, str]) -> None:
        """One event to ``fanout`` endpoints; deliveries go to a queue nobody polls."""
        count = self.options.fanout
        org_id = "bench-fanout"
        print(f"Fan-out: seeding {count} endpoints", flush=True)
        clock = time.perf_counter()
        await add_many_endpoints(self.db, org_id, self.receiver.base, "job.completed", count)
        print(f"  seeded in {time.perf_counter() - clock:.1f}s", flush=True)
        publish_queue = "bench-publish"
        env = {**env, "INFRAUDIT_TASK_QUEUE": "bench-idle"}
        async with worker_process("fanout", publish_queue, env, self.meter):
            print(f"Fan-out: one event to {count} endpoints", flush=True)
            before = self.meter.read()
            clock = time.perf_counter()
            event_id, handle = await start_publish(
                self.client,
                org_id=org_id,
                event="job.completed",
                data=DATA,
                task_queue=publish_queue,
            )
            result = await handle.result()
            seconds = time.perf_counter() - clock
            await self.meter.settle(("server", "worker"), self.idle)
            after = self.meter.read()
            window = time.perf_counter() - clock
        history = await history_length(self.client, ids.publish_workflow_id(org_id, event_id))
        print(f"  {len(result.delivery_ids)} ids in {seconds:.1f}s, history {history}", flush=True)
        self.run.fanout = FanOut(
            endpoints=count,
            returned=len(result.delivery_ids),
            seconds=seconds,
            history=history,
            cpu={role: after[role] - before[role] for role in before if role in after},
            window=window,
        )


async def run(options: Options) -> Run:
    """Start the dev server, receiver and store; measure every row; stop what was started."""
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
            keyring = Keyring(secret_box.decode_keys(keys))
            migrate.upgrade(db_url, keyring)
            db = Database(db_url, keyring)
            bench = Bench(options, client, db, receiver)
            bench.meter.pids.update(
                server=(server.pid, True),
                driver=(os.getpid(), False),
                receiver=(receiver_proc.pid, False),
            )
            bench.hooks = await add_endpoints(
                db, bench.org_id, receiver.base, EVENT, options.endpoints
            )
            async with db.session() as session:
                for hook in bench.hooks:
                    target = await webhooks.load_signing_target(session, hook)
                    assert target is not None
                    bench.targets[hook] = (target.url, target.secret)
            print("Measuring the idle dev server", flush=True)
            # Its first seconds are busy starting up: wait for that before calling it idle.
            await bench.meter.settle(["server"], 0.0, interval=1.0, limit=30.0)
            bench.idle = await bench.meter.idle_rate(["server"])
            bench.run.idle_server_cpu = bench.idle
            env = {
                "INFRAUDIT_TEMPORAL_ADDRESS": address,
                "INFRAUDIT_DATABASE_URL": db_url,
                secret_box.KEYS_VARIABLE: keys,
            }
            async with worker_process("bare", "bench-bare", env, bench.meter):
                await bench.bare_rows("bench-bare")
            settings = Settings(
                database_url=db_url, temporal_address=address, secret_keys=SecretStr(keys)
            )
            async with worker_process("engine", "bench-engine", env, bench.meter):
                await bench.engine_rows("bench-engine", settings)
            async with worker_process("engine-unsandboxed", "bench-nosandbox", env, bench.meter):
                await bench.unsandboxed_row("bench-nosandbox", settings)
            await bench.plain_rows()
            if options.fanout > 0:
                await bench.fanout_row(env)
            return bench.run
        finally:
            if receiver is not None:
                await receiver.aclose()
            if db is not None:
                await db.dispose()
            procs.stop(receiver_proc)
            procs.stop(server)
