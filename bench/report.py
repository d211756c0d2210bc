"""docs/benchmarks.md, written from one run's numbers: table, machine, and what they mean.

The interpretation is computed from the same run, so the page never describes numbers it does
not show; the explanation of *why* the engine costs more comes from the workflow code and is
checked against the measured history lengths.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version

from bench.run import FanOut, Row, Run
from infraudit.binaries import binary


def cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    temporal = subprocess.run(
        [binary("temporal"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", cpu_model()),
        ("Python", platform.python_version()),
        ("temporalio", version("temporalio")),
        ("Temporal CLI", temporal),
        ("httpx", version("httpx")),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _cpu(value: float) -> str:
    return f"{value:.1f}"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| Row | What each delivery is | Load | Deliveries | Wall s | Deliveries/s | p50 ms "
        "| p99 ms | Server CPU ms | Worker CPU ms | Server + worker ms | Driver CPU ms "
        "| History events | Other load |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        r = row.result
        server = r.cpu_ms_per_delivery("server")
        worker = r.cpu_ms_per_delivery(row.worker_role)
        plain = row.worker_role == "driver"
        total = worker if plain else server + worker
        driver = "-" if plain else _cpu(r.cpu_ms_per_delivery("driver"))
        history = "-" if row.history is None else str(row.history)
        if row.publish_history is not None:
            history += f" (+ {row.publish_history} per PublishEvent)"
        load = "paced" if row.paced else "burst"
        server_cell = f"({_cpu(server)} idle)" if plain else _cpu(server)
        lines.append(
            f"| {row.name} | {row.how} | {load} | {r.received}/{r.deliveries} "
            f"| {r.seconds:.1f} | {r.throughput:.1f} | {_ms(r.percentile(0.5))} "
            f"| {_ms(r.percentile(0.99))} | {server_cell} | {_cpu(worker)} | {_cpu(total)} "
            f"| {driver} | {history} | {r.other_load():.2f} |"
        )
    return lines


def _fanout_other(f: FanOut) -> float:
    ours = sum(v for k, v in f.cpu.items() if k != "machine")
    return max(0.0, f.cpu.get("machine", 0.0) - ours) / max(f.window, 1e-9)


def _find(run: Run, name: str, *, paced: bool, how: str = "") -> Row | None:
    for row in run.rows:
        if row.name == name and row.paced == paced and how in row.how:
            return row
    return None


def _total(row: Row) -> float:
    r = row.result
    if row.worker_role == "driver":
        return r.cpu_ms_per_delivery("driver")
    return r.cpu_ms_per_delivery("server") + r.cpu_ms_per_delivery("worker")


def interpretation(run: Run) -> list[str]:
    """A few sentences computed from this run's rows."""
    out: list[str] = []
    noisy = [row for row in run.rows if row.result.other_load() > 0.2]
    if noisy:
        out.append(
            f"- **Caution:** {len(noisy)} row(s) ran while other processes kept more than "
            "0.2 cores busy (see *Other load*); rerun on a quiet machine before comparing them."
        )
    bare = _find(run, "A bare Temporal", paced=False)
    direct = _find(run, "Engine, direct", paced=False)
    publish = _find(run, "Engine, publish", paced=False)
    if bare and direct:
        b, d = bare.result, direct.result
        server_delta = d.cpu_ms_per_delivery("server") - b.cpu_ms_per_delivery("server")
        worker_delta = d.cpu_ms_per_delivery("worker") - b.cpu_ms_per_delivery("worker")
        cpu_ratio = _total(direct) / max(_total(bare), 1e-9)
        slowdown = b.throughput / max(d.throughput, 1e-9)
        out.append(
            f"- **Cost per delivery.** Bare Temporal costs {_cpu(_total(bare))} ms of CPU per "
            f"delivery (server + worker); our engine, started directly, "
            f"{_cpu(_total(direct))} ms ({cpu_ratio:.2f}x). The difference is "
            f"{server_delta:+.1f} ms in the Temporal server and {worker_delta:+.1f} ms in the "
            "worker."
        )
        roles = ("server", "worker", "driver")
        if slowdown > 1.15 * cpu_ratio:
            out.append(
                f"- **Throughput falls further than CPU grows.** In the burst bare Temporal "
                f"drained {b.throughput:.1f} deliveries/s with {b.busy_cores(roles):.2f} of "
                f"{os.cpu_count()} cores busy (server + worker + driver); the engine drained "
                f"{d.throughput:.1f}/s ({slowdown:.1f}x slower for {cpu_ratio:.2f}x the CPU) "
                f"with only {d.busy_cores(roles):.2f} cores busy. So part of the engine's limit "
                "is waiting, not computing: most likely the dev server's persistence, which "
                "takes every write through one SQLite connection, and each delivery of ours "
                "writes more (memo and search attributes at start, two upserts at the end)."
            )
        else:
            out.append(
                f"- **Throughput.** In the burst bare Temporal drained "
                f"{b.throughput:.1f} deliveries/s, the engine {d.throughput:.1f}/s, with "
                f"{b.busy_cores(roles):.2f} and {d.busy_cores(roles):.2f} of "
                f"{os.cpu_count()} cores busy."
            )
        if bare.history and direct.history:
            out.append(
                f"- **Where the server's extra goes.** A DeliverWebhook history has "
                f"{direct.history} events against {bare.history} for the bare workflow: the "
                "start carries a memo (the envelope) and four search attributes, so the "
                "visibility row is written with them; at the end the workflow upserts "
                "`DeliveryStatus` and the `result` memo, which adds commands to the last "
                "workflow task, events to the history and a second visibility write. The "
                "activity's input is the whole envelope body and its result the attempt "
                "list, both through the pydantic converter."
            )
    unsandboxed = _find(run, "Engine, no sandbox", paced=False)
    if direct and unsandboxed:
        with_box = direct.result.cpu_ms_per_delivery("worker")
        without = unsandboxed.result.cpu_ms_per_delivery("worker")
        out.append(
            f"- **What the workflow sandbox costs.** The same deliveries with "
            f"`UnsandboxedWorkflowRunner` cost {_cpu(without)} ms of "
            f"worker CPU instead of {_cpu(with_box)} ms ({with_box - without:.1f} ms, "
            f"{100 * (with_box - without) / max(with_box, 1e-9):.0f}%), and drained "
            f"{unsandboxed.result.throughput:.1f} deliveries/s instead of "
            f"{direct.result.throughput:.1f}. (Bare Temporal's worker pays the sandbox too; "
            "this row only says how much of our worker's time it is.) The rest of our "
            "worker's cost is the store read (below), the pydantic converter on larger "
            "payloads, and the memo and search attribute handling."
        )
    if direct and publish:
        worker_delta = publish.result.cpu_ms_per_delivery(
            "worker"
        ) - direct.result.cpu_ms_per_delivery("worker")
        paced_publish = _find(run, "Engine, publish", paced=True)
        out.append(
            f"- **Through PublishEvent** the engine costs {_cpu(_total(publish))} ms per "
            f"delivery against {_cpu(_total(direct))} ms when started directly: the workflow "
            f"starts move from the driver into the worker's fan-out activity (worker "
            f"{worker_delta:+.1f} ms), and each event adds a PublishEvent workflow of "
            f"{publish.publish_history} history events shared by its {run.options.endpoints} "
            "endpoints."
            + (
                f" Its paced latency (p50 {_ms(paced_publish.result.percentile(0.5))} ms) "
                "covers the fan-out activity and then "
                f"{run.options.endpoints} deliveries of one event started together, which "
                "queue behind each other."
                if paced_publish
                else ""
            )
        )
    plain = [row for row in run.rows if row.name == "B no Temporal" and not row.paced]
    loaded = _find(run, "B + SQL read", paced=False)
    if plain and direct:
        best = max(plain, key=lambda row: row.result.throughput)
        out.append(
            f"- **Ceiling without durability.** One asyncio loop signs and POSTs "
            f"{best.result.throughput:,.0f} deliveries/s ({best.how}) at "
            f"{_cpu(_total(best))} ms CPU each, about "
            f"{best.result.throughput / max(direct.result.throughput, 1e-9):.0f}x the engine: "
            "the HTTP side is not what limits the engine, Temporal's per-workflow work is."
        )
        same = next((row for row in plain if loaded and row.how.endswith(loaded.how[-14:])), None)
        if loaded and same:
            extra = _total(loaded) - _total(same)
            out.append(
                f"- **The SQL read per attempt** (URL + secret from SQLite) adds {extra:.1f} ms "
                f"of CPU per delivery in baseline B ({_cpu(_total(loaded))} against "
                f"{_cpu(_total(same))} ms): "
                f"{100 * extra / max(_total(direct), 1e-9):.0f}% of the engine's per-delivery cost."
            )
    paced = [
        row
        for row in (
            _find(run, "A bare Temporal", paced=True),
            _find(run, "Engine, direct", paced=True),
            _find(run, "Engine, publish", paced=True),
            _find(run, "B no Temporal", paced=True),
        )
        if row is not None
    ]
    if paced:
        parts = ", ".join(
            f"{row.name} {_ms(row.result.percentile(0.5))}/{_ms(row.result.percentile(0.99))} ms"
            for row in paced
        )
        out.append(
            f"- **Latency at {run.options.rate:g} deliveries/s offered** (p50/p99, start to "
            f"received): {parts}. Burst rows' latencies are queueing: they show how long "
            "the last of a burst waited."
        )
    if run.fanout:
        f = run.fanout
        per = 1000 * (f.cpu.get("server", 0) + f.cpu.get("worker", 0)) / max(f.returned, 1)
        out.append(
            f"- **Fan-out.** One event reached {f.returned:,} endpoints' workflow starts in "
            f"{f.seconds:.1f} s ({f.returned / max(f.seconds, 1e-9):,.0f} starts/s, "
            f"{per:.1f} ms of server + worker CPU per start, "
            f"{(f.cpu.get('server', 0) + f.cpu.get('worker', 0)) / max(f.seconds, 1e-9):.2f} "
            f"of {os.cpu_count()} cores busy); the PublishEvent history has "
            f"{f.history} events, because deliveries are started from an activity per page of "
            "500, not as child workflows. With no worker polling the deliveries' queue, their "
            "first workflow tasks wait in the server's persisted backlog, a write a polled "
            "queue would usually not need."
        )
    return out


def aiohttp_note(run: Run) -> list[str]:
    """Whether the httpx-aiohttp transport was measured, and what plain httpx did instead."""
    plain = [row for row in run.rows if row.name == "B no Temporal" and not row.paced]
    fast = next((row for row in run.rows if row.name == "B, httpx-aiohttp"), None)
    parts = ", ".join(
        f"{row.how.split(', ')[-1]}: {row.result.throughput:,.0f}/s at "
        f"{_cpu(_total(row))} ms CPU per POST"
        for row in plain
    )
    if fast is not None:
        return [
            f"- **httpx-aiohttp transport**: {fast.result.throughput:,.0f} POST/s at "
            f"{_cpu(_total(fast))} ms CPU each, 100 concurrent; plain httpx ({parts})."
        ]
    direct = _find(run, "Engine, direct", paced=False)
    share = ""
    if plain and direct:
        post_cpu = min(_total(row) for row in plain)
        share = (
            f" At the engine's {direct.result.throughput:.1f} deliveries/s the whole sign + "
            f"POST costs about {post_cpu * direct.result.throughput / 10:.0f}% of one core, "
            "so a faster transport would not move the engine's throughput today."
        )
    return [
        f"- **httpx-aiohttp transport**: {run.aiohttp_transport}, so not measured. Plain "
        f"httpx in baseline B: {parts}.{share}"
    ]


def render(run: Run) -> str:
    """The whole page."""
    opts = run.options
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench`); rerun it to refresh this page. "
        "It is not part of `make test`, and no test asserts on speed.",
        "",
        "## What is measured, and why the baselines",
        "",
        "Every row sends signed-or-plain POSTs to the same receiver: a minimal HTTP/1.1 "
        "keep-alive server on 127.0.0.1 in a process of its own, so its CPU is not billed to "
        "the engine. One run starts its own `temporal server start-dev` (file-backed SQLite "
        "in WAL mode, our four search attributes, as `infraudit up` runs it) and its own SQLite "
        "store, migrated with `infraudit.store.migrate.upgrade`. Workers run in separate "
        "processes, so /proc tells the server's CPU, the worker's and the driver's (which "
        "starts workflows) apart.",
        "",
        "- **A bare Temporal** — one minimal workflow and one activity doing a plain httpx "
        "POST (no store, no signing, no memo or search attributes), started directly. This "
        "is the floor Temporal itself imposes on any durable delivery on this machine.",
        "- **Engine, direct** — `DeliverWebhook` started with "
        "`infraudit.activities.fanout.start_delivery`, run by the project's `build_worker`: "
        "load URL + secret from SQL, sign, POST, record the outcome.",
        f"- **Engine, publish** — `PublishEvent` for events to an org with {opts.endpoints} "
        "endpoints: fan-out activity, then one `DeliverWebhook` per endpoint.",
        "- **Engine, no sandbox** — a diagnostic, not a configuration we run: the direct "
        "burst with the workflow sandbox off, to show what the sandbox costs per delivery.",
        "- **B no Temporal** — the same envelope, signature, headers and POST from one "
        "asyncio loop with one shared httpx client: the ceiling without durability. "
        "**B + SQL read** adds the activity's per-attempt store read.",
        "- **Fan-out** — one event to "
        f"{opts.fanout:,} endpoints, deliveries started on a task queue no worker polls (as "
        "`tests/test_publish.py` does), so only fan-out is timed.",
        "",
        "How to read the columns:",
        "",
        "- *burst*: all deliveries requested at once (N = "
        f"{opts.n}); deliveries/s is the drain rate, first request to last arrival, and "
        "latency includes the time spent queued behind the others.",
        f"- *paced*: {opts.paced_n} deliveries requested at {opts.rate:g}/s; latency is one "
        "delivery's start-to-received time at that offered load.",
        "- Latency runs from the moment the driver asks for the delivery (workflow start, "
        "publish, or loop task) to the moment the receiver has read the request headers.",
        "- CPU columns are milliseconds of CPU per delivery, read from /proc before the first "
        "request and after the processes went quiet again (a workflow still completes after "
        "its POST). *Server* is the Temporal dev server process tree, *worker* the worker "
        "process (for B: the loop's process), *driver* the process that starts the workflows "
        "(in production: the API or the calling service). For B the server sits idle; its "
        "idle CPU is shown in brackets and not counted.",
        "- History events: `history_length` of one delivery's workflow after it completed.",
        "- One run, no repetitions: during development the engine's burst throughput on this "
        "machine varied between about 13 and 23 deliveries/s from run to run (bare Temporal "
        "about 25-30/s), so compare rows within one run, not across runs.",
        "- Other load: cores kept busy by processes this run did not start (from /proc/stat) "
        "while the row ran; well above 0 means something else competed for the 2 cores and "
        "the row is not to be trusted.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in machine()],
        f"| Idle dev server | {1000 * run.idle_server_cpu:.0f} ms CPU per second |",
        "",
        "## Results",
        "",
        *_table(run.rows),
        "",
    ]
    if run.fanout:
        f = run.fanout
        lines += [
            "| Fan-out | Endpoints | Delivery ids returned | Seconds to all ids | Starts/s "
            "| Server CPU s | Worker CPU s | PublishEvent history events | Other load |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
            f"| one event | {f.endpoints:,} | {f.returned:,} | {f.seconds:.1f} "
            f"| {f.returned / max(f.seconds, 1e-9):,.0f} | {f.cpu.get('server', 0):.1f} "
            f"| {f.cpu.get('worker', 0):.1f} | {f.history} | {_fanout_other(f):.2f} |",
            "",
        ]
    lines += [
        "## What the numbers say",
        "",
        *interpretation(run),
        *aiohttp_note(run),
        "",
    ]
    return "\n".join(lines)
