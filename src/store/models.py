"""SQLAlchemy models: orgs, their API keys, their webhook endpoints and subscriptions.

Subscriptions are rows, not a JSON column, so "endpoints of org O subscribed to type T" is an
indexed query on both SQLite and PostgreSQL, which is what fan-out to 10,000 endpoints needs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Dialect, ForeignKey, Index, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that reads back timezone-aware UTC on SQLite too (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the registrations schema."""


class Org(Base):
    """A customer organisation; everything else is scoped to one."""

    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key of an org; only the SHA-256 of the key is kept."""

    __tablename__ = "api_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Webhook(Base):
    """A registered endpoint.

    ``sealed_secret`` (column ``secret``) holds the signing secret sealed by
    :mod:`infraudit.store.secret_box` (``v1:<key id>:<ciphertext>``), never the secret itself;
    it is written by ``webhooks.create_webhook``, opened only by ``webhooks.load_signing_target``
    and re-sealed only by ``webhooks.reseal_secrets``.
    """

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sealed_secret: Mapped[str] = mapped_column("secret", Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    subscriptions: Mapped[list[Subscription]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="Subscription.event_type"
    )

    __table_args__ = (Index("ix_webhooks_org_id_id", "org_id", "id"),)

    @property
    def event_types(self) -> list[str]:
        """The subscribed event types, sorted."""
        return [s.event_type for s in self.subscriptions]


class Subscription(Base):
    """One (endpoint, event type) pair."""

    __tablename__ = "webhook_event_types"

    webhook_id: Mapped[str] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True
    )
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_webhook_event_types_type", "event_type", "webhook_id"),)
