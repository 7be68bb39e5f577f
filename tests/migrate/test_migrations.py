"""The migration engine, against a real database: apply, fail, roll back, drift, guards."""

from __future__ import annotations

import asyncpg
import pytest

import vecdb
from vecdb._migrate import lock as _lock

from ..conftest import PackageWriter

FAST = vecdb.MigrationConfig(lock_wait=5, ddl_lock_timeout=1, ddl_retries=0)

ITEMS = """
import vecdb

class CreateItems(vecdb.Migration):
    '''Create the items table.'''
    version = 1

    async def up(self, conn):
        await conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL)")

    async def down(self, conn):
        await conn.execute("DROP TABLE items")
"""

ADD_LANG = """
import vecdb

class AddLang(vecdb.Migration):
    '''Add a language column to items.'''
    version = 2

    async def up(self, conn):
        await conn.execute("ALTER TABLE items ADD COLUMN lang text NOT NULL DEFAULT 'en'")

    async def down(self, conn):
        await conn.execute("ALTER TABLE items DROP COLUMN lang")
"""


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [r[0] for r in rows]


async def _table_checksum(conn: asyncpg.Connection) -> str:
    return await conn.fetchval(
        "SELECT md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)) FROM items"
    )


async def test_connect_applies_bundled_migrations_and_records_them(db: vecdb.Database) -> None:
    status = await db.migrations.status()
    assert [(s.source, s.version, s.state) for s in status] == [("vecdb", 1, "applied")]
    history = await db.migrations.history()
    assert [(e.source, e.version, e.event) for e in history] == [("vecdb", 1, "applied")]
    assert history[0].library_version == vecdb.__version__
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('vecdb.collections') IS NOT NULL")
        assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")


async def test_new_migration_updates_schema_records_history_and_keeps_data(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_keep", {"v0001_items": ITEMS})
    async with vecdb.connect(dsn, migrations=[pkg]) as db, db.acquire() as conn:
        await conn.execute(
            "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000) g"
        )
        before = await _table_checksum(conn)

    pkg = packages.write("mig_keep", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        async with db.acquire() as conn:
            assert await _columns(conn, "items") == ["id", "payload", "lang"]
            assert await _table_checksum(conn) == before
            assert await conn.fetchval("SELECT count(*) FROM items WHERE lang = 'en'") == 1000
        status = {(s.source, s.version): s.state for s in await db.migrations.status()}
        assert status[("mig_keep", 2)] == "applied"
        events = [(e.source, e.version, e.event) for e in await db.migrations.history()]
        assert events[-1] == ("mig_keep", 2, "applied")


FAILS_AT_THIRD = """
import vecdb

class Broken(vecdb.Migration):
    '''Create a table, fill it, then fail.'''
    version = 2

    async def up(self, conn):
        await conn.execute("CREATE TABLE extra (id int)")
        await conn.execute("INSERT INTO items VALUES (999, 'written by the failing migration')")
        await conn.execute("ALTER TABLE items ADD COLUMN broken nosuchtype")

NEVER_RUNS = '''
'''
"""

FIXED = """
import vecdb

class Broken(vecdb.Migration):
    '''Create a table, fill it, then fail.'''
    version = 2

    async def up(self, conn):
        await conn.execute("CREATE TABLE extra (id int)")
        await conn.execute("INSERT INTO items VALUES (999, 'written by the fixed migration')")
        await conn.execute("ALTER TABLE items ADD COLUMN fixed text")
"""

LATER = """
import vecdb

class Later(vecdb.Migration):
    '''Runs after version 2.'''
    version = 3

    async def up(self, conn):
        await conn.execute("CREATE TABLE later (id int)")
"""


async def test_migration_failing_at_third_statement_changes_nothing(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_fail", {"v0001_items": ITEMS})
    async with vecdb.connect(dsn, migrations=[pkg]) as db, db.acquire() as conn:
        await conn.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 50) g")
        before = await _table_checksum(conn)

    pkg = packages.write(
        "mig_fail", {"v0001_items": ITEMS, "v0002_broken": FAILS_AT_THIRD, "v0003_later": LATER}
    )
    with pytest.raises(vecdb.MigrationError) as caught:
        await vecdb.connect(dsn, migrations=[pkg], migration_config=FAST)
    error = caught.value
    assert (error.source, error.version) == ("mig_fail", 2)
    assert error.server_message is not None
    assert "nosuchtype" in error.server_message
    assert "rolled back" in str(error)

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.extra')") is None
        assert await conn.fetchval("SELECT to_regclass('public.later')") is None
        assert await _columns(conn, "items") == ["id", "payload"]
        assert await _table_checksum(conn) == before
        failed = await conn.fetchrow(
            "SELECT event, error FROM vecdb.migration_events WHERE source = 'mig_fail' "
            "ORDER BY id DESC LIMIT 1"
        )
        assert failed["event"] == "failed"
        assert "nosuchtype" in failed["error"]
    finally:
        await conn.close()

    pkg = packages.write(
        "mig_fail", {"v0001_items": ITEMS, "v0002_broken": FIXED, "v0003_later": LATER}
    )
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        states = {s.version: s.state for s in await db.migrations.status() if s.source == pkg}
        assert states == {1: "applied", 2: "applied", 3: "applied"}


async def test_python_exception_in_a_migration_is_a_migration_error(
    dsn: str, packages: PackageWriter
) -> None:
    source = """
    import vecdb

    class Raises(vecdb.Migration):
        '''Raise from Python.'''
        version = 1

        async def up(self, conn):
            await conn.execute("CREATE TABLE half_done (id int)")
            raise ValueError("the application's own check failed")
    """
    pkg = packages.write("mig_pyerr", {"v0001": source})
    with pytest.raises(vecdb.MigrationError, match="the application's own check failed"):
        await vecdb.connect(dsn, migrations=[pkg])
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.half_done')") is None
    finally:
        await conn.close()


def _logged_columns_package(packages: PackageWriter, name: str, *, irreversible: int = 0) -> str:
    """v1 creates a log table; v2..v4 each add a column and log their own down()."""
    modules = {
        "v0001_log": """
        import vecdb

        class Log(vecdb.Migration):
            '''Create the rollback log.'''
            version = 1

            async def up(self, conn):
                await conn.execute("CREATE TABLE rollback_log (n serial, version int)")

            async def down(self, conn):
                await conn.execute("DROP TABLE rollback_log")
        """
    }
    for version in (2, 3, 4):
        down = (
            ""
            if version == irreversible
            else f"""
            async def down(self, conn):
                await conn.execute("INSERT INTO rollback_log (version) VALUES ({version})")
                await conn.execute("ALTER TABLE rollback_log DROP COLUMN c{version}")
        """
        )
        modules[f"v000{version}_c{version}"] = f"""
        import vecdb

        class C{version}(vecdb.Migration):
            '''Add column c{version}.'''
            version = {version}

            async def up(self, conn):
                await conn.execute("ALTER TABLE rollback_log ADD COLUMN c{version} int")
            {down}
        """
    return packages.write(name, modules)


async def test_rollback_over_three_versions_runs_down_newest_first(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = _logged_columns_package(packages, "mig_rb")
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        reverted = await db.migrations.rollback(to=1)
        assert [m.version for m in reverted] == [4, 3, 2]
        async with db.acquire() as conn:
            logged = await conn.fetch("SELECT version FROM rollback_log ORDER BY n")
            assert [r[0] for r in logged] == [4, 3, 2]
            assert await _columns(conn, "rollback_log") == ["n", "version"]
        states = {s.version: s.state for s in await db.migrations.status() if s.source == pkg}
        assert states == {1: "applied", 2: "pending", 3: "pending", 4: "pending"}
        events = [(e.version, e.event) for e in await db.migrations.history() if e.source == pkg]
        assert events[-3:] == [(4, "rolled_back"), (3, "rolled_back"), (2, "rolled_back")]
        # Nothing was deleted from the history: the applied events are still there.
        assert [v for v, e in events if e == "applied"] == [1, 2, 3, 4]


async def test_rollback_through_an_irreversible_migration_is_refused_before_any_change(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = _logged_columns_package(packages, "mig_irr", irreversible=2)
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        with pytest.raises(vecdb.IrreversibleMigrationError) as caught:
            await db.migrations.rollback(to=1)
        assert caught.value.version == 2
        assert "Nothing was changed" in str(caught.value)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM rollback_log") == 0
            assert await _columns(conn, "rollback_log") == ["n", "version", "c2", "c3", "c4"]
        assert {s.state for s in await db.migrations.status()} == {"applied"}


async def test_ten_thousand_rows_survive_up_down_up(dsn: str, packages: PackageWriter) -> None:
    pkg = packages.write("mig_10k", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        async with db.acquire() as conn:
            await conn.execute(
                "INSERT INTO items (id, payload) "
                "SELECT g, md5(g::text) FROM generate_series(1, 10000) g"
            )
            before = await _table_checksum(conn)
        await db.migrations.rollback(to=1)
        await db.migrations.upgrade()
        async with db.acquire() as conn:
            assert await _table_checksum(conn) == before
            assert await conn.fetchval("SELECT count(*) FROM items") == 10000
            assert await _columns(conn, "items") == ["id", "payload", "lang"]


async def test_changed_code_of_an_applied_migration_is_drift(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_drift", {"v0001_items": ITEMS})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()

    changed = ITEMS.replace("payload text NOT NULL", "payload text")
    pkg = packages.write("mig_drift", {"v0001_items": changed})
    with pytest.raises(vecdb.MigrationDriftError) as caught:
        await vecdb.connect(dsn, migrations=[pkg])
    error = caught.value
    assert (error.source, error.version) == ("mig_drift", 1)
    assert error.recorded != error.current
    assert error.recorded in str(error)
    assert error.current in str(error)


async def test_comment_docstring_and_formatting_edits_are_not_drift(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_cosmetic", {"v0001_items": ITEMS})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()

    cosmetic = (
        ITEMS.replace("'''Create the items table.'''", "'''Create the items table (reworded).'''")
        .replace("    version = 1", "    # a comment that changes nothing\n    version = (1)")
        .replace("async def up(self, conn):", "async def up(self,   conn):  # spacing")
    )
    pkg = packages.write("mig_cosmetic", {"v0001_items": cosmetic})
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        assert not any(s.drift for s in await db.migrations.status())


async def test_repair_accepts_new_code_and_logs_it(dsn: str, packages: PackageWriter) -> None:
    pkg = packages.write("mig_repair", {"v0001_items": ITEMS})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()
    pkg = packages.write("mig_repair", {"v0001_items": ITEMS.replace("NOT NULL", "")})

    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        assert [s.drift for s in await db.migrations.status() if s.source == pkg] == [True]
        repaired = await db.migrations.repair()
        assert [(r.source, r.version) for r in repaired] == [(pkg, 1)]
        event = (await db.migrations.history())[-1]
        assert (event.source, event.version, event.event) == (pkg, 1, "repaired")
        assert event.detail is not None
        assert event.detail["current"] == repaired[0].checksum
    # After the repair, a normal start succeeds.
    await (await vecdb.connect(dsn, migrations=[pkg])).close()


async def test_database_newer_than_the_code_raises_schema_too_new(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_new", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()
    pkg = packages.write("mig_new", {"v0001_items": ITEMS})
    with pytest.raises(vecdb.SchemaTooNewError) as caught:
        await vecdb.connect(dsn, migrations=[pkg])
    assert (caught.value.source, caught.value.known, caught.value.found) == (pkg, 1, 2)


async def test_check_mode_lists_pending_migrations_and_applies_nothing(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_check", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    with pytest.raises(vecdb.PendingMigrationsError) as caught:
        await vecdb.connect(dsn, migrations=[pkg], migrate="check")
    assert [(s, v) for s, v, _ in caught.value.pending] == [("vecdb", 1), (pkg, 1), (pkg, 2)]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.items')") is None
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("versions", "duplicates", "missing"),
    [
        pytest.param((1, 3), (), (2,), id="gap"),
        pytest.param((1, 2, 2), (2,), (), id="duplicate"),
        pytest.param((2, 3), (), (1,), id="missing-first"),
    ],
)
async def test_malformed_sequence_is_refused_before_touching_the_database(
    dsn: str, versions: tuple[int, ...], duplicates: tuple[int, ...], missing: tuple[int, ...]
) -> None:
    classes = [
        type(f"M{i}", (vecdb.Migration,), {"version": v, "up": ITEMS_UP, "source": "seq"})
        for i, v in enumerate(versions)
    ]
    with pytest.raises(vecdb.MigrationChainError) as caught:
        await vecdb.connect(dsn, migrations=classes)
    assert caught.value.duplicates == duplicates
    assert caught.value.missing == missing
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('vecdb')") is None
    finally:
        await conn.close()


async def ITEMS_UP(self: vecdb.Migration, conn: asyncpg.Connection) -> None:  # noqa: N802
    await conn.execute("SELECT 1")


async def test_plan_lists_pending_in_order_and_upgrade_to_stops_there(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_plan", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        plan = await db.migrations.plan()
        assert [(p.source, p.version) for p in plan] == [("vecdb", 1), (pkg, 1), (pkg, 2)]
        assert await db.migrations.history() == []
        await db.migrations.upgrade(to=1, source="vecdb")
        applied = await db.migrations.upgrade(to=1, source=pkg)
        assert [(a.source, a.version) for a in applied] == [(pkg, 1)]
        assert [(p.source, p.version) for p in await db.migrations.plan()] == [(pkg, 2)]


async def test_baseline_marks_versions_applied_without_running_them(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_base", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL)")
    finally:
        await conn.close()
    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        await db.migrations.upgrade(source="vecdb")
        await db.migrations.baseline(to=1, source=pkg)
        await db.migrations.upgrade()
        events = [(e.version, e.event) for e in await db.migrations.history() if e.source == pkg]
        assert events == [(1, "baselined"), (2, "applied")]


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE vecdb.migration_events SET error = 'x'", id="update"),
        pytest.param("DELETE FROM vecdb.migration_events", id="delete"),
        pytest.param("TRUNCATE vecdb.migration_events", id="truncate"),
    ],
)
async def test_history_cannot_be_rewritten(db: vecdb.Database, statement: str) -> None:
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM vecdb.migration_events") == 1


async def test_lock_held_elsewhere_raises_lock_timeout_naming_the_holder(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_lock", {"v0001_items": ITEMS})
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "the-holder"})
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_lock.LOCK_KEY)
        holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
        config = vecdb.MigrationConfig(lock_wait=0.3)
        with pytest.raises(vecdb.MigrationLockTimeout) as caught:
            await vecdb.connect(dsn, migrations=[pkg], migration_config=config)
        assert caught.value.holder is not None
        assert caught.value.holder["pid"] == holder_pid
        assert caught.value.holder["application_name"] == "the-holder"
        assert f"pid {holder_pid}" in str(caught.value)
        assert "the-holder" in str(caught.value)
    finally:
        await holder.close()


async def test_at_head_connect_takes_no_lock(dsn: str, packages: PackageWriter) -> None:
    pkg = packages.write("mig_head", {"v0001_items": ITEMS})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()
    holder = await asyncpg.connect(dsn)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_lock.LOCK_KEY)
        config = vecdb.MigrationConfig(lock_wait=0.1)
        async with vecdb.connect(dsn, migrations=[pkg], migration_config=config) as db:
            assert (await db.health()).ok
    finally:
        await holder.close()


async def test_upgrade_to_an_app_version_applies_vecdb_first_and_reports_when(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("mig_order", {"v0001_items": ITEMS, "v0002_lang": ADD_LANG})
    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        planned = await db.migrations.plan(to=1, source=pkg)
        assert [(p.source, p.version) for p in planned] == [("vecdb", 1), (pkg, 1)]
        applied = await db.migrations.upgrade(to=1, source=pkg)
        assert [(a.source, a.version, a.state) for a in applied] == [
            ("vecdb", 1, "applied"),
            (pkg, 1, "applied"),
        ]
        assert all(a.applied_at is not None for a in applied)
        assert all(a.recorded_checksum == a.checksum for a in applied)


async def test_baseline_reports_the_versions_as_applied(dsn: str, packages: PackageWriter) -> None:
    pkg = packages.write("mig_base2", {"v0001_items": ITEMS})
    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        marked = await db.migrations.baseline(to=1, source=pkg)
        assert [(m.version, m.state) for m in marked] == [(1, "applied")]
        assert marked[0].applied_at is not None


async def test_rollback_without_an_app_source_must_name_vecdb(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.ConfigError, match="source='vecdb'") as caught:
        await db.migrations.rollback(to=0)
    assert caught.value.setting == "source"
    assert {s.state for s in await db.migrations.status()} == {"applied"}
