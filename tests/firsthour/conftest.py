"""A real PgBouncer (transaction mode) in front of the test server, for the deployment tutorial."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def pgbouncer(admin_dsn: str) -> Iterator[Callable[[str], str] | None]:
    """``database -> DSN through PgBouncer``; ``None`` (locally) when PgBouncer is missing.

    Under ``$CI`` a missing PgBouncer fails the tests that need it.
    """
    if not Path(PGBOUNCER).exists():
        if os.environ.get("CI"):
            pytest.fail(f"PgBouncer is needed and missing ({PGBOUNCER}); install pgbouncer")
        yield None
        return
    parts = urlsplit(admin_dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = query.get("port", [str(parts.port or 5432)])[0]
    user = parts.username or "postgres"
    # PgBouncer refuses to run as root: it runs as the OS user that owns the server's
    # socket directory (the embedded server's own), or as ourselves.
    owner = pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else None
    workdir = Path(tempfile.mkdtemp(prefix="vecdb-pgb-"))
    listen = _free_port()
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\n"
        "auth_type = any\npool_mode = transaction\nunix_socket_dir =\n"
        f"logfile = {workdir / 'pgbouncer.log'}\n"
    )
    command = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(workdir, owner or "nobody")
        shutil.chown(workdir / "pgbouncer.ini", owner or "nobody")
        command[1:1] = ["-u", owner or "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait until it listens (or has died)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", listen)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PgBouncer did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.05)
        yield lambda database: f"postgresql://{user}@127.0.0.1:{listen}/{database}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]
        shutil.rmtree(workdir, ignore_errors=True)
