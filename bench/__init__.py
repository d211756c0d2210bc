"""``make bench``: what one webhook delivery costs on our engine, next to the floor and ceiling.

The engine's speed only means something beside two baselines measured in the same run on the
same machine: bare Temporal (one workflow, one activity, one POST) is the floor every durable
delivery pays; a plain asyncio loop of signed POSTs is the ceiling without durability. Run with
``.venv/bin/python -m bench --help``; the run rewrites ``docs/benchmarks.md``.
"""
