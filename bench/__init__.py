"""``make bench``: what one webhook delivery costs on our engine, beside its competitors.

The engine's speed only means something beside baselines measured in the same run, on the same
machine, against the same receiver: bare Temporal (one workflow, one activity) is the floor every
durable delivery on Temporal pays; a plain asyncio loop of signed POSTs is the ceiling without
durability; Celery on Redis is what a Python team would build instead. The engine is measured
started directly, through its API, and with two workers. Run ``.venv/bin/python -m bench --help``
for the flags; a run rewrites ``docs/benchmarks.md``, its chart and the README's summary.
"""
