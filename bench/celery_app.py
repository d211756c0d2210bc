"""Baseline C: what a Python team would use instead of the engine, Celery on Redis.

One task per delivery, written the way Celery's documentation recommends for an unreliable
HTTP call: ``autoretry_for`` the failures, ``retry_backoff`` for exponential waits (1 s, then
2 s: the engine's bench policy waits 1 s, then 3 s), ``max_retries=2`` for the guide's three
attempts, and ``acks_late`` so a worker lost mid-task leaves the message for another. The
publisher builds the envelope once (as the engine's workflow does); each attempt signs it and
POSTs it with the engine's headers and 10 s timeout, on one pooled httpx client per process.
No result backend: a webhook sender does not wait for its tasks' return values.

The worker uses the threads pool (``-P threads``) with :data:`CONCURRENCY` threads: POSTs are
I/O-bound, the engine's worker also runs its POSTs concurrently in one process, and the pool
needs no monkey-patching (gevent) or one process per slot (prefork, which on 2 cores would cap
concurrency at a few slots or cost a process per POST in flight).

The broker is the Redis the machine runs on 127.0.0.1:6379, in its own database number and on
a queue name unique to the run (``BENCH_CELERY_BROKER``, ``BENCH_CELERY_QUEUE``), both set by
the driver for itself and for the worker it starts. Run the worker as
``python -m bench.celery_app``: it prints ``ready`` once it consumes the queue.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

import httpx
from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import worker_ready

from bench.signed import signed_headers

BROKER_VARIABLE = "BENCH_CELERY_BROKER"
QUEUE_VARIABLE = "BENCH_CELERY_QUEUE"
#: Redis database the bench uses: not 0, so nothing else on the Redis is touched.
DEFAULT_BROKER = "redis://127.0.0.1:6379/13"
#: Worker threads: enough for every slow (8 s) first attempt of the failure mix at once.
CONCURRENCY = 100
#: Seconds one POST attempt may take, as the engine's default policy.
HTTP_TIMEOUT = 10.0
TASK_NAME = "bench.deliver"


class ReceiverRefused(Exception):
    """The receiver answered something other than 2xx: Celery retries it."""


app = Celery("bench")
app.conf.update(
    broker_url=os.environ.get(BROKER_VARIABLE, DEFAULT_BROKER),
    task_default_queue=os.environ.get(QUEUE_VARIABLE, "bench"),
    task_ignore_result=True,
    task_acks_late=True,
    # Retried tasks wait in the worker as ETA tasks; prefetch must let enough of them in.
    worker_prefetch_multiplier=4,
    # No remote control or events: nothing but the run's own queue is written to Redis.
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_redirect_stdouts=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def configure(broker_url: str, queue: str) -> None:
    """Point this process's app at the run's broker database and queue (the driver's side)."""
    app.conf.update(broker_url=broker_url, task_default_queue=queue)


_local = threading.local()


def _http() -> httpx.Client:
    """One keep-alive client per worker thread (httpx's sync client is not shared safely)."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(follow_redirects=False, trust_env=False)
        _local.client = client
    return client


@app.task(
    name=TASK_NAME,
    acks_late=True,
    autoretry_for=(httpx.HTTPError, ReceiverRefused),
    retry_backoff=1,
    retry_backoff_max=1800,
    retry_jitter=False,
    max_retries=2,
)
def deliver(url: str, body: str, secret: str, event: str, delivery_id: str, webhook_id: str) -> int:
    """Sign and POST one delivery; a non-2xx or a transport error raises, so Celery retries.

    The secret travels in the message because the bench's Redis is local; a production task
    would load it per attempt, which baseline B's "+ SQL read" row prices.
    """
    content = body.encode()
    headers = signed_headers(
        content, secret=secret, event=event, delivery_id=delivery_id, webhook_id=webhook_id
    )
    response = _http().post(url, content=content, headers=headers, timeout=HTTP_TIMEOUT)
    if not response.is_success:
        raise ReceiverRefused(f"HTTP {response.status_code}")
    return response.status_code


@worker_ready.connect
def _say_ready(**_: Any) -> None:
    """Tell the driver (on stdout, which Celery leaves alone here) that the queue is consumed."""
    print("ready", flush=True)


def main() -> None:
    """Run one Celery worker on the run's queue with the threads pool.

    The bench runs as whatever user runs ``make bench`` (root in CI); Celery's warning about
    root is about pickle payloads, which this app does not accept (JSON only).
    """
    warnings.filterwarnings("ignore", category=SecurityWarning)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={CONCURRENCY}",
            f"--queues={app.conf.task_default_queue}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
