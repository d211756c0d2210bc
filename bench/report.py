"""docs/benchmarks.md and the README's benchmark block, written from one run's numbers.

Every sentence with a number is computed from the same run, so the page never describes numbers
it does not show; where a conclusion depends on the numbers (which limit stops a target, what a
second worker changed), the text is chosen by them.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.measure import Result, percentile
from bench.receiver import bucket
from bench.run import (
    FAIL_SHARE,
    SATURATED_MS,
    SLOW_SECONDS,
    SLOW_SHARE,
    SYSTEMS,
    Row,
    Run,
)
from infraudit.cli.binaries import binary

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
#: The roles whose CPU a delivery costs (the receiver's is the customer's, not ours).
COST_ROLES = ("server", "worker", "api", "driver")


# --- formatting ---------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def _mb(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.0f}"


def _pcts(values: Sequence[float], fractions: Iterable[float]) -> str:
    return " / ".join(_n(percentile(values, f)) for f in fractions)


def _lat(result: Result, fractions: Iterable[float], keys: Iterable[str] | None = None) -> str:
    keys = list(keys) if keys is not None else None
    return " / ".join(_n(result.percentile(f, keys)) for f in fractions)


def _rel(target: Path, page: Path) -> str:
    """``target`` as a link from the page at ``page``."""
    return os.path.relpath(target.resolve(), page.resolve().parent)


def total_cpu(row: Row) -> float:
    """CPU ms per delivery of every process the system needs (its publisher included)."""
    roles = [r for r in SYSTEMS[row.system].roles if r in COST_ROLES]
    return sum(row.result.cpu_ms_per_delivery(r) for r in roles)


def _role_cpu(row: Row, role: str) -> str:
    if role not in SYSTEMS[row.system].roles:
        return "-"
    return _n(row.result.cpu_ms_per_delivery(role), 1)


def _role_rss(row: Row, role: str) -> str:
    if role not in SYSTEMS[row.system].roles:
        return "-"
    return _mb(row.result.rss.get(role))


def _label(row: Row) -> str:
    name = SYSTEMS[row.system].name
    return f"{name} ({row.variant})" if row.variant else name


# --- the machine ----------------------------------------------------------------------------


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


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine(run: Run) -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    temporal = subprocess.run(
        [binary("temporal"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [
        ("Date", run.started_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", cpu_model()),
        ("Memory", f"{memory / 2**30:.0f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("infraudit-webhooks", _version("infraudit-webhooks")),
        ("temporalio", _version("temporalio")),
        ("Temporal CLI", temporal),
        ("httpx", _version("httpx")),
        ("celery / kombu / redis-py", " / ".join(map(_version, ("celery", "kombu", "redis")))),
        ("Redis server", run.redis_version or "-"),
        ("matplotlib", _version("matplotlib")),
        ("Idle dev server", f"{1000 * run.idle_server_cpu:.0f} ms CPU per second"),
        ("Run time", f"{run.seconds / 60:.1f} minutes"),
    ]


# --- the headline ---------------------------------------------------------------------------


def _best_b(run: Run) -> Row | None:
    rows = [
        r for r in run.rows if r.system == "B" and r.shape == "drain" and "SQL" not in r.variant
    ]
    return max(rows, key=lambda r: r.result.throughput, default=None)


def _step(run: Run, system: str, rate: float) -> Row | None:
    for row in run.rows:
        if row.system == system and row.shape == "ladder" and row.result.rate == rate:
            return row
    return None


def _stopped_below(run: Run, system: str, rate: float) -> Row | None:
    """The step at which ``system``'s ladder stopped as saturated, if that was below ``rate``."""
    for row in run.rows:
        if row.system == system and row.shape == "ladder" and row.saturated:
            return row if (row.result.rate or 0) < rate else None
    return None


def ratios(run: Run) -> list[tuple[str, str, str, str]]:
    """(comparison, drain throughput ratio, CPU per delivery ratio, what the ratio means)."""
    drains = {letter: run.find(letter, "drain") for letter in SYSTEMS}
    drains["B"] = _best_b(run)
    out: list[tuple[str, str, str, str]] = []
    pairs = [
        ("D", "A", "engine started directly / bare Temporal"),
        ("E", "A", "engine through the API / bare Temporal"),
        ("D", "C", "engine started directly / Celery + Redis"),
        ("E", "C", "engine through the API / Celery + Redis"),
        ("D", "B", "engine started directly / ceiling (no durability)"),
        ("F", "E", "2 workers / 1 worker, through the API"),
    ]
    for a, b, what in pairs:
        ra, rb = drains.get(a), drains.get(b)
        if ra is None or rb is None:
            continue
        out.append(
            (
                what,
                _ratio(ra.result.throughput, rb.result.throughput),
                _ratio(total_cpu(ra), total_cpu(rb)),
                f"{ra.result.throughput:,.1f} vs {rb.result.throughput:,.1f} deliveries/s; "
                f"{total_cpu(ra):.1f} vs {total_cpu(rb):.1f} ms CPU",
            )
        )
    return out


def _ratio_table(run: Run) -> list[str]:
    lines = [
        "| Comparison (drain) | Deliveries/s ratio | CPU per delivery ratio | Numbers |",
        "|---|--:|--:|---|",
    ]
    lines += [f"| {w} | {t} | {c} | {n} |" for w, t, c, n in ratios(run)]
    return lines


# --- tables ---------------------------------------------------------------------------------


def _drain_table(run: Run) -> list[str]:
    lines = [
        "| Row | What each delivery is | Delivered | Wall s | Deliveries/s | p50 / p90 / p99 ms "
        "| Accept p50 / p99 ms | CPU ms/delivery: server | worker | API | driver | **total** "
        "| Peak RSS MB: server | worker | API | History events | Other load |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in run.rows:
        if row.shape != "drain":
            continue
        r = row.result
        history = _n(row.history, 1)
        if row.publish_history is not None:
            history += f" + {row.publish_history:.1f} per publish"
        lines.append(
            f"| {_label(row)} | {SYSTEMS[row.system].how} | {r.received}/{r.deliveries} "
            f"| {r.seconds:.1f} | {r.throughput:,.1f} | {_lat(r, (0.5, 0.9, 0.99))} "
            f"| {_pcts(r.accept_ms, (0.5, 0.99))} | {_role_cpu(row, 'server')} "
            f"| {_role_cpu(row, 'worker')} | {_role_cpu(row, 'api')} | {_role_cpu(row, 'driver')} "
            f"| **{total_cpu(row):.1f}** | {_role_rss(row, 'server')} | {_role_rss(row, 'worker')} "
            f"| {_role_rss(row, 'api')} | {history} | {r.other_load():.2f} |"
        )
    return lines


def _note(row: Row) -> str:
    """Why a ladder step is the last of its row, and submissions that were refused."""
    notes = [f"{row.result.refused} submissions refused"] if row.result.refused else []
    if row.saturated:
        notes.append("saturated: ladder stopped")
    return "; ".join(notes)


def _ladder_table(run: Run) -> list[str]:
    lines = [
        "| Row | Offered/s | Delivered | Delivered/s | p50 / p90 / p99 ms | Accept p99 ms "
        "| Max send lag ms | CPU ms/delivery (total) | Other load | |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in run.rows:
        if row.shape != "ladder":
            continue
        r = row.result
        lag = max(r.lag_ms, default=0.0)
        lines.append(
            f"| {SYSTEMS[row.system].name} | {r.rate:g} | {r.received}/{r.deliveries} "
            f"| {r.throughput:,.1f} | {_lat(r, (0.5, 0.9, 0.99))} "
            f"| {_n(r.accept_percentile(0.99))} "
            f"| {lag:,.0f} | {total_cpu(row):.1f} | {r.other_load():.2f} | {_note(row)} |"
        )
    return lines


def _groups(result: Result) -> dict[str, list[str]]:
    """Keys of a failure-mix row by what their first attempt got."""
    groups: dict[str, list[str]] = {"clean": [], "500 first": [], "slow first": []}
    for key in result.latency_ms:
        share = bucket(key)
        if share < FAIL_SHARE:
            groups["500 first"].append(key)
        elif share < FAIL_SHARE + SLOW_SHARE:
            groups["slow first"].append(key)
        else:
            groups["clean"].append(key)
    return groups


def _failure_table(run: Run) -> list[str]:
    lines = [
        "| Row | Delivered | All p50 / p99 ms | Clean p50 / p99 ms | First attempt 500: n, "
        "p50 / p99 ms | First attempt slow: n, p50 / p99 ms | Max attempt | History events "
        "clean / retried | CPU ms/delivery (total) | Other load |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in run.rows:
        if row.shape != "failure":
            continue
        r = row.result
        g = _groups(r)
        history = f"{_n(row.history, 1)} / {_n(row.retried_history, 1)}"
        lines.append(
            f"| {SYSTEMS[row.system].name} | {r.received}/{r.deliveries} "
            f"| {_lat(r, (0.5, 0.99))} | {_lat(r, (0.5, 0.99), g['clean'])} "
            f"| {len(g['500 first'])}: {_lat(r, (0.5, 0.99), g['500 first'])} "
            f"| {len(g['slow first'])}: {_lat(r, (0.5, 0.99), g['slow first'])} "
            f"| {max(r.attempts.values(), default=0)} | {history} | {total_cpu(row):.1f} "
            f"| {r.other_load():.2f} |"
        )
    return lines


def _scale_table(run: Run) -> list[str]:
    o = run.options
    lines = [
        "| Level | Closed deliveries stored | of them seeded | Delivery log p50 / p95 / p99 ms "
        f"| Rows | `POST /v1/events` p50 / p95 / p99 ms at {o.api_rate:g}/s "
        "| Publish → receipt p50 / p99 ms | Other load | Note |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for point in run.scale:
        p = point.publish
        lines.append(
            f"| {point.target:,} | {point.stored:,} | {point.seeded:,} "
            f"| {_pcts(point.log_ms, (0.5, 0.95, 0.99))} | {point.log_rows} "
            f"| {_pcts(p.accept_ms, (0.5, 0.95, 0.99))} | {_lat(p, (0.5, 0.99))} "
            f"| {p.other_load():.2f} | {point.note} |"
        )
    return lines


def _fanout_table(run: Run) -> list[str]:
    row = run.fanout
    if row is None:
        return []
    r = row.result
    cpu = " / ".join(f"{r.cpu.get(role, 0.0):.1f}" for role in ("server", "worker", "api"))
    return [
        "| Endpoints | Delivered | `POST /v1/events` answered, ms | Seconds until the last "
        "arrived | Deliveries/s | p50 / p99 ms | CPU s server / worker / API "
        "| History events per delivery + publish | Other load |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| {r.deliveries:,} | {r.received:,}/{r.deliveries:,} "
        f"| {_pcts(r.accept_ms, (0.5,))} | {r.seconds:.1f} | {r.throughput:,.1f} "
        f"| {_lat(r, (0.5, 0.99))} | {cpu} | {_n(row.history, 1)} + "
        f"{_n(row.publish_history, 0)} | {r.other_load():.2f} |",
        *(["", f"The fan-out was {run.fanout_note}."] if run.fanout_note else []),
    ]


# --- what the numbers say -------------------------------------------------------------------


def _split(row: Row) -> str:
    total = total_cpu(row)
    parts = [
        f"{role} {100 * row.result.cpu_ms_per_delivery(role) / total:.0f}%"
        for role in SYSTEMS[row.system].roles
        if role in COST_ROLES and total > 0
    ]
    return ", ".join(parts)


def findings(run: Run) -> list[str]:
    """Sentences computed from this run's rows: where the time goes, what scales."""
    out: list[str] = []
    cores = os.cpu_count() or 1
    noisy = [row for row in run.rows if row.result.other_load() > 0.2]
    if noisy:
        out.append(
            f"- **Caution:** {len(noisy)} scenario(s) ran while other processes kept more than "
            "0.2 cores busy (*Other load*); rerun on a quiet machine before comparing them."
        )
    a, d, e, f = (run.find(x, "drain") for x in "ADEF")
    for row in (a, d, e):
        if row is None:
            continue
        r = row.result
        roles = [x for x in SYSTEMS[row.system].roles if x in COST_ROLES]
        out.append(
            f"- **{SYSTEMS[row.system].name}** drained {r.throughput:,.1f} deliveries/s with "
            f"{r.busy_cores(roles):.2f} of {cores} cores busy; its {total_cpu(row):.1f} ms of CPU "
            f"per delivery split {_split(row)}."
            + (
                f" A delivery's workflow history has {row.history:.1f} events"
                + (
                    f", plus {row.publish_history:.1f} for the publish workflow of its event"
                    if row.publish_history is not None
                    else ""
                )
                + "."
                if row.history is not None
                else ""
            )
        )
    if d is not None:
        busy = d.result.busy_cores([x for x in SYSTEMS["D"].roles if x in COST_ROLES])
        limit = (
            "the machine's CPU: the processes of one delivery kept the cores busy"
            if busy > 0.8 * cores
            else "waiting, not computing (fewer cores busy than the machine has): most likely "
            "the dev server's single SQLite connection and its one history shard"
        )
        out.append(f"- **What limits the engine's drain here** is {limit}.")
    if e is not None and f is not None:
        gain = f.result.throughput / max(e.result.throughput, 1e-9)
        worker_share = e.result.cpu_ms_per_delivery("worker") / max(total_cpu(e), 1e-9)
        verdict = (
            "a second worker process helps: one worker's event loop was a bottleneck"
            if gain > 1.1
            else "a second worker process on the same cores does not help: the worker is not "
            "the bottleneck on this box, the CPU the server needs is"
        )
        out.append(
            f"- **Scaling out the workers (F against E):** {gain:.2f}x the deliveries/s with two "
            f"`infraudit worker` processes; the worker is {100 * worker_share:.0f}% of a "
            f"delivery's CPU. So {verdict}."
        )
    ceiling = _best_b(run)
    if ceiling is not None and d is not None:
        out.append(
            f"- **Ceiling without durability:** one asyncio loop signs and POSTs "
            f"{ceiling.result.throughput:,.0f} deliveries/s ({ceiling.variant}) at "
            f"{total_cpu(ceiling):.1f} ms CPU each, "
            f"{_ratio(ceiling.result.throughput, d.result.throughput)} the engine's drain: "
            "signing and HTTP are not what limits a durable delivery."
        )
    loaded = run.find("B", "drain", "SQL")
    plain = run.find("B", "drain", "100 concurrent")
    if loaded is not None and plain is not None and d is not None:
        extra = total_cpu(loaded) - total_cpu(plain)
        out.append(
            f"- **The SQL read per attempt** (URL + sealed secret from SQLite, opened) adds "
            f"{extra:.1f} ms of CPU per delivery in baseline B, "
            f"{100 * extra / max(total_cpu(d), 1e-9):.0f}% of the engine's per-delivery cost."
        )
    c = run.find("C", "drain")
    if c is not None and d is not None:
        out.append(
            f"- **Celery + Redis** drained {c.result.throughput:,.1f} deliveries/s at "
            f"{total_cpu(c):.1f} ms CPU each (Redis {c.result.cpu_ms_per_delivery('server'):.1f}, "
            f"worker {c.result.cpu_ms_per_delivery('worker'):.1f}, publisher "
            f"{c.result.cpu_ms_per_delivery('driver'):.1f}). What it does not give for that: no "
            "per-attempt record a customer can read (the delivery log), no history of what was "
            "sent, and a message lost with Redis unless Redis persists it (AOF)."
        )
    return out


def scaling_out(run: Run) -> list[str]:
    """What to add when one box is not enough, from the CPU split of the API row."""
    e = run.find("E", "drain") or run.find("D", "drain")
    if e is None:
        return []
    server = e.result.cpu_ms_per_delivery("server")
    worker = e.result.cpu_ms_per_delivery("worker")
    api = e.result.cpu_ms_per_delivery("api")
    return [
        f"Per delivery through the API this run spent {server:.1f} ms of CPU in the Temporal "
        f"server, {worker:.1f} ms in the worker and {api:.1f} ms in the API. On one 2-core box "
        "the three compete for the same cores, so adding a process of one of them mostly takes "
        "CPU from the others. On a Temporal cluster the parts scale apart (deliveries/s per "
        "core below are at this run's cost per delivery):",
        "",
        f"- **Temporal server** (about {1000 / max(server, 1e-9):,.0f} deliveries/s per "
        "core): run the frontend, history and matching services as separate deployments on "
        "PostgreSQL or Cassandra instead of the dev server's SQLite, with many history shards "
        "(the dev server has one, and one SQLite connection); add history hosts as the delivery "
        "rate grows, and an Elasticsearch or SQL advanced-visibility store for the delivery "
        "log's queries. Temporal Cloud is the same without operating it.",
        f"- **Workers** (about {1000 / max(worker, 1e-9):,.0f} deliveries/s per core): "
        "stateless, so add `infraudit worker` processes or hosts on the same task queue; F shows "
        "what a second process does when it shares the server's cores, which a cluster does not.",
        f"- **API** (about {1000 / max(api, 1e-9):,.0f} publishes/s per core): "
        "stateless too; run several behind a load balancer. Each process counts the per-org rate "
        "limit alone (`infraudit.api.quotas`), so the limit is per process.",
        "- **Store**: PostgreSQL instead of SQLite for the registrations once several API and "
        "worker hosts share it.",
    ]


def targets(run: Run) -> list[str]:
    """The issue's targets against this run's numbers."""
    a, d = run.find("A", "drain"), run.find("D", "drain")
    lines = ["| Target | Measured | Met |", "|---|---|---|"]

    def line(target: str, measured: str, met: bool | None) -> None:
        verdict = "not measured" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {verdict} |")

    if a and d:
        ratio = d.result.throughput / max(a.result.throughput, 1e-9)
        line("Engine drain ≥ 1.0x bare Temporal", f"{ratio:.2f}x (D/A)", ratio >= 1.0)
        line(
            "CPU per delivery ≤ bare's",
            f"{total_cpu(d):.1f} vs {total_cpu(a):.1f} ms",
            total_cpu(d) <= total_cpu(a),
        )
    for rate, target, accept in (
        (40.0, "40 deliveries/s through `POST /v1/events`, p99 publish→receipt < 1 s", False),
        (30.0, "`POST /v1/events` p99 < 50 ms at 30/s", True),
    ):
        step = _step(run, "E", rate)
        stopped = _stopped_below(run, "E", rate)
        if step is not None:
            value = step.result.accept_percentile(0.99) if accept else step.result.percentile(0.99)
            limit = 50 if accept else 1000
            ok = value is not None and value < limit and not step.result.refused
            line(target, f"p99 {_n(value)} ms", ok if step.result.received else False)
        elif stopped is not None:
            line(target, f"E saturated at {stopped.result.rate:g}/s; the ladder stopped", False)
        else:
            line(target, f"no {rate:g}/s step in this run's ladder", None)
    if run.scale:
        last = run.scale[-1]
        p95 = percentile(last.log_ms, 0.95)
        line(
            "Delivery log (100 rows) p95 < 100 ms with 50k deliveries stored",
            f"p95 {_n(p95)} ms with {last.stored:,} stored",
            None if p95 is None else (p95 < 100 if last.stored >= 50_000 else None),
        )
    if run.fanout is not None:
        r = run.fanout.result
        line(
            "One event to 10,000 endpoints fully delivered",
            f"{r.received:,} of {r.deliveries:,} delivered in {r.seconds:.1f} s",
            r.received == r.deliveries if r.deliveries >= 10_000 else None,
        )
    elif run.fanout_note:
        line("One event to 10,000 endpoints fully delivered", run.fanout_note, None)
    return lines


def api_limit(run: Run) -> list[str]:
    """Why the API targets are out of reach on this box, from the D and E rows' CPU split."""
    d, e = run.find("D", "drain"), run.find("E", "drain")
    if d is None or e is None:
        return []
    cores = os.cpu_count() or 1
    more = {
        role: e.result.cpu_ms_per_delivery(role) - d.result.cpu_ms_per_delivery(role)
        for role in ("server", "worker")
    }
    calm = _step(run, "E", run.options.ladder[0]) if run.options.ladder else None
    calm_accept = calm.result.accept_percentile(0.99) if calm is not None else None
    return [
        f"Through the API a delivery cost {total_cpu(e):.1f} ms of CPU in all, against "
        f"{total_cpu(d):.1f} ms when started directly. The difference is the event's own "
        f"`PublishEvent` workflow ({_n(e.publish_history, 0)} history events; its fan-out page, "
        "a local activity, reads the subscribers and starts the delivery) and the request: "
        f"{more['server']:.1f} ms more in the Temporal server, {more['worker']:.1f} ms more in "
        f"the worker, {e.result.cpu_ms_per_delivery('api'):.1f} ms in the API. At that cost "
        f"{cores} cores carry at most about {1000 * cores / max(total_cpu(e), 1e-9):,.0f} "
        "deliveries/s through the API, with every core busy and nothing left for latency; "
        f"started directly, about {1000 * cores / max(total_cpu(d), 1e-9):,.0f}.",
        "",
        "- **40 deliveries/s with p99 under 1 s** needs a delivery through the API to cost "
        f"well under {1000 * cores / 40:.0f} ms of CPU on this box: it costs "
        f"{total_cpu(e):.1f} ms, so the ladder saturates below 40/s.",
        "- **`POST /v1/events` p99 under 50 ms at 30/s**: past saturation the API's start of "
        "the publish workflow queues behind the server's backlog. Below it the answer is fast: "
        + (
            f"{_n(calm_accept)} ms p99 at {calm.result.rate:g}/s."
            if calm is not None and calm.result.rate is not None
            else "no lower step in this run."
        ),
        "- **What would meet both on this box:** starting the deliveries of an event with few "
        "subscribers from the API itself (the API already reads the subscribers to return the "
        "delivery ids), as row D does, and keeping `PublishEvent` for large fan-outs. "
        "DESIGN.md fixes the shape (the API starts one `PublishEvent` per event, which starts "
        "the deliveries), so that trade is the product owner's to make. On a Temporal cluster "
        "the same targets are a matter of server capacity (above).",
    ]


def levers() -> list[str]:
    """What issue 8 tried, kept and dropped; the reasons hold whatever the run."""
    return [
        "Kept, in the engine every row above runs:",
        "",
        "- **A delivery's first attempt is a local activity** (`DeliverWebhook`): it runs "
        "inside the workflow task that starts the delivery, so a delivery that lands at once "
        "has 8 history events instead of 13 and no activity task round trip through the "
        "server. Attempts 2 onwards are one regular activity carrying the rest of the retry "
        "policy, so a failing endpoint costs what it did. What the log needs stays: a worker "
        "lost during attempt 1 leaves the workflow task to time out, and the next worker records "
        "the attempt as lost before going on (docs/workflows.md, docs/reliability.md). In the "
        "report before this change (same harness, 2026-11-30 01:15 UTC) D drained 0.97x bare "
        "Temporal at 1.20x its CPU; compare within one run, since machines differ from day to "
        "day.",
        "- **The fan-out page is a local activity** (`PublishEvent`): 6 history events per "
        "event instead of 11; running a page again after a lost worker only repeats "
        "idempotent starts.",
        "- **One home for starting a delivery** (`infraudit.activities.fanout.start_delivery`): "
        "the starter sets the memo and the search attributes, so the workflow records only its "
        "outcome, in one workflow task.",
        "- **Workflow code reads only its input**: the retry policy's defaults live in the "
        "contract, not in the worker's settings.",
        "- **The dev server's search-attribute cache** "
        "(`system.forceSearchAttributesCacheRefreshOnRead=false`, as `infraudit up` runs it).",
        "- **`POST /v1/events` answers once the publish workflow is started** (its delivery ids "
        "computed from the store), without waiting for the fan-out.",
        "",
        "Dropped:",
        "",
        "- **Every attempt as a local activity**: backoffs over a minute become a timer and a "
        "marker per failed attempt, so a failing endpoint costs more, and an attempt under way "
        "would have no record of its own while it runs.",
        "- **Eager workflow start**: it applies only when the starting client belongs to a worker "
        "in the same process (the API is not one), and it saved no CPU where measured.",
    ]


# --- the page -------------------------------------------------------------------------------


def method(run: Run) -> list[str]:
    """How the rows were driven, in this run's sizes."""
    o = run.options
    ladder = ", ".join(f"{r:g}" for r in o.ladder)
    stored = ", ".join(f"{s:,}" for s in o.stored)
    return [
        "Every row POSTs to the same receiver: a minimal HTTP/1.1 keep-alive server on 127.0.0.1 "
        "in a process of its own (so its CPU is not billed to anyone), which stamps the moment "
        "it has read each request. One run starts its own `temporal server start-dev` with the "
        "flags `infraudit up` uses (file-backed SQLite, WAL, our search attributes; Web UI off), "
        "its own SQLite store, and runs the rows one after the other, each system alone on the "
        "machine: a system's worker is stopped before the next one's starts.",
        "",
        *(f"- **{s.name}**: {s.how}." for s in SYSTEMS.values()),
        "",
        "Details that matter for a fair reading:",
        "",
        "- **A** runs `bench/bare.py`: no memo, no search attributes, no store, no signing, the "
        "same retry policy shape and first wait as the engine here, and the engine's HTTP client.",
        "- **B** signs the same envelope with `infraudit.signing` and POSTs it with the engine's "
        "headers and HTTP client from the driver process itself; *+ SQL read* also loads URL "
        "and sealed secret from the store per delivery, as the engine's activity does.",
        f"- **C** is `bench/celery_app.py`: one task per delivery with `autoretry_for`, "
        "`retry_backoff` (1 s, 2 s), `max_retries=2` (three attempts), `acks_late`, no result "
        "backend; the publisher builds the envelope, each attempt signs and POSTs it. Its worker "
        "uses the threads pool with 100 threads (POSTs are I/O-bound; the engine's worker also "
        "runs its POSTs concurrently in one process). The broker is the machine's Redis on "
        f"127.0.0.1:6379 (database `{o.redis_url.rsplit('/', 1)[-1]}`, a queue named for the "
        "run, deleted after); for C the *server* columns are the Redis process.",
        "- **D, E, F** run the real `infraudit worker` and `infraudit api` commands (settings "
        "below): whatever the engine's processes do is what is measured. D starts deliveries "
        "with `infraudit.client.deliver_once`; E and F publish through `POST /v1/events` for an "
        f"org with {o.api_endpoints} endpoint(s) per event, with the API's per-org rate limit "
        "lifted so that it does not refuse the load.",
        "- Retries: every row that retries waits 1 s before its second attempt (the engine's "
        "default is 5 minutes; `INFRAUDIT_RETRY_INITIAL_INTERVAL=1` here), so the failure mix "
        "ends within the run.",
        "",
        "Load shapes:",
        "",
        f"- **Drain**: {o.drain:,} deliveries requested at once (at most 64 submissions in "
        "flight); deliveries/s is first request to last receipt, and latency includes the wait "
        "behind the others.",
        f"- **Open-loop ladder**: {ladder} deliveries/s offered for {o.step_seconds:g} s each. "
        "Submission *i* is scheduled at start + *i* / rate and latency runs from that "
        "scheduled time, so a publisher that falls behind shows in the latency (and in *max "
        "send lag*) instead of quietly lowering the load. A row stops climbing after a step "
        f"whose p99 passed {SATURATED_MS / 1000:g} s or that lost deliveries.",
        f"- **Failure mix**: {o.failure_rate:g} deliveries/s for {o.failure_seconds:g} s; the "
        f"first attempt of {FAIL_SHARE}% of deliveries is answered 500 and of another "
        f"{SLOW_SHARE}% after {SLOW_SECONDS:g} s (a hash of the delivery id decides, so every "
        "row gets the same share). Receipt is the arrival of the attempt answered 2xx, so a "
        "retried delivery's latency includes its backoff; a slow one's arrival is before its "
        f"{SLOW_SECONDS:g} s answer, whose cost shows as a held worker slot.",
        f"- **Stored work**: the delivery log (`GET /v1/webhooks/{{id}}/deliveries`, 100 rows, "
        f"{o.log_requests} requests one after another) and `POST /v1/events` "
        f"({o.api_rate:g}/s for {o.api_seconds:g} s) with {stored} closed deliveries in the "
        "namespace. Most of them are real (every engine row leaves its deliveries there); the "
        "rest are *seeded*: started with the engine's own `deliver_once`, so with a real "
        "delivery's input, memo and search attributes, on a task queue whose worker "
        "(`bench/workers.py seed`) completes them at once without a POST. Seeding stops when "
        f"the run's budget ({o.budget_minutes:g} minutes) would be exceeded; the table says so.",
        f"- **Fan-out**: one event through the API to {o.fanout:,} endpoints, timed until the "
        "last delivery arrived.",
        "",
        "Columns:",
        "",
        "- *Accept*: how long the submission took to return: `start_workflow` (A, D), the "
        "enqueue (C), the POST itself (B), the API's answer (E, F).",
        "- *CPU ms/delivery*: CPU of each process from /proc, before the first request and after "
        "the processes went quiet again, per delivered delivery. *Server* is the Temporal dev "
        "server's process tree (Redis for C), *worker* every worker process of the row, *API* "
        "`infraudit api`, *driver* this benchmark process, which is the publisher (it starts "
        "workflows, enqueues tasks or calls the API). *Total* is all of them: what one "
        "delivery costs, its publisher included.",
        "- *Peak RSS*: the highest resident memory sampled every 0.5 s while the row ran.",
        "- *History events*: `history_length` of a sample of the row's delivery workflows.",
        "- *Other load*: cores kept busy by processes this run did not start (from /proc/stat). "
        "Well above 0 means something else competed for the cores: do not trust that row.",
        "- One run, no repetitions: compare rows within a run, not across runs.",
    ]


def budget(run: Run) -> list[str]:
    """Where the run's time went, against the 15-minute budget."""
    o = run.options
    lines = [
        f"The issue's shapes do not fit 15 minutes on 2 cores as written (30 s per ladder step "
        f"for six rows alone is 15 minutes), so this run used {o.step_seconds:g} s steps, a "
        f"{o.failure_seconds:g} s failure mix on A, C, D and E (B does not retry, F would repeat "
        "E), and seeds stored work only as far as the budget allows. Time per section:",
        "",
        "| Section | Seconds |",
        "|---|--:|",
        *(f"| {name} | {seconds:,.0f} |" for name, seconds in run.sections),
        f"| **Total** | **{run.seconds:,.0f}** |",
    ]
    if run.seeded:
        lines += [
            "",
            f"Seeding stored {run.seeded:,} deliveries in {run.seed_seconds:,.0f} s, first "
            f"start to last close ({run.seeded / max(run.seed_seconds, 1e-9):,.0f}/s through "
            "this dev server). Levels it could not reach in the budget say so in *Stored "
            "work*; `--budget-minutes` gives it more time.",
        ]
    return lines


def render(run: Run, *, chart: Path, page: Path) -> str:
    """The whole page."""
    o = run.options
    quick = (
        [
            "> **Quick run** (`--quick`): every section at a tiny size to check the harness. "
            "These numbers are not measurements; run `make bench` for the report.",
            "",
        ]
        if o.quick
        else []
    )
    commands = [f"# {name}\n{command}" for name, command in run.commands]
    return "\n".join(
        [
            "# Benchmarks",
            "",
            *quick,
            "Generated by `make bench` (`.venv/bin/python -m bench`; flags: `python -m bench "
            "--help`, passed as `make bench BENCH_ARGS=...`); rerun it to refresh this page, the "
            "chart and the README's summary. `make bench BENCH_ARGS=--quick` runs every section "
            "at a tiny size in about 3 minutes, to check the harness, not to measure (into "
            "`build/bench-quick/`). It is not part of `make test`, and no test asserts on speed.",
            "",
            "## Headline",
            "",
            *_ratio_table(run),
            "",
            f"![Latency against offered rate]({_rel(chart, page)})",
            "",
            "## Targets of issue 8",
            "",
            *targets(run),
            "",
            "## What the numbers say",
            "",
            *findings(run),
            "",
            "## Scaling out on a Temporal cluster",
            "",
            *scaling_out(run),
            "",
            "## What stops the API targets",
            "",
            *api_limit(run),
            "",
            "## What was tried (issue 8)",
            "",
            *levers(),
            "",
            f"## Drain of {o.drain:,}",
            "",
            *_drain_table(run),
            "",
            "## Open-loop ladder",
            "",
            *_ladder_table(run),
            "",
            "## Failure mix",
            "",
            *_failure_table(run),
            "",
            "## Stored work",
            "",
            *_scale_table(run),
            "",
            *(["## Fan-out", "", *_fanout_table(run), ""] if run.fanout else []),
            "## Method",
            "",
            *method(run),
            "",
            "## Machine and versions",
            "",
            "| | |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in machine(run)),
            "",
            "Commands (settings of the engine's processes as environment variables):",
            "",
            "```",
            *commands,
            "```",
            "",
            "## Time budget",
            "",
            *budget(run),
            "",
        ]
    )


def readme_block(run: Run, *, report: Path, chart: Path, readme: Path) -> str:
    """The README's summary: headline ratios and the chart, with a link to the report."""
    quick = " (a `--quick` run: not a measurement)" if run.options.quick else ""
    lines = [
        README_START,
        f"Measured by `make bench` on {run.started_at:%Y-%m-%d}, {os.cpu_count()} cores, one "
        f"Temporal dev server{quick}; every row against the same receiver "
        f"([full report]({_rel(report, readme)})):",
        "",
        "| Comparison (drain) | Deliveries/s | CPU per delivery |",
        "|---|--:|--:|",
        *(f"| {w} | {t} | {c} |" for w, t, c, _ in ratios(run)),
        "",
        f"![Latency against offered rate]({_rel(chart, readme)})",
        README_END,
    ]
    return "\n".join(lines)


def update_readme(run: Run, readme: Path, *, report: Path, chart: Path) -> bool:
    """Replace the block between the README's bench markers; False when it has none (the run's
    report is written all the same: a missing marker must not waste 15 minutes of measuring)."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return False
    block = readme_block(run, report=report, chart=chart, readme=readme)
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    return True
