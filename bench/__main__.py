"""``python -m bench`` (``make bench``): run every row once, rewrite the report and the chart.

The defaults fit one run in 15 minutes on a 2-core machine; ``--quick`` runs every row and
section at a tiny size (about 3 minutes) to check that the harness works, not to measure, and
writes into ``build/bench-quick/`` so that it never replaces the real report.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

from bench.chart import draw
from bench.procs import REPO
from bench.report import render, update_readme
from bench.run import Options, run

#: Where ``--quick`` writes its report, chart and README copy (``build/`` is not committed).
QUICK_FOLDER = REPO / "build" / "bench-quick"


def parse(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    """Options and output paths from the command line; flags given override ``--quick``."""
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="every row at a tiny size: checks the harness only"
    )
    parser.add_argument("--drain", type=int, help=f"deliveries per drain (default {d.drain})")
    parser.add_argument(
        "--ladder",
        type=float,
        nargs="+",
        help="offered deliveries/s of the open-loop steps "
        f"(default {' '.join(f'{r:g}' for r in d.ladder)})",
    )
    parser.add_argument(
        "--step-seconds", type=float, help=f"seconds per ladder step (default {d.step_seconds:g})"
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        help=f"deliveries/s offered in the failure mix (default {d.failure_rate:g})",
    )
    parser.add_argument(
        "--failure-seconds",
        type=float,
        help=f"seconds the failure mix is offered (default {d.failure_seconds:g})",
    )
    parser.add_argument(
        "--endpoints", type=int, help=f"endpoints of rows A-D's deliveries (default {d.endpoints})"
    )
    parser.add_argument(
        "--api-endpoints",
        type=int,
        help=f"endpoints per event published through the API in E/F (default {d.api_endpoints})",
    )
    parser.add_argument(
        "--fanout",
        type=int,
        help=f"endpoints of the one-event fan-out, 0 skips (default {d.fanout})",
    )
    parser.add_argument(
        "--stored",
        type=int,
        nargs="+",
        help="levels of closed deliveries stored for the API and delivery-log latency "
        f"(default {' '.join(map(str, d.stored))})",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        help=f"seeding of stored work stops in time for this (default {d.budget_minutes:g})",
    )
    parser.add_argument("--redis-url", help=f"Celery's broker (default {d.redis_url})")
    parser.add_argument(
        "--output", type=Path, help="report path (default docs/benchmarks.md; quick: build/)"
    )
    parser.add_argument(
        "--chart", type=Path, help="chart path (default docs/img/bench-latency.png; quick: build/)"
    )
    parser.add_argument(
        "--readme",
        help="README whose benchmark block is rewritten, '' for none (default README.md; "
        "quick: a copy in build/)",
    )
    args = parser.parse_args(argv)
    options = Options.small() if args.quick else Options()
    given = {
        "drain": args.drain,
        "ladder": tuple(args.ladder) if args.ladder else None,
        "step_seconds": args.step_seconds,
        "failure_rate": args.failure_rate,
        "failure_seconds": args.failure_seconds,
        "endpoints": args.endpoints,
        "api_endpoints": args.api_endpoints,
        "fanout": args.fanout,
        "stored": tuple(sorted(args.stored)) if args.stored else None,
        "budget_minutes": args.budget_minutes,
        "redis_url": args.redis_url,
    }
    options = replace(options, **{k: v for k, v in given.items() if v is not None})
    # A quick run checks the whole path, files included, without touching the real report.
    folder = QUICK_FOLDER if args.quick else REPO
    args.output = args.output or folder / "docs" / "benchmarks.md"
    args.chart = args.chart or folder / "docs" / "img" / "bench-latency.png"
    if args.readme is None:
        args.readme = str(folder / "README.md")
        if args.quick:
            QUICK_FOLDER.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / "README.md", args.readme)
    return options, args


def main(argv: list[str] | None = None) -> None:
    """Measure, then write the report, the chart and the README's benchmark block."""
    options, args = parse(argv)
    result = asyncio.run(run(options))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    draw(result, args.chart)
    args.output.write_text(render(result, chart=args.chart, page=args.output))
    print(f"wrote {args.output} and {args.chart}")
    if args.readme:
        readme = Path(args.readme)
        if update_readme(result, readme, report=args.output, chart=args.chart):
            print(f"updated the benchmark block of {readme}")
        else:
            print(f"warning: {readme} has no benchmark block (bench:start/bench:end) to update")


if __name__ == "__main__":
    main()
