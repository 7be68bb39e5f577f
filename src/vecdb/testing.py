"""A pytest plugin for applications on vecdb: a real server, a fresh migrated database per test.

Opt in with ``-p vecdb.testing`` (or ``pytest_plugins = ["vecdb.testing"]`` in
the root ``conftest.py``), and name the application's migrations in the ini
file::

    [pytest]
    vecdb_migrations = myapp.migrations

Fixtures:

- ``vecdb_server`` (session): a `TestServer` with a DSN that may create
  databases: ``$VECDB_TEST_DSN`` when set, else the embedded server in a
  temporary directory (one for the whole run, shared by pytest-xdist workers,
  removed at exit).
- ``vecdb_database`` (function): the DSN of a new database for this test,
  already migrated (vecdb's migrations and ``vecdb_migrations``), dropped after.
- ``vecdb_db`` (function, async): a connected `vecdb.Database` on it, closed after.

Migrating for every test is slow, so each worker migrates one *template*
database once per session and every test gets ``CREATE DATABASE ... TEMPLATE``
of it (as pytest-postgresql does): a copy of the migrated schema, made by the
server in a few milliseconds. Under pytest-xdist every worker has its own
template (``CREATE DATABASE`` needs a template nobody is connected to).

Example:
    >>> async def test_search_finds_the_nearest(vecdb_db):  # doctest: +SKIP
    ...     chunks = await vecdb_db.collection("chunks", Chunk, dim=3)
    ...     await chunks.upsert([Chunk(id=1, text="a", embedding=[1, 0, 0])])
    ...     assert (await chunks.search([1, 0, 0], k=1))[0].record.id == 1
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from ._config import PoolConfig
from ._errors import ConfigError, MigrationChainError
from ._identifiers import quote_ident
from ._migrate.sources import load_sources
from ._server import embedded as _embedded
from ._server.connect import connect
from ._server.database import Database

__all__ = ["TestServer"]

INI_MIGRATIONS = "vecdb_migrations"
_ROOT_ENV = "_VECDB_TESTING_ROOT"  # the embedded server's directory, inherited by xdist workers
_ROOT_KEY = pytest.StashKey[Path]()

# Durability buys nothing in a throw-away cluster; without it CREATE DATABASE
# and every commit are several times faster.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclasses.dataclass(frozen=True, slots=True)
class TestServer:
    """The server the tests use (the value of ``vecdb_server``).

    Attributes:
        dsn: A DSN with the right to create databases.
        embedded: Whether it is the embedded server this plugin started
            (``False`` under ``$VECDB_TEST_DSN``).
    """

    __test__ = False  # not a test class, whatever its name says to pytest

    dsn: str
    embedded: bool

    def database_dsn(self, database: str) -> str:
        """This server's DSN pointing at another database."""
        return urlunsplit(urlsplit(self.dsn)._replace(path="/" + database))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``vecdb_migrations`` ini option."""
    parser.addini(
        INI_MIGRATIONS,
        type="args",
        default=[],
        help="the application's migration packages (e.g. myapp.migrations), "
        "applied to every vecdb_database",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Choose the embedded server's directory once per run, shared by xdist workers.

    Not under pytest's basetemp: a later session makes that directory private
    again (0700), and the server, which runs as its own OS user when we are
    root, would lose its files. The process that made it removes it at exit,
    after every worker (and so the server, stopped by its last user) is gone.
    """
    inherited = os.environ.get(_ROOT_ENV)
    if inherited:
        config.stash[_ROOT_KEY] = Path(inherited)
        return
    # Only named here: made by the first fixture that starts the server, so that
    # a run that never asks for it leaves nothing behind.
    root = Path(tempfile.gettempdir()) / f"vecdb-testing-{uuid.uuid4().hex}"
    # Registered before the server starts: atexit runs in reverse order, so the
    # wheel stops the server first.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.environ[_ROOT_ENV] = str(root)
    config.stash[_ROOT_KEY] = root


def _migrations(config: pytest.Config) -> list[str]:
    """The ini option's packages, checked before any database is made."""
    names = [str(name) for name in config.getini(INI_MIGRATIONS)]
    try:
        load_sources(names)
    except MigrationChainError as exc:
        raise ConfigError(
            f"the pytest ini option {INI_MIGRATIONS} = {' '.join(names)} is not usable: {exc}. "
            f"Name importable packages (e.g. {INI_MIGRATIONS} = myapp.migrations) and run "
            "pytest from the project's root, so they can be imported.",
            setting=INI_MIGRATIONS,
        ) from exc
    return names


async def _admin(server: TestServer, *statements: str) -> None:
    conn = await asyncpg.connect(server.dsn)
    try:
        for statement in statements:  # one per call: ALTER SYSTEM refuses a transaction block
            await conn.execute(statement)
    finally:
        await conn.close()


async def _make_template(server: TestServer, name: str, migrations: list[str]) -> None:
    await _admin(server, f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
    try:
        db = await connect(
            server.database_dsn(name),
            migrations=migrations,
            pool=PoolConfig(min_size=0, max_size=1),
        )
        await db.close()
    except BaseException:
        await _admin(server, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        raise


@pytest.fixture(scope="session")
def vecdb_server(request: pytest.FixtureRequest) -> TestServer:
    """The server for this run: ``$VECDB_TEST_DSN``, else the embedded one (see the module)."""
    configured = os.environ.get("VECDB_TEST_DSN")
    if configured:
        return TestServer(dsn=configured, embedded=False)
    root = request.config.stash[_ROOT_KEY]
    root.mkdir(mode=0o700, exist_ok=True)  # xdist workers race here: either makes it
    server = _embedded.start(root / "data")
    settings = [f"ALTER SYSTEM SET {k} = '{v}'" for k, v in _FAST_SETTINGS.items()]
    asyncio.run(_admin(TestServer(server.dsn, True), *settings, "SELECT pg_reload_conf()"))
    return TestServer(dsn=server.dsn, embedded=True)


@pytest.fixture(scope="session")
def _vecdb_template(vecdb_server: TestServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """This worker's migrated template database, dropped at the end of the session."""
    migrations = _migrations(request.config)
    name = f"vecdb_template_{uuid.uuid4().hex[:12]}"
    asyncio.run(_make_template(vecdb_server, name, migrations))
    try:
        yield name
    finally:
        asyncio.run(
            _admin(vecdb_server, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        )


@pytest.fixture
def vecdb_database(vecdb_server: TestServer, _vecdb_template: str) -> Iterator[str]:
    """The DSN of a new database for this test, migrated, dropped afterwards."""
    name = f"vecdb_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(
            vecdb_server,
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(_vecdb_template)}",
        )
    )
    try:
        yield vecdb_server.database_dsn(name)
    finally:
        asyncio.run(
            _admin(vecdb_server, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        )


@pytest_asyncio.fixture
async def vecdb_db(vecdb_database: str, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A connected `vecdb.Database` on ``vecdb_database``, closed after the test."""
    # The template holds every migration already: connecting finds nothing pending.
    db = await connect(
        vecdb_database,
        migrations=_migrations(request.config),
        migrate="check",
        pool=PoolConfig(min_size=1, max_size=4),
    )
    try:
        yield db
    finally:
        await db.close()
