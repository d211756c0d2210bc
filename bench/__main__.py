"""``python -m bench``: run every row once and rewrite docs/benchmarks.md.

Defaults keep a run under about five minutes on a 2-core machine; the flags scale it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.procs import REPO
from bench.report import render
from bench.run import Options, run


def parse(argv: list[str] | None = None) -> tuple[Options, Path]:
    """Options and output path from the command line."""
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-n", type=int, default=defaults.n, help="deliveries per burst row")
    parser.add_argument(
        "--paced-n", type=int, default=defaults.paced_n, help="deliveries per paced row"
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="deliveries/s offered in paced rows"
    )
    parser.add_argument(
        "--endpoints", type=int, default=defaults.endpoints, help="endpoints per published event"
    )
    parser.add_argument(
        "--fanout", type=int, default=defaults.fanout, help="endpoints of the fan-out row (0: skip)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(defaults.concurrency),
        help="concurrent POSTs of baseline B's burst rows",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="report path"
    )
    args = parser.parse_args(argv)
    options = Options(
        n=args.n,
        paced_n=args.paced_n,
        rate=args.rate,
        endpoints=args.endpoints,
        fanout=args.fanout,
        concurrency=tuple(args.concurrency),
    )
    return options, args.output


def main(argv: list[str] | None = None) -> None:
    """Measure, then write the report."""
    options, output = parse(argv)
    result = asyncio.run(run(options))
    output.write_text(render(result))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
