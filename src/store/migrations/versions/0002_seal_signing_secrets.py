"""Seal signing secrets at rest: every plain ``whsec_`` secret of schema 0001 is encrypted.

The column keeps its name and type (``webhooks.secret``, text); only its content changes, from the
plain secret to ``v1:<key id>:<ciphertext>`` made by :mod:`infraudit.store.secret_box` with the
keyring that ``migrate.upgrade`` is given (``infraudit db upgrade`` passes the one of
``INFRAUDIT_SECRET_KEYS``). Rows already sealed are left alone, so the step is idempotent; with
plain rows present and no keyring it stops before writing anything, and the database stays at 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from infraudit.store.migrate import KEYRING_ATTRIBUTE
from infraudit.store.secret_box import KEYS_VARIABLE, VERSION, Keyring, SecretKeyError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Rows sealed per batch (bounded memory on large stores).
_PAGE = 500
_webhooks = sa.table("webhooks", sa.column("id", sa.String), sa.column("secret", sa.Text))


def upgrade() -> None:
    bind = op.get_bind()
    plain = sa.select(_webhooks.c.id, _webhooks.c.secret).where(
        ~_webhooks.c.secret.startswith(f"{VERSION}:")
    )
    count = bind.execute(sa.select(sa.func.count()).select_from(plain.subquery())).scalar()
    if not count:
        return
    keyring = context.config.attributes.get(KEYRING_ATTRIBUTE)
    if not isinstance(keyring, Keyring):
        raise SecretKeyError(
            f"{count} webhook signing secret(s) are stored in plain text and must be encrypted: "
            f"set {KEYS_VARIABLE} and run the upgrade again (nothing was changed)"
        )
    after = ""
    while True:
        rows = bind.execute(
            plain.where(_webhooks.c.id > after).order_by(_webhooks.c.id).limit(_PAGE)
        ).all()
        for webhook_id, secret in rows:
            bind.execute(
                _webhooks.update()
                .where(_webhooks.c.id == webhook_id)
                .values(secret=keyring.seal(secret, webhook_id=webhook_id))
            )
        if len(rows) < _PAGE:
            return
        after = rows[-1][0]


def downgrade() -> None:
    """Not reversible on purpose: undoing it would write every signing secret in plain text."""
    raise NotImplementedError(
        "0002 is not reversible: it would write signing secrets back in plain text; "
        "restore the backup taken before the upgrade instead"
    )
