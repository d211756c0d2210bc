"""The engine's long-lived processes as commands run them: the worker and the API.

``infraudit worker`` and ``python worker.py`` are one entry point (:func:`worker_main`), so both
check their configuration, log and stop the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from infraudit import logs
from infraudit.cli import stack
from infraudit.cli.startup import fail, load_settings, require_keyring
from infraudit.config import Settings
from infraudit.ops_http import ListenError, check_free
from infraudit.worker import run_worker

log = logging.getLogger(__name__)


#: Seconds a stopping API lets requests under way finish after it stopped accepting new ones
#: (uvicorn's default waits forever). A request waits on Temporal at most the RPC deadline
#: (``INFRAUDIT_TEMPORAL_RPC_TIMEOUT``, 2 s) per call; 8 s stays inside the 10 s an orchestrator
#: gives by default before SIGKILL (Docker's ``stop_grace_period``).
API_SHUTDOWN_GRACE_SECONDS = 8


def worker_main() -> None:
    """Run one worker until SIGINT/SIGTERM; exit 2 in one line when misconfigured."""
    settings = load_settings()
    require_keyring(settings)
    stack.follow_supervisor()
    logs.setup(settings)
    try:
        asyncio.run(serve(settings))
    except ListenError as err:  # INFRAUDIT_WORKER_HTTP_PORT taken: one line, no traceback
        fail(str(err))


def api_main() -> None:
    """Serve the registration API with uvicorn on INFRAUDIT_API_HOST:INFRAUDIT_API_PORT."""
    settings = load_settings()
    require_keyring(settings)
    stack.follow_supervisor()
    import uvicorn

    from infraudit.api import metrics
    from infraudit.api.app import create_app

    if settings.api_metrics_port is not None:
        try:
            check_free(settings.api_metrics_host, settings.api_metrics_port, what=metrics.WHAT)
        except ListenError as err:  # taken: one line here, not a traceback from the lifespan
            fail(str(err))
    logs.setup(settings)
    # uvicorn applies the same setup again rather than its own (colours, a handler per logger).
    uvicorn.run(
        create_app(settings, metrics=metrics.for_process(settings)),
        host=settings.api_host,
        port=settings.api_port,
        log_config=logs.config(settings),
        timeout_graceful_shutdown=API_SHUTDOWN_GRACE_SECONDS,
    )


async def serve(settings: Settings) -> None:
    """Run the worker until SIGINT/SIGTERM, then shut it down gracefully instead of dying mid-POST.

    Cancelling :func:`infraudit.worker.run_worker` is temporalio's graceful shutdown
    (in-flight attempts get ``graceful_shutdown_timeout`` to finish); a bare KeyboardInterrupt
    or the default SIGTERM would kill the process and leave its POSTs to be sent again. Both
    worker entry points run it (:func:`worker_main`).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(run_worker(settings))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        stopping.cancel()
        running.result()
        return
    log.info("worker stopping: letting attempts under way finish")
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
