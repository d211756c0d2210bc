"""Queries over webhook endpoints: registration, lookup scoped to an org, fan-out pages.

The signing secret is sealed (:mod:`infraudit.store.secret_box`) before it is written, and leaves
the database through :func:`load_signing_target` only, opened with the keyring of the session's
``Database``; :func:`reseal_secrets` moves sealed secrets to the newest key without letting them
out. The models' other readers never touch ``Webhook.sealed_secret``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infraudit import ids
from infraudit.store.models import Org, Subscription, Webhook
from infraudit.store.secret_box import UnreadableSecret, keyring_of


@dataclass(frozen=True, slots=True)
class SigningTarget:
    """Where and how to send one delivery, as the activity needs it at send time; ``org_id``
    owns the endpoint (the activity sends only for deliveries started for that org).
    ``secret`` is None for a disabled endpoint: nothing is sent to it, so it is not opened."""

    url: str
    secret: str | None
    enabled: bool
    org_id: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An endpoint that receives an event: id and URL, never the secret."""

    webhook_id: str
    url: str


def _subscriptions(event_types: Iterable[str]) -> list[Subscription]:
    return [Subscription(event_type=t) for t in sorted(set(event_types))]


async def create_webhook(
    session: AsyncSession,
    *,
    org_id: str,
    url: str,
    event_types: Sequence[str],
    description: str = "",
) -> tuple[Webhook, str]:
    """Register an endpoint; returns it and its new secret (the one time the secret is shown).

    The row keeps the secret sealed under the session's newest key and bound to the new id.
    """
    webhook_id = ids.new_webhook_id()
    secret = ids.new_secret()
    webhook = Webhook(
        id=webhook_id,
        org_id=org_id,
        url=url,
        description=description,
        enabled=True,
        sealed_secret=keyring_of(session).seal(secret, webhook_id=webhook_id),
        subscriptions=_subscriptions(event_types),
    )
    session.add(webhook)
    await session.flush()
    return webhook, secret


async def get_webhook(session: AsyncSession, org_id: str, webhook_id: str) -> Webhook | None:
    """The org's endpoint, or None when it does not exist or belongs to another org."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None or webhook.org_id != org_id:
        return None
    return webhook


async def list_webhooks(session: AsyncSession, org_id: str) -> Sequence[Webhook]:
    """The org's endpoints, oldest first."""
    result = await session.scalars(
        select(Webhook).where(Webhook.org_id == org_id).order_by(Webhook.created_at, Webhook.id)
    )
    return result.all()


async def count_webhooks_locking_org(session: AsyncSession, org_id: str) -> int:
    """How many endpoints the org has, holding a write lock on its row until the transaction ends.

    For a cap on that number, so that two registrations at once cannot both see room for one
    more: the second waits for the lock and then counts the first one's endpoint. The lock is a
    no-op UPDATE of the org's row, which PostgreSQL turns into a row lock and SQLite into its
    one write lock. (``SELECT … FOR UPDATE`` would do on PostgreSQL only: SQLite ignores it, and
    Python's sqlite3 runs a SELECT before any write outside the transaction, so two counts could
    both read 99.)
    """
    await session.execute(update(Org).where(Org.id == org_id).values(id=Org.id))
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.org_id == org_id)
    )
    return count or 0


async def update_webhook(
    session: AsyncSession,
    webhook: Webhook,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Webhook:
    """Change the given fields; None leaves a field as it is."""
    if url is not None:
        webhook.url = url
    if description is not None:
        webhook.description = description
    if enabled is not None:
        webhook.enabled = enabled
    if event_types is not None:
        webhook.subscriptions = _subscriptions(event_types)
    await session.flush()
    await session.refresh(webhook)
    return webhook


async def delete_webhook(session: AsyncSession, webhook: Webhook) -> None:
    """Remove an endpoint; deliveries still retrying to it end at their next attempt."""
    await session.delete(webhook)
    await session.flush()


async def subscribers_page(
    session: AsyncSession,
    *,
    org_id: str,
    event_type: str,
    after_webhook_id: str | None,
    limit: int,
) -> list[Subscriber]:
    """One page of the org's enabled endpoints subscribed to ``event_type``, by id."""
    query = (
        select(Webhook.id, Webhook.url)
        .join(Subscription, Subscription.webhook_id == Webhook.id)
        .where(
            Webhook.org_id == org_id,
            Webhook.enabled.is_(True),
            Subscription.event_type == event_type,
        )
        .order_by(Webhook.id)
        .limit(limit)
    )
    if after_webhook_id is not None:
        query = query.where(Webhook.id > after_webhook_id)
    rows = await session.execute(query)
    return [Subscriber(webhook_id=row.id, url=row.url) for row in rows]


async def load_signing_target(session: AsyncSession, webhook_id: str) -> SigningTarget | None:
    """URL, secret (enabled endpoints only), state and owning org of an endpoint at send time;
    None when it was deleted.

    Raises :class:`~infraudit.store.secret_box.UnreadableSecret` when no key of the session's
    keyring opens the stored secret (its message names the webhook and key id, never a secret).
    """
    keyring = keyring_of(session)
    row = (
        await session.execute(
            select(Webhook.url, Webhook.sealed_secret, Webhook.enabled, Webhook.org_id).where(
                Webhook.id == webhook_id
            )
        )
    ).first()
    if row is None:
        return None
    # A disabled endpoint's delivery ends without sending, whatever the keys: its secret is not
    # opened, so a key removed since cannot turn that ending into retries.
    secret = keyring.open(row.sealed_secret, webhook_id=webhook_id) if row.enabled else None
    return SigningTarget(url=row.url, secret=secret, enabled=row.enabled, org_id=row.org_id)


@dataclass(frozen=True, slots=True)
class ResealPage:
    """What one page of :func:`reseal_secrets` did.

    ``unreadable`` says, per secret no key opened, which webhook and why (never the secret);
    ``last_webhook_id`` is where the next page starts, None when there is nothing after.
    """

    resealed: int
    unreadable: list[str]
    last_webhook_id: str | None


async def reseal_secrets(
    session: AsyncSession, *, after_webhook_id: str | None, limit: int
) -> ResealPage:
    """Seal again under the newest key the next ``limit`` secrets (by id) still under an older one.

    Used by ``infraudit secrets rotate``, one page per transaction, while the API and workers keep
    running: each row is replaced only if it still holds the value read (so a concurrent change
    or delete wins), and ``updated_at`` is kept, since the endpoint itself did not change.
    """
    keyring = keyring_of(session)
    query = (
        select(Webhook.id, Webhook.sealed_secret)
        .where(~Webhook.sealed_secret.startswith(keyring.current_prefix, autoescape=True))
        .order_by(Webhook.id)
        .limit(limit)
    )
    if after_webhook_id is not None:
        query = query.where(Webhook.id > after_webhook_id)
    rows = (await session.execute(query)).all()
    resealed = 0
    unreadable: list[str] = []
    for row in rows:
        try:
            secret = keyring.open(row.sealed_secret, webhook_id=row.id)
        except UnreadableSecret as err:
            unreadable.append(str(err))
            continue
        result = await session.execute(
            update(Webhook)
            .where(Webhook.id == row.id, Webhook.sealed_secret == row.sealed_secret)
            .values(
                sealed_secret=keyring.seal(secret, webhook_id=row.id),
                updated_at=Webhook.updated_at,
            )
            .execution_options(synchronize_session=False)
        )
        # An UPDATE's result is a CursorResult, which counts the rows; the stubs say only Result.
        resealed += cast(CursorResult[Any], result).rowcount
    return ResealPage(
        resealed=resealed,
        unreadable=unreadable,
        last_webhook_id=rows[-1].id if len(rows) == limit else None,
    )
