"""Caps and rate limits per org (and per webhook, for test pings): 409 and 429 with Retry-After.

Why these defaults (the settings are in :mod:`infraudit.config`; docs/api.md lists them):

- **100 webhooks per org** (``max_webhooks_per_org``). Each webhook subscribed to an event type
  is one delivery workflow per event, so the cap bounds what one publish fans out to. Stripe
  allows 16 endpoints per account and GitHub 20 webhooks per event per repository or org; 100 is
  room for an org that gives every team or region its own endpoint. The fan-out pages scale to
  10,000 endpoints, so an operator can raise it for a customer who needs more.
- **10 events per second per org, bursts of 100** (``events_per_second``, ``event_burst``).
  The engine drains about 40 deliveries per second on two cores (docs/benchmarks.md), shared by
  every org: without a rate, one org's runaway producer delays everyone's webhooks. A drift scan
  that finds a hundred resources at once still publishes them without a pause; a steady stream
  above 10/s (860,000 events a day) is a bug or a job for a direct Temporal starter
  (docs/workflows.md), which this limit does not see.
- **5 test pings per webhook per minute** (``pings_per_minute``): a person clicking "Test"
  while fixing their receiver; each ping is a real delivery with up to three attempts.
- **60 webhook creates, updates and deletes per org per minute** (``webhook_writes_per_minute``):
  a script provisioning 60 endpoints runs at once, then one a second; registrations are rare.

Rate limits are token buckets: a bucket holds up to ``burst`` tokens and regains ``rate`` a
second; a request takes one or is refused with ``Retry-After``, the whole seconds until one is
back. The ``limits`` package offers fixed and moving windows instead, which either let twice
the rate through at a window's edge or refuse a burst the sustained rate would allow; a bucket
gives a caller exactly the two numbers above to plan with.

The buckets live in this API process's memory: N API processes behind a load balancer admit up
to N times each rate, and a restart refills them. The webhook cap is counted in the database, so
it holds across processes. A request refused with 429 costs no token. A webhook change
takes its token before any other check, so a flood of changes that fail later (a bad URL, a
404) is throttled too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from infraudit.api.errors import ApiError
from infraudit.config import Settings
from infraudit.store import webhooks

#: Buckets kept before full ones (the same as none) are dropped; bounds memory per process.
_PRUNE_AT = 10_000


class TokenBuckets:
    """One token bucket per key (an org id, a webhook id), all of one size and rate.

    ``rate``: tokens regained a second; ``burst``: tokens a bucket holds at most (a new one is
    full); ``clock``: seconds, monotonic (a test passes its own).
    """

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._prune_at = _PRUNE_AT

    def __len__(self) -> int:
        """How many keys have a bucket in memory (at most those active in the last
        ``burst / rate`` seconds, once there are ten thousand)."""
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token of ``key``'s bucket: 0 when taken, else the seconds until one is back.

        Never awaits, so concurrent requests of one event loop cannot both take the last token.
        """
        now = self.clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget buckets that are full again: a new one starts full, so nothing changes."""
        self._buckets = {
            key: (tokens, then)
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate < self.burst
        }
        self._prune_at = max(_PRUNE_AT, 2 * len(self._buckets))


def _take(buckets: TokenBuckets, key: str, *, field: str, limit: str) -> None:
    """Take a token or raise the 429 that says which ``limit`` and when to come back."""
    wait = buckets.take(key)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise ApiError(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit: {limit}; nothing was done, retry in {retry_after} s",
            field=field,
            headers={"Retry-After": str(retry_after)},
        )


class Quotas:
    """The API process's rate limits, made from its settings once (in the app's lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events = TokenBuckets(rate=settings.events_per_second, burst=settings.event_burst)
        self.pings = TokenBuckets(
            rate=settings.pings_per_minute / 60, burst=settings.pings_per_minute
        )
        self.webhook_writes = TokenBuckets(
            rate=settings.webhook_writes_per_minute / 60, burst=settings.webhook_writes_per_minute
        )

    def take_event(self, org_id: str) -> None:
        """One ``POST /v1/events`` of the org, or a 429 naming ``org``."""
        s = self.settings
        _take(
            self.events,
            org_id,
            field="org",
            limit=f"{s.events_per_second:g} events per second per org, in bursts of at most "
            f"{s.event_burst}",
        )

    def take_ping(self, webhook_id: str) -> None:
        """One test ping of the webhook, or a 429 naming ``webhook_id``."""
        _take(
            self.pings,
            webhook_id,
            field="webhook_id",
            limit=f"{self.settings.pings_per_minute} test pings per webhook per minute",
        )

    def take_webhook_write(self, org_id: str) -> None:
        """One webhook create, update or delete of the org, or a 429 naming ``org``."""
        _take(
            self.webhook_writes,
            org_id,
            field="org",
            limit=f"{self.settings.webhook_writes_per_minute} webhook creates, updates and "
            "deletes per org per minute",
        )

    async def check_webhook_cap(self, session: AsyncSession, org_id: str) -> None:
        """409 naming ``org`` when the org already has ``max_webhooks_per_org`` webhooks.

        409, not 422: the request is valid, the org's state refuses it, and deleting a webhook
        makes the same request succeed. The count holds the org's row until the transaction
        ends, so concurrent registrations cannot together pass the cap.
        """
        cap = self.settings.max_webhooks_per_org
        if await webhooks.count_webhooks_locking_org(session, org_id) >= cap:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                f"this org has {cap} webhooks, the most it may have; delete one to register "
                "another",
                field="org",
            )
