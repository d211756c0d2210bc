"""Readiness checks shared by the API's ``/readyz`` and the worker's: each dependency at once,
each within a deadline, each answered ``ok`` or ``unavailable: …``.

A hung dependency makes a probe fail within the deadline instead of hanging it. The text says
which dependency and the error's kind only: an error's message can hold connection details
(addresses, user names), and probes answer anyone who can reach them. :class:`NotReady` is the
exception whose message is ours and is shown (``unavailable: not connected yet``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy import text

from infraudit.store.db import Database

#: A check: returns when the dependency answers, raises when it does not.
Check = Callable[[], Awaitable[None]]

OK = "ok"


class NotReady(Exception):
    """A dependency is known not to be there yet; the message says so in a few words."""


async def check_all(checks: Mapping[str, Check], *, within: float) -> dict[str, str]:
    """Run ``checks`` at once, each given ``within`` seconds: ``{name: "ok" | "unavailable: …"}``
    in the order of ``checks``."""

    async def run(check: Check) -> str:
        try:
            async with asyncio.timeout(within):
                await check()
        except NotReady as err:
            return f"unavailable: {err}"
        except Exception as err:  # refused, timed out, any driver or RPC error: not ready
            return f"unavailable: {type(err).__name__}"
        return OK

    states = await asyncio.gather(*(run(check) for check in checks.values()))
    return dict(zip(checks, states, strict=True))


def all_ok(states: Mapping[str, str]) -> bool:
    """Whether every dependency answered."""
    return all(state == OK for state in states.values())


async def database_answers(db: Database) -> None:
    """The store runs a query."""
    async with db.session() as session:
        await session.execute(text("SELECT 1"))
