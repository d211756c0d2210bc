"""``infraudit up``: the whole local stack from one command, and its supervision.

It runs the Temporal dev server (with its Web UI), the worker and the API as child processes,
keeping all state under ``./.infraudit`` so a restart loses nothing, and stops them in order on
Ctrl-C or SIGTERM: API first (no new work accepted), then the worker, then Temporal.

Children run in their own sessions so a terminal's Ctrl-C reaches only this supervisor, which
then stops them in that order. In exchange they must not outlive it if it is killed outright:
on Linux each child asks the kernel for SIGTERM when its parent dies (see
:func:`follow_supervisor`).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from infraudit.config import Settings, default_state_dir

#: Set in the children's environment to the supervisor's pid; see :func:`follow_supervisor`.
SUPERVISOR_ENV = "INFRAUDIT_SUPERVISOR_PID"
#: The org whose key ``up`` keeps in ``.infraudit/dev-api-key`` (in every mode: the stack is local).
DEV_ORG = "dev"
DEV_KEY_FILE = "dev-api-key"
#: Where ``up`` keeps the key that seals signing secrets, when the environment sets none.
SECRET_KEY_FILE = "secret.key"
#: Where ``up`` keeps the key that signs Settings page sign-ins, when the environment sets none.
SIGNIN_KEY_FILE = "signin.key"
#: The file in the state folder that ``up`` locks while it runs.
LOCK_FILE = "up.lock"
#: Seconds each of Temporal and the API may take to answer after they are started.
START_TIMEOUT = 90.0
#: Seconds a child may take to stop after SIGTERM before it is killed: more than the worker
#: needs to let a POST under way finish (the 10 s HTTP timeout plus its shutdown grace).
STOP_GRACE = 25.0
#: Children in the order they are stopped.
STOP_ORDER = ("API", "worker", "Temporal")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_PR_SET_PDEATHSIG = 1
_TICK = 0.2


class StackError(Exception):
    """The stack cannot start or keep running; the message says which part and why."""


def _parent_death_signal() -> Callable[[], None] | None:
    """A function asking Linux to SIGTERM the calling process when its parent dies.

    ``prctl`` is looked up here, before any fork, so the returned function does nothing in a
    child but one foreign call. None where the call does not exist (macOS, Windows).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def request() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return request


def follow_supervisor() -> None:
    """In a child of ``up``: stop when ``up`` dies, even if it was killed with SIGKILL.

    Called by ``infraudit worker`` and ``infraudit api`` at start. The worker and uvicorn both
    treat SIGTERM as "shut down gracefully". Checking the parent pid after the request covers
    a supervisor that died before the request was made.
    """
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    request = _parent_death_signal()
    if not supervisor or request is None:
        return
    request()
    if os.getppid() != int(supervisor):
        os.kill(os.getpid(), signal.SIGTERM)


def prepare_environment() -> None:
    """Dev mode, a secret key and a sign-in key for ``up`` and its children, unless the
    environment chose.

    ``up`` is the local stack: http:// and loopback endpoints must be allowed there, while an
    explicit ``INFRAUDIT_DEV=0`` still lets someone try production rules locally. Signing
    secrets are sealed in every mode, so without ``INFRAUDIT_SECRET_KEYS`` the stack uses the
    key it keeps in ``.infraudit/secret.key``; the children inherit it through the environment.
    """
    if not os.environ.get("INFRAUDIT_DEV", "").strip():
        os.environ["INFRAUDIT_DEV"] = "1"
    if not os.environ.get("INFRAUDIT_SECRET_KEYS", "").strip():
        os.environ["INFRAUDIT_SECRET_KEYS"] = local_secret_key(
            default_state_dir() / SECRET_KEY_FILE
        )
    # Kept like the secret key, so a restart of the stack keeps the browser signed in.
    if not os.environ.get("INFRAUDIT_SIGNIN_KEY", "").strip():
        os.environ["INFRAUDIT_SIGNIN_KEY"] = local_secret_key(default_state_dir() / SIGNIN_KEY_FILE)


def local_secret_key(path: Path) -> str:
    """The key kept in ``path``, made (mode 0600, in a 0700 folder) the first time.

    An existing file is never replaced: the secrets of the local store are sealed with it, and a
    new key would make all of them unreadable. A malformed file stops ``up`` with one line.
    """
    from infraudit.store.secret_box import new_key

    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


#: The umask of ``up`` and so of its children: what they create is their owner's alone.
PRIVATE_UMASK = 0o077


def make_private(state_dir: Path) -> None:
    """Keep the local state to its owner: the folder 0700, each file in it 0600, from now on too.

    The umask covers what ``up`` and its children create later (Temporal's database and log,
    SQLite's ``-wal`` and ``-shm``); the chmod covers what earlier releases left readable to
    everyone. The registrations hold API key hashes and sealed secrets, ``dev-api-key`` a key,
    Temporal's database every event's payload.
    """
    os.umask(PRIVATE_UMASK)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    for path in state_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def temporal_port(settings: Settings) -> int:
    """The gRPC port of ``INFRAUDIT_TEMPORAL_ADDRESS``, which must be on this machine."""
    host, _, port = settings.temporal_address.rpartition(":")
    host = host.strip("[]")
    if host not in LOOPBACK or not port.isdigit():
        raise StackError(
            f"INFRAUDIT_TEMPORAL_ADDRESS={settings.temporal_address!r}: `infraudit up` runs its "
            "own Temporal server, so the address must be 127.0.0.1:<port> or localhost:<port>"
        )
    return int(port)


#: Dev server flags for speed. ``start-dev`` turns ``forceSearchAttributesCacheRefreshOnRead``
#: on, which re-reads cluster metadata on every search-attribute lookup (each start and upsert of
#: a delivery sets four): off, the server spends about a sixth less CPU per workflow (issue 8).
#: The cost: a search attribute added while the server runs takes up to 60 s to be usable. Ours
#: are registered on the command line (``--search-attribute``) before the server serves, and
#: :func:`infraudit.temporal.prepare` then finds them present and adds nothing.
DEV_SERVER_SPEED_FLAGS = (
    "--dynamic-config-value",
    "system.forceSearchAttributesCacheRefreshOnRead=false",
)


def temporal_command(settings: Settings, state_dir: Path) -> list[str]:
    """The dev server command line; every flag is safe to repeat on an existing database."""
    from infraudit import search_attributes
    from infraudit.cli.binaries import binary

    command = [
        binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(temporal_port(settings)),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--namespace",
        settings.temporal_namespace,
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # Nothing may reach the network at run time; the UI would fetch a news feed.
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
        *DEV_SERVER_SPEED_FLAGS,
    ]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    return command


def local_api_url(settings: Settings) -> str:
    """Where this machine reaches the API ``up`` started (a wildcard bind means loopback)."""
    host = settings.api_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


async def dev_key(database_url: str, kept: str | None) -> tuple[str, bool]:
    """The dev org's key: ``kept`` while the store still knows it, else a new one (and True)."""
    from infraudit.store import orgs
    from infraudit.store.db import Database

    db = Database(database_url)
    try:
        async with db.session() as session, session.begin():
            if kept and await orgs.org_for_api_key(session, kept) == DEV_ORG:
                return kept, False
            return await orgs.create_api_key(session, DEV_ORG), True
    finally:
        await db.dispose()


def ensure_dev_key(database_url: str, key_file: Path) -> str:
    """The dev API key kept in ``key_file``, created (and written there) when missing or stale.

    Keeping the plaintext on disk is acceptable for a local dev stack only; it means every
    restart prints the same key, so scripts and curl lines keep working.
    """
    kept = key_file.read_text().strip() if key_file.is_file() else None
    key, created = asyncio.run(dev_key(database_url, kept))
    if created:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
    return key


def _say(message: str) -> None:
    """Progress and problems go to stderr; stdout carries only the announcement."""
    print(f"infraudit up: {message}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    """The end of a log file, for a message about a child that died."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Stack:
    """Starts, watches and stops Temporal, the worker and the API."""

    def __init__(self, settings: Settings, state_dir: Path | None = None) -> None:
        self.settings = settings
        self.state_dir = state_dir or default_state_dir()
        self.temporal_log = self.state_dir / "temporal.log"
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.signals = 0
        self.dev_key: str | None = None
        self._log: IO[bytes] | None = None
        self._lock: IO[str] | None = None

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Count SIGINT/SIGTERM: the first stops the stack in order, a second hurries it."""
        self.signals += 1
        if self.signals > 1:
            _say("second signal: killing what is left")

    @property
    def stop_requested(self) -> bool:
        """Whether someone asked the stack to stop."""
        return self.signals > 0

    # -- the whole life ----------------------------------------------------------------------

    def run(self) -> int:
        """Start, announce, supervise, stop; the exit code of ``infraudit up``."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                if not self.start():
                    return 0
                self.announce()
                return self.supervise()
            except StackError as err:
                _say(str(err))
                return 1
            finally:
                self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def start(self) -> bool:
        """Bring everything up; False when a stop was requested before it finished."""
        from infraudit.store import migrate
        from infraudit.store.secret_box import Keyring

        settings = self.settings
        make_private(self.state_dir)
        self._hold_state_dir()
        wanted = {
            temporal_port(settings): "Temporal (INFRAUDIT_TEMPORAL_ADDRESS)",
            settings.temporal_ui_port: "the Temporal UI (INFRAUDIT_TEMPORAL_UI_PORT)",
            settings.api_port: "the API (INFRAUDIT_API_PORT)",
        }
        # Off unless set (settings refuse the same port twice): then checked like the others.
        optional = {
            settings.worker_http_port: "the worker's HTTP (INFRAUDIT_WORKER_HTTP_PORT)",
            settings.api_metrics_port: "the API's metrics (INFRAUDIT_API_METRICS_PORT)",
        }
        wanted.update({port: user for port, user in optional.items() if port is not None})
        for port, user in wanted.items():
            if port_in_use(port):
                raise StackError(
                    f"port {port} for {user} is in use: is another `infraudit up` running?"
                )
        try:
            migrate.upgrade(settings.database_url, Keyring.from_settings(settings))
        except Exception as err:  # any driver or migration error: say it, no traceback
            raise StackError(f"cannot migrate the database: {err}") from err

        self.start_temporal()
        if not asyncio.run(self.await_temporal()):
            return False
        # In every mode, so `INFRAUDIT_DEV=0 make run` can be tried at once: production rules
        # are about what endpoints may be, not about who may use this local stack.
        self.dev_key = ensure_dev_key(settings.database_url, self.state_dir / DEV_KEY_FILE)
        self.start_python_child("worker")
        self.start_python_child("API", "api")
        return self.await_api()

    def _hold_state_dir(self) -> None:
        """Take the state folder for this stack, or StackError when another ``up`` has it.

        Two stacks on one folder (say, a second ``make run`` on other ports) would share one
        Temporal database and store: their servers fight over it and one stack's workers run the
        other's deliveries under other rules. The lock is an ``flock`` the kernel drops when this
        process ends, however it ends.
        """
        self._lock = (self.state_dir / LOCK_FILE).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StackError(
                f"{self.state_dir} is in use by another `infraudit up`; stop it, or run this one "
                "from another folder"
            ) from None

    def start_temporal(self) -> None:
        """The dev server, its output in ``.infraudit/temporal.log`` (it is noisy at warn)."""
        # The parent-death request runs between fork and exec, which is only safe while this
        # process has no other threads; it is the first child, so that holds.
        request = _parent_death_signal() if threading.active_count() == 1 else None
        self._log = self.temporal_log.open("wb")
        self.children["Temporal"] = subprocess.Popen(
            temporal_command(self.settings, self.state_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=request,
        )

    def start_python_child(self, name: str, command: str | None = None) -> None:
        """``python -m infraudit.cli <command>`` with this environment (INFRAUDIT_* included).

        Its output (uvicorn's access log included) goes to stderr: stdout is the announcement.
        """
        env = dict(os.environ)
        env[SUPERVISOR_ENV] = str(os.getpid())
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "infraudit.cli", command or name],
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            env=env,
            start_new_session=True,
        )

    def check_children(self) -> None:
        """Raise naming the first child that exited."""
        for name, child in self.children.items():
            code = child.poll()
            if code is None:
                continue
            message = f"the {name} exited unexpectedly (code {code})"
            if name == "Temporal":
                message += f"; the end of {self.temporal_log}:\n{_tail(self.temporal_log)}"
            raise StackError(message)

    async def await_temporal(self) -> bool:
        """Wait until Temporal answers, then give the namespace its retention and attributes.

        Doing the preparation here, before the worker starts, means the API never sees a
        namespace without the delivery log's search attributes.
        """
        from infraudit import temporal

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.stop_requested:
                return False
            self.check_children()
            try:
                client = await asyncio.wait_for(temporal.connect(self.settings), 5)
                break
            except Exception as err:  # refused, not serving yet, timeout: all mean "not yet"
                if time.monotonic() > deadline:
                    raise StackError(
                        f"Temporal did not answer on {self.settings.temporal_address} within "
                        f"{START_TIMEOUT:.0f}s ({err}); see {self.temporal_log}"
                    ) from err
            await asyncio.sleep(_TICK)
        await temporal.prepare(client, self.settings)
        return True

    def await_api(self) -> bool:
        """Wait for ``/readyz`` to answer 200 (database and Temporal both reachable)."""
        url = f"{local_api_url(self.settings)}/readyz"
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.stop_requested:
                return False
            self.check_children()
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code == httpx.codes.OK:
                    return True
                last = f"HTTP {response.status_code}: {response.text.strip()}"
            except httpx.HTTPError as err:
                last = str(err) or type(err).__name__
            time.sleep(_TICK)
        raise StackError(f"the API was not ready at {url} within {START_TIMEOUT:.0f}s ({last})")

    def rules(self) -> str:
        """Which endpoint rules are in force, for the announcement (``INFRAUDIT_DEV=0 make run``
        runs the stack with production rules, to watch them refuse local targets)."""
        if self.settings.dev:
            return "(dev mode: http:// and private endpoints allowed)"
        if self.settings.allow_private_targets:
            return "with production rules, private targets allowed"
        return "with production rules: https endpoints at public addresses only"

    def announce(self) -> None:
        """Where everything is, and a first command to try: the only lines on stdout."""
        api = local_api_url(self.settings)
        lines = [
            f"InfraAudit webhooks is running {self.rules()}.",
            f"  Settings:     {api}/settings/webhooks   (sign in with an API key)",
            f"  API docs:     {api}/docs",
            f"  Temporal UI:  {self.settings.temporal_ui_url}",
        ]
        if self.dev_key:
            lines += [
                f"  Dev API key:  {self.dev_key}",
                f"                (org {DEV_ORG!r}; kept in {self.state_dir / DEV_KEY_FILE})",
                "",
                "Try:",
                f'  curl -H "Authorization: Bearer {self.dev_key}" {api}/v1/webhooks',
            ]
        lines += ["", "Press Ctrl-C to stop."]
        print("\n".join(lines), flush=True)

    def supervise(self) -> int:
        """Wait for a stop request (exit 0) or a child's death (exit 1)."""
        while not self.stop_requested:
            try:
                self.check_children()
            except StackError as err:
                _say(f"{err}; stopping the rest")
                return 1
            time.sleep(_TICK)
        return 0

    def stop(self) -> None:
        """SIGTERM each child in ``STOP_ORDER``, wait, kill after the grace period.

        A signal received while stopping cuts every wait short.
        """
        running = [n for n in STOP_ORDER if n in self.children and self.children[n].poll() is None]
        if running:
            _say(f"stopping {', '.join(running)}")
        signals_before = self.signals
        for name in running:
            child = self.children[name]
            child.terminate()
            deadline = time.monotonic() + STOP_GRACE
            while (
                child.poll() is None
                and time.monotonic() < deadline
                and self.signals == signals_before
            ):
                time.sleep(0.05)
            if child.poll() is None:
                _say(f"the {name} did not stop in time; killing it")
                child.kill()
                child.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if running:
            _say("stopped")


def up(settings: Settings) -> int:
    """Run the stack until stopped; the process exit code."""
    return Stack(settings).run()
