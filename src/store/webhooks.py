"""Queries over webhook endpoints: registration, lookup scoped to an org, fan-out pages.

The signing secret leaves the database through :func:`load_signing_target` only; the models'
other readers never touch ``Webhook.secret``. (A later change encrypts it at rest, here.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infraudit import ids
from infraudit.store.models import Subscription, Webhook


@dataclass(frozen=True, slots=True)
class SigningTarget:
    """Where and how to send one delivery, as the activity needs it at send time."""

    url: str
    secret: str
    enabled: bool


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
    """Register an endpoint; returns it and its new secret (the one time the secret is shown)."""
    secret = ids.new_secret()
    webhook = Webhook(
        id=ids.new_webhook_id(),
        org_id=org_id,
        url=url,
        description=description,
        enabled=True,
        secret=secret,
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
    """URL, secret and state of an endpoint at send time; None when it was deleted."""
    row = (
        await session.execute(
            select(Webhook.url, Webhook.secret, Webhook.enabled).where(Webhook.id == webhook_id)
        )
    ).first()
    if row is None:
        return None
    return SigningTarget(url=row.url, secret=row.secret, enabled=row.enabled)

