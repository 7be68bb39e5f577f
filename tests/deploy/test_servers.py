"""Servers that are not the one vecdb ships: no pgvector, and a pgvector older than 0.7.

Each test starts a real PostgreSQL of its own (initdb into a private
temporary directory, a Unix socket only) and checks that ``connect()`` refuses
it with a `ConfigError` that says what to install or run, and leaves the
database as it was: no vecdb schema, no extension created or updated.

- Debian's ``postgresql-15`` has no pgvector.
- The ``pgserver==0.1.4`` wheel ships PostgreSQL 16 with pgvector 0.6.2.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

import vecdb

from . import _parts


def _pgserver_package() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent
    return path if (path / "pginstall" / "bin" / "postgres").exists() else None


@pytest.fixture
def postgres15() -> Iterator[_parts.Cluster]:
    _parts.require(
        (_parts.PG15_BIN / "postgres").exists(),
        "Debian's PostgreSQL 15",
        "apt-get install -y postgresql-15",
    )
    with _parts.cluster(_parts.PG15_BIN) as running:
        yield running


@pytest.fixture
def pgvector_062() -> Iterator[_parts.Cluster]:
    """PostgreSQL 16 + pgvector 0.6.2, from the ``pgserver==0.1.4`` wheel (a dev dependency)."""
    package = _pgserver_package()
    _parts.require(
        package is not None, "pgserver 0.1.4 (pgvector 0.6.2)", "pip install 'pgserver==0.1.4'"
    )
    assert package is not None
    # The binaries find their libraries at $ORIGIN/../../../pgserver.libs (auditwheel).
    libs = package.with_name("pgserver.libs")
    with (
        _parts.private_copy(package, libs) as root,
        _parts.cluster(root / "pgserver" / "pginstall" / "bin") as running,
    ):
        yield running


async def _state(dsn: str) -> tuple[set[str], dict[str, str]]:
    """The database as vecdb could have changed it: its schemas and extensions."""
    conn = await asyncpg.connect(dsn)
    try:
        schemas = {
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' "
                "AND nspname <> 'information_schema'"
            )
        }
        extensions = {
            r["extname"]: r["extversion"]
            for r in await conn.fetch("SELECT extname, extversion FROM pg_extension")
        }
        return schemas, extensions
    finally:
        await conn.close()


@pytest.mark.parametrize("migrate", ["apply", "check"])
async def test_server_without_pgvector_is_refused_with_how_to_install(
    postgres15: _parts.Cluster, migrate: str
) -> None:
    dsn = postgres15.dsn()
    before = await _state(dsn)
    with pytest.raises(vecdb.ConfigError) as caught:
        await vecdb.connect(dsn, migrate=migrate)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "pgvector extension is not installed" in message
    assert "PostgreSQL 15" in message
    assert "apt install postgresql-15-pgvector" in message
    assert await _state(dsn) == before
    assert "vecdb" not in before[0]


async def test_pgvector_older_than_07_not_created_is_refused(
    pgvector_062: _parts.Cluster,
) -> None:
    dsn = pgvector_062.dsn()
    before = await _state(dsn)
    with pytest.raises(vecdb.ConfigError, match=r"pgvector 0\.6\.2 .*is too old") as caught:
        await vecdb.connect(dsn)
    assert "postgresql-16-pgvector" in str(caught.value)
    assert await _state(dsn) == before
    assert "vector" not in before[1]


async def test_pgvector_older_than_07_created_is_refused_with_how_to_update(
    pgvector_062: _parts.Cluster,
) -> None:
    dsn = pgvector_062.dsn()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION vector")
    finally:
        await conn.close()
    before = await _state(dsn)
    assert before[1]["vector"] == "0.6.2"
    with pytest.raises(vecdb.ConfigError, match="ALTER EXTENSION vector UPDATE"):
        await vecdb.connect(dsn)
    assert await _state(dsn) == before
