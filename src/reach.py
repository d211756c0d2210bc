"""Waiting at start for Temporal and the database, with backoff and one log line per try.

A worker or API started before what it depends on (a deploy that starts everything at once, a
database restarting) neither dies with a traceback nor hammers the server: it says in one line
what it cannot reach and why, and tries again after 1, 2, 4, ... seconds, at most
:data:`LONGEST_WAIT` apart, for as long as it runs. Stopping the process cancels the wait.

The lines hold no credentials: the database is named by its URL with the password hidden, and
an error is told by its type and the first line of its text, the password removed as well.
Errors that do not mean "not answering" (a wrong namespace, a bug) are raised, not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from temporalio.client import Client

from infraudit import temporal
from infraudit.config import Settings
from infraudit.store.db import OUTAGE_ERRORS, Database, shown_url

log = logging.getLogger(__name__)

#: Seconds before the second try; each later wait doubles, up to :data:`LONGEST_WAIT`.
FIRST_WAIT = 1.0
LONGEST_WAIT = 30.0

T = TypeVar("T")


async def until_answers(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    down: Callable[[Exception], bool],
    *,
    hidden: str | None = None,
) -> T:
    """``attempt()``'s result, trying again with backoff while it fails with an error that
    ``down`` says means "``what`` does not answer"; other errors are raised.

    ``what`` names the dependency in the log lines (no credentials in it); ``hidden`` is a
    text to keep out of them should an error quote it (a password).
    """
    wait = FIRST_WAIT
    failed = 0
    while True:
        try:
            result = await attempt()
        except Exception as err:
            if not down(err):
                raise
            failed += 1
            log.warning("cannot reach %s (%s); next try in %g s", what, reason(err, hidden), wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
            continue
        if failed:
            log.info("reached %s after %d failed tries", what, failed)
        return result


def reason(err: BaseException, hidden: str | None = None) -> str:
    """``Type: first line of the text`` of ``err`` (a driver's error rather than SQLAlchemy's
    wrapper, which adds the statement and a link), without ``hidden``."""
    cause = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    lines = str(cause).strip().splitlines()
    told = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    return told.replace(hidden, "***") if hidden else told


def temporal_down(err: Exception) -> bool:
    """Whether ``err`` from connecting to or calling Temporal means it does not answer."""
    return isinstance(err, RuntimeError | TimeoutError) or temporal.is_outage(err)


async def temporal_prepared(settings: Settings) -> Client:
    """A worker's client, once Temporal answers and its namespace is prepared."""

    async def connect_and_prepare() -> Client:
        client = await temporal.connect(settings)
        await temporal.prepare(client, settings)
        return client

    return await until_answers(
        f"Temporal at {settings.temporal_address}", connect_and_prepare, temporal_down
    )


async def database(db: Database) -> None:
    """Return once ``db`` answers a ``SELECT 1``."""

    async def select_one() -> None:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    await until_answers(
        f"the database at {shown_url(db.url)}",
        select_one,
        lambda err: isinstance(err, OUTAGE_ERRORS),
        hidden=db.url.password or _query_password(db),
    )


def _query_password(db: Database) -> str | None:
    """A password given in the URL's query string (``?password=...``), which drivers accept."""
    value = db.url.query.get("password")
    return value if isinstance(value, str) else None
