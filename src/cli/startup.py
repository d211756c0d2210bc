"""What every process command does first: read the settings and keys, or exit in one line.

A misconfigured process says what is wrong (exit 2) instead of printing a traceback, whether it
was started as ``infraudit <command>`` or as ``python worker.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import pydantic
import typer

from infraudit.config import Settings, get_settings

if TYPE_CHECKING:
    from infraudit.store.secret_box import Keyring


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``: errors never end in a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """The settings, or a readable message (exit 2) when an ``INFRAUDIT_*`` value is invalid."""
    try:
        return get_settings()
    except pydantic.ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        fail(f"invalid INFRAUDIT_* configuration: {problems}", 2)


def require_keyring(settings: Settings) -> Keyring:
    """The keyring of ``INFRAUDIT_SECRET_KEYS``, or exit 2 with one line when it is missing or
    malformed. Processes that seal or open secrets call it first, so none starts without it.
    """
    from infraudit.store.secret_box import Keyring, SecretKeyError

    try:
        return Keyring.from_settings(settings)
    except SecretKeyError as err:
        fail(str(err), 2)


def configured_keyring(settings: Settings) -> Keyring | None:
    """The keyring when ``INFRAUDIT_SECRET_KEYS`` is set (exit 2 if malformed), else None."""
    return None if settings.secret_keys is None else require_keyring(settings)
