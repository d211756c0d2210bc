"""Create or upgrade the schema to the newest migration; safe to run on every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from infraudit.store.db import ensure_sqlite_folder, sync_url

_SCRIPTS = Path(__file__).parent / "migrations"


def upgrade(database_url: str) -> None:
    """Bring the database at ``database_url`` to the newest schema."""
    url = sync_url(database_url)
    ensure_sqlite_folder(url)
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    # Alembic reads options through configparser, which treats "%" as interpolation.
    config.set_main_option(
        "sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%")
    )
    command.upgrade(config, "head")
