"""Engines and sessions from one database URL, for SQLite (embedded) and PostgreSQL.

Users write plain URLs (``sqlite:///path``, ``postgresql://…``); the async engine needs an async
driver and the migrations a sync one, so both spellings are derived here.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from infraudit.store.secret_box import SESSION_INFO_KEY, Keyring

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}
#: Seconds a new PostgreSQL connection may take (libpq counts whole seconds). Without it an
#: unreachable server holds a request for the operating system's TCP timeout, minutes; with
#: it the request fails fast and the API answers 503.
POSTGRES_CONNECT_TIMEOUT = 3
#: Errors that mean the database did not answer (server down, unreachable or unknown host,
#: connection refused or lost, pool exhausted, SQLite file unreadable or locked), not that a
#: query is wrong: the API answers them 503 and a process starting up waits and tries again.
#: SQLAlchemy wraps what the drivers raise, socket errors included (a refused port, an unknown
#: host, a directory as the SQLite file all come as OperationalError), so no OSError is listed.
OUTAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)


def shown_url(url: URL | str) -> str:
    """``url`` as logs and messages may show it: the password hidden and the query string left
    out, since drivers also take credentials there (``?password=...``, ``?sslkey=...``)."""
    return make_url(url).set(query={}).render_as_string(hide_password=True)


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.set(drivername=drivers[backend])


def async_url(url: str) -> URL:
    """The URL with the async driver this package uses."""
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str) -> URL:
    """The URL with the sync driver the migrations use."""
    return _with_driver(url, _SYNC_DRIVERS)


def ensure_sqlite_folder(url: URL) -> None:
    """Create a SQLite file's folder (mode 0700) and the empty file (0600) when missing.

    The embedded default then works on a fresh checkout, and only the owner can read the
    registrations (API key hashes, sealed secrets, endpoint URLs that may hold credentials).
    SQLite gives the ``-wal`` and ``-shm`` files the database file's mode. What exists keeps
    its mode: ``infraudit up`` tightens its own state folder (:mod:`infraudit.cli.stack`).
    """
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the API read while the worker reads; foreign keys make deletes cascade."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """One async engine and its session factory; create one per process.

    ``keyring`` (from ``Keyring.from_settings``) rides on every session it makes, so the store
    functions that seal and open signing secrets find it there; without one they refuse to.
    """

    def __init__(self, url: str, keyring: Keyring | None = None) -> None:
        self.url = async_url(url)
        ensure_sqlite_folder(self.url)
        sqlite = self.url.get_backend_name() == "sqlite"
        # A ping guards against server-side disconnects; a SQLite file has none, and the ping
        # costs about a millisecond of CPU on every delivery attempt (measured in bench/).
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_pre_ping=not sqlite,
            connect_args={} if sqlite else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT},
        )
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, info={SESSION_INFO_KEY: keyring}
        )

    def session(self) -> AsyncSession:
        """A new session; use it as ``async with db.session() as s``."""
        return self.sessions()

    async def dispose(self) -> None:
        """Close pooled connections."""
        await self.engine.dispose()
