"""Test fixtures: one real PostgreSQL per test run, one fresh database per test.

The server is ``$VECDB_TEST_DSN`` when set (a role that may CREATE DATABASE),
else the embedded server, started once in a temporary data directory. Every
test that asks for ``dsn`` gets a database of its own, created empty and
dropped afterwards, so tests never see each other's schema or data.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import os
import shutil
import sys
import tempfile
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import hypothesis
import pytest

import vecdb
from vecdb._server import embedded as _embedded

# pytester runs application test suites against vecdb.testing (tests/firsthour).
pytest_plugins = ["pytester"]

# CI gates merges: there, property tests replay the same examples every run (a
# failure is then reproducible from the log); locally they explore new ones.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")

_TEST_SERVER_SETTINGS = {
    # Durability buys nothing in a throw-away test cluster; turning it off makes
    # CREATE DATABASE and every commit several times faster.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def with_database(dsn: str, database: str) -> str:
    """Return ``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _tune(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name, value in _TEST_SERVER_SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _small_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded servers that tests start through ``vecdb.connect()`` are tuned for a small machine.

    vecdb tunes the embedded server it starts for the machine (1/4 of its memory
    for shared_buffers); a test starting a few of them on a 2-core CI machine
    must not. They are still tuned, so the path a user takes is the one tested.
    (``admin_dsn`` below calls ``embedded.start()`` without settings: stock.)
    """
    for name, value in (("VECDB_TUNE_MEMORY", "512MB"), ("VECDB_TUNE_CORES", "1")):
        if name not in os.environ:
            monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A DSN with the right to create databases, on the server the tests use."""
    configured = os.environ.get("VECDB_TEST_DSN")
    if configured:
        yield configured
        return
    # Not under pytest's basetemp: a later pytest session makes that directory
    # private again (0700) and the server, running as its own user when we are
    # root, would lose its files. Removed at exit, after the wheel stops it
    # (atexit runs in reverse order of registration).
    root = Path(tempfile.mkdtemp(prefix="vecdb-test-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    server = _embedded.start(root / "data")
    asyncio.run(_tune(server.dsn))
    yield server.dsn


@pytest.fixture
def embedded_data_dir(admin_dsn: str) -> Path | None:
    """The data directory of the embedded test server (``None`` under $VECDB_TEST_DSN)."""
    if os.environ.get("VECDB_TEST_DSN"):
        return None
    host = dict(
        item.split("=", 1) for item in urlsplit(admin_dsn).query.split("&") if "=" in item
    ).get("host")
    return Path(host) if host else None


@pytest.fixture
async def dsn(admin_dsn: str) -> AsyncIterator[str]:
    """A DSN to a new, empty database that exists for this test only."""
    name = f"vecdb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[vecdb.Database]:
    """A connected, migrated `Database` on this test's own database."""
    database = await vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=4))
    try:
        yield database
    finally:
        await database.close()


class PackageWriter:
    """Writes migration packages into a temporary directory on ``sys.path``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, modules: dict[str, str], *, init: str = "") -> str:
        """Create (or overwrite) package ``name`` with ``modules`` (module name -> source)."""
        package = self.root / name
        # Start from nothing: a module left from an earlier write would still be found.
        shutil.rmtree(package, ignore_errors=True)
        package.mkdir()
        (package / "__init__.py").write_text(init)
        for module, source in modules.items():
            (package / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[loaded]
        return name


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackageWriter:
    """Write importable migration packages for this test (unique names avoid clashes)."""
    root = tmp_path / "pkgs"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    # Rewritten modules can keep their size and mtime second; stale bytecode would win.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    return PackageWriter(root)
