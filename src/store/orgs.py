"""Orgs and their API keys. Keys are random, shown once, and stored as SHA-256 hashes."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from infraudit import ids
from infraudit.store.models import ApiKey, Org


async def ensure_org(session: AsyncSession, org_id: str) -> Org:
    """The org with this id, created when new."""
    if not re.fullmatch(ids.ORG_ID_PATTERN, org_id):
        raise ValueError(
            "org id must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    org = await session.get(Org, org_id)
    if org is None:
        org = Org(id=org_id)
        session.add(org)
        await session.flush()
    return org


async def create_api_key(session: AsyncSession, org_id: str) -> str:
    """A new API key for the org (created if needed); the returned key is not stored."""
    await ensure_org(session, org_id)
    key = ids.new_api_key()
    session.add(ApiKey(key_hash=ids.hash_api_key(key), org_id=org_id, prefix=key[:12]))
    await session.flush()
    return key


async def org_for_api_key(session: AsyncSession, key: str) -> str | None:
    """The org a key belongs to, or None for an unknown key."""
    row = await session.get(ApiKey, ids.hash_api_key(key))
    return row.org_id if row else None
