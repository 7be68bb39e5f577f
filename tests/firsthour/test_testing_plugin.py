"""vecdb.testing, used as an application uses it: a small app package run under pytester.

Each run is a real pytest subprocess in a temporary project (``myapp`` with its
migrations, a ``pytest.ini`` naming them, and tests using the fixtures). The
plugin is loaded with ``-p vecdb.testing`` because the shared environment's
installed entry points may come from another checkout.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import tomllib
from pathlib import Path

import asyncpg
import pytest

APP_MIGRATIONS = {
    "myapp/__init__.py": "",
    "myapp/migrations/__init__.py": '"""myapp\'s migrations."""\n\nSOURCE = "myapp"\n',
    "myapp/migrations/v0001_notes.py": '''
        import vecdb


        class CreateNotes(vecdb.Migration):
            """Create the notes table."""

            version = 1

            async def up(self, conn):
                await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")

            async def down(self, conn):
                await conn.execute("DROP TABLE notes")
    ''',
}

APP_TESTS = """
    import os
    from pathlib import Path

    import vecdb


    class Chunk(vecdb.Record):
        id: int
        text: str
        embedding: vecdb.Vector


    def _remember(name):
        # The outer test checks that every database a test used is dropped afterwards.
        with open(os.environ["APP_SEEN"], "a") as seen:
            seen.write(name + "\\n")


    async def test_the_app_table_is_there_and_empty(vecdb_db):
        async with vecdb_db.acquire() as conn:
            _remember(await conn.fetchval("SELECT current_database()"))
            await conn.execute("INSERT INTO notes VALUES (1, 'left behind?')")
            assert await conn.fetchval("SELECT count(*) FROM notes") == 1


    async def test_each_test_has_its_own_database(vecdb_db):
        async with vecdb_db.acquire() as conn:
            _remember(await conn.fetchval("SELECT current_database()"))
            assert await conn.fetchval("SELECT count(*) FROM notes") == 0


    async def test_migrations_are_applied(vecdb_db):
        status = {(m.source, m.version): m.state for m in await vecdb_db.migrations.status()}
        assert status[("myapp", 1)] == "applied"


    async def test_collections_work(vecdb_db):
        chunks = await vecdb_db.collection("chunks", Chunk, dim=3)
        await chunks.upsert([Chunk(id=1, text="a", embedding=[1, 0, 0])])
        assert (await chunks.search([1, 0, 0], k=1))[0].record.id == 1


    def test_vecdb_database_is_a_dsn(vecdb_database, vecdb_server):
        assert vecdb_database.startswith("postgresql://")
        assert vecdb_server.dsn.startswith("postgresql://")
"""

FAILING_TEST = """
    async def test_a_bug_in_the_app(vecdb_db):
        async with vecdb_db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM notes") == 1
"""

INI = """
[pytest]
vecdb_migrations = {migrations}
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def _project(pytester: pytest.Pytester, *, migrations: str = "myapp.migrations") -> Path:
    for path, source in APP_MIGRATIONS.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(pytester_dedent(source))
    pytester.makefile(".ini", pytest=INI.format(migrations=migrations))
    pytester.makepyfile(test_app=APP_TESTS)
    seen = pytester.path / "seen.txt"
    seen.touch()
    return seen


def pytester_dedent(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


async def _existing(admin_dsn: str, names: list[str]) -> list[str]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname = any($1)", names)
    finally:
        await conn.close()
    return [r["datname"] for r in rows]


@pytest.fixture
def on_test_server(admin_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app's run uses this suite's server (through $VECDB_TEST_DSN)."""
    monkeypatch.setenv("VECDB_TEST_DSN", admin_dsn)
    return admin_dsn


def test_the_app_tests_pass_each_on_a_fresh_migrated_database(
    pytester: pytest.Pytester, on_test_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _project(pytester)
    monkeypatch.setenv("APP_SEEN", str(seen))
    result = pytester.runpytest_subprocess("-p", "vecdb.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    used = seen.read_text().split()
    assert len(set(used)) == 2
    assert asyncio.run(_existing(on_test_server, used)) == []


def test_a_failing_app_test_fails(
    pytester: pytest.Pytester, on_test_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_SEEN", str(_project(pytester)))
    pytester.makepyfile(test_bug=FAILING_TEST)
    result = pytester.runpytest_subprocess("-p", "vecdb.testing", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_a_bug_in_the_app*", "*assert 0 == 1*"])


def test_a_missing_migrations_package_is_a_clear_error_before_any_database_is_made(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreachable server: the error must come before anything is asked of one.
    monkeypatch.setenv("VECDB_TEST_DSN", "postgresql://nobody@127.0.0.1:1/x")
    monkeypatch.setenv("APP_SEEN", str(_project(pytester, migrations="myapp.nope")))
    result = pytester.runpytest_subprocess("-p", "vecdb.testing", "-p", "no:cacheprovider", "-x")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ConfigError: the pytest ini option vecdb_migrations = myapp.nope is not usable:"
            "*cannot import migration package 'myapp.nope'*"
        ]
    )
    assert "Connect" not in result.stdout.str()


@pytest.mark.slow
def test_under_xdist_the_workers_share_one_embedded_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No $VECDB_TEST_DSN: the plugin starts the embedded server; two workers use it."""
    monkeypatch.delenv("VECDB_TEST_DSN", raising=False)
    monkeypatch.delenv("_VECDB_TESTING_ROOT", raising=False)
    seen = _project(pytester)
    monkeypatch.setenv("APP_SEEN", str(seen))
    pytester.makeconftest(
        """
        import os

        def pytest_sessionfinish(session):
            # Each worker says which server it used (the embedded server's socket directory).
            with open(os.environ["APP_SEEN"] + ".roots", "a") as roots:
                roots.write(os.environ["_VECDB_TESTING_ROOT"] + "\\n")
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "vecdb.testing", "-p", "no:cacheprovider", "-n", "2"
    )
    result.assert_outcomes(passed=5)
    roots = set(Path(str(seen) + ".roots").read_text().split())
    assert len(roots) == 1  # one directory, so one server, for the controller and both workers
    assert not Path(roots.pop()).exists()  # removed at exit
    assert os.environ.get("_VECDB_TESTING_ROOT") is None


def test_the_plugin_is_registered_under_its_module_name() -> None:
    """`-p vecdb.testing` and the installed entry point must name one plugin, not two."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"vecdb.testing": "vecdb.testing"}
