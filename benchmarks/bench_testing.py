"""vecdb.testing: per-test setup from a migrated template against migrating each test.

Run from the repository root:

    .venv/bin/python benchmarks/bench_testing.py                      # 30 tests, 5 migrations
    .venv/bin/python benchmarks/bench_testing.py --tests 100 --migrations 20

It writes a small application (``benchapp`` with N migrations, each creating a
table with an index, and T tests that each use ``vecdb_db``) into a temporary
directory and runs its suite twice with ``pytest -p vecdb.testing``, one
embedded server each: *template*, the plugin as shipped (``CREATE DATABASE ...
TEMPLATE`` of a database migrated once per session), and *migrate each test*,
the same suite with a conftest whose ``vecdb_database`` makes an empty database
and lets ``connect()`` apply every migration. The setup time of each test
(pytest's own ``report.duration`` for the setup phase: the database, the
connect and the pool) is collected by a conftest hook; the first test's
setup, which also starts the server and, for *template*, migrates the
template, is reported apart.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import machine, ms, summary, table

MIGRATION = '''
import vecdb


class Create{n}(vecdb.Migration):
    """Create table t{n}."""

    version = {n}

    async def up(self, conn):
        await conn.execute("CREATE TABLE t{n} (id bigint PRIMARY KEY, body text, at timestamptz)")
        await conn.execute("CREATE INDEX ON t{n} (at)")

    async def down(self, conn):
        await conn.execute("DROP TABLE t{n}")
'''

CONFTEST = """
import json, os

def pytest_runtest_logreport(report):
    if report.when == "setup":
        with open(os.environ["BENCH_OUT"], "a") as out:
            out.write(json.dumps(report.duration) + "\\n")
"""

MIGRATE_EACH = """
import uuid

import asyncpg
import pytest

from vecdb.testing import TestServer


@pytest.fixture
async def vecdb_database(vecdb_server: TestServer):
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(vecdb_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    yield vecdb_server.database_dsn(name)
    admin = await asyncpg.connect(vecdb_server.dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def vecdb_db(vecdb_database):
    import vecdb

    db = await vecdb.connect(vecdb_database, migrations=["benchapp.migrations"])
    yield db
    await db.close()
"""

TEST = """
async def test_{i}(vecdb_db):
    async with vecdb_db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t1") == 0
"""


def _project(root: Path, migrations: int, tests: int, *, migrate_each: bool) -> None:
    package = root / "benchapp" / "migrations"
    package.mkdir(parents=True)
    (root / "benchapp" / "__init__.py").write_text("")
    (package / "__init__.py").write_text('SOURCE = "benchapp"\n')
    for n in range(1, migrations + 1):
        (package / f"v{n:04d}_t{n}.py").write_text(MIGRATION.format(n=n))
    (root / "pytest.ini").write_text(
        "[pytest]\nvecdb_migrations = benchapp.migrations\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    (root / "conftest.py").write_text(CONFTEST + (MIGRATE_EACH if migrate_each else ""))
    (root / "test_bench.py").write_text("".join(TEST.format(i=i) for i in range(tests)))


def _run(migrations: int, tests: int, *, migrate_each: bool) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="vb-testing-", dir="/tmp") as tmp:
        root = Path(tmp)
        _project(root, migrations, tests, migrate_each=migrate_each)
        out = root / "durations.jsonl"
        env = {
            **os.environ,
            "BENCH_OUT": str(out),
            "PYTHONPATH": os.pathsep.join(
                [str(root), str(Path(__file__).resolve().parents[1] / "src")]
            ),
        }
        env.pop("VECDB_TEST_DSN", None)
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "vecdb.testing", "-p", "no:cacheprovider"],
            cwd=root,
            env=env,
            check=True,
        )
        return [float(line) for line in out.read_text().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=30)
    parser.add_argument("--migrations", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for label, each in (("template (vecdb.testing)", False), ("migrate each test", True)):
        durations = _run(args.migrations, args.tests, migrate_each=each)
        median, p95, _, _ = summary(durations[1:])
        rows.append([label, ms(durations[0]), ms(median), ms(p95), f"{sum(durations):.2f} s"])
    table(
        f"Per-test setup, {args.tests} tests, {args.migrations} app migrations ({machine()})",
        ["setup", "first test", "median", "p95", "total"],
        rows,
    )


if __name__ == "__main__":
    main()
