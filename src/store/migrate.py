"""Create or upgrade the schema to the newest migration; safe to run on every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from infraudit.store.db import ensure_sqlite_folder, sync_url
from infraudit.store.secret_box import Keyring

_SCRIPTS = Path(__file__).parent / "migrations"
#: Where a migration finds the keyring (``context.config.attributes[KEYRING_ATTRIBUTE]``).
KEYRING_ATTRIBUTE = "keyring"


def upgrade(database_url: str, keyring: Keyring | None = None, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (the newest schema by default).

    ``keyring`` seals signing secrets still stored in plain text (migration 0002); without one,
    an upgrade that finds such secrets stops with a message and changes nothing.
    """
    url = sync_url(database_url)
    ensure_sqlite_folder(url)
    config = Config()
    config.attributes[KEYRING_ATTRIBUTE] = keyring
    config.set_main_option("script_location", str(_SCRIPTS))
    # Alembic reads options through configparser, which treats "%" as interpolation.
    config.set_main_option(
        "sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%")
    )
    command.upgrade(config, revision)
