"""The ``vecdb`` command line, run end to end as a subprocess against a real database.

Each test writes an application migration package (source ``appmig``) into its
own temporary directory and runs ``python -m vecdb ... --migrations <package>``
from there, so the package is imported the way a user's project would be. The
state a test starts from is set up in-process with the library (faster than
another subprocess); only the command under test runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import vecdb

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"

MIGRATIONS = {
    "__init__.py": '"""Test application migrations."""\n\nSOURCE = "appmig"\n',
    "v0001_items.py": '''
        import vecdb

        class CreateItems(vecdb.Migration):
            """Create the items table."""

            version = 1

            async def up(self, conn):
                await conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
    ''',
    "v0002_name.py": '''
        import vecdb

        class AddName(vecdb.Migration):
            """Add a name to items."""

            version = 2

            async def up(self, conn):
                await conn.execute("ALTER TABLE items ADD COLUMN name text")

            async def down(self, conn):
                await conn.execute("ALTER TABLE items DROP COLUMN name")
    ''',
    "v0003_index.py": '''
        import vecdb

        class IndexName(vecdb.Migration):
            """Index items by name."""

            version = 3

            async def up(self, conn):
                await conn.execute("CREATE INDEX items_name ON items (name)")

            async def down(self, conn):
                await conn.execute("DROP INDEX items_name")
    ''',
}


@dataclasses.dataclass
class Cli:
    """Runs ``python -m vecdb`` in a project directory against one database."""

    cwd: Path
    dsn: str
    package: str

    def raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VECDB_")}
        return subprocess.run(
            [sys.executable, "-m", "vecdb", *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.raw(*args, "--dsn", self.dsn, "--migrations", self.package)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def states(self) -> dict[tuple[str, int], str]:
        return {(r["source"], r["version"]): r["state"] for r in self.json("status")}

    def edit(self, module: str, old: str, new: str) -> None:
        path = self.cwd / self.package / module
        path.write_text(path.read_text().replace(old, new))

    def given_migrated(self, to: int | None = None) -> None:
        """Set up the starting state in-process: everything (or ``appmig`` up to ``to``)."""

        async def run() -> None:
            async with vecdb.connect(
                self.dsn,
                migrations=[self.package],
                migrate="off",
                pool=vecdb.PoolConfig(min_size=0, max_size=1),
            ) as db:
                await db.migrations.upgrade(to, "appmig" if to is not None else None)

        asyncio.run(run())


@pytest.fixture
def cli(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # A package name of its own per test: given_migrated() imports it in this process.
    name = f"appmig_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    for filename, text in MIGRATIONS.items():
        (package / filename).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path))
    return Cli(cwd=tmp_path, dsn=dsn, package=name)


def versions(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["source"], r["version"]) for r in rows]


def fetchval(dsn: str, query: str) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return asyncio.run(run())


ALL = [("vecdb", 1), ("appmig", 1), ("appmig", 2), ("appmig", 3)]


# -- status ---------------------------------------------------------------------------


def test_status_shows_an_aligned_table_of_pending_migrations_on_a_fresh_database(cli: Cli):
    lines = cli.ok("status").splitlines()
    assert lines[0].split() == [
        "source", "version", "description", "state", "applied_at", "checksum", "drift",
    ]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + len(ALL)
    assert all(" pending " in line and line.endswith(" no") for line in lines[2:])
    assert "appmig        2  Add a name to items." in lines[4]
    assert len({line.index("pending") for line in lines[2:]}) == 1  # aligned


def test_status_json_uses_the_dataclass_field_names_and_iso_datetimes(cli: Cli):
    cli.given_migrated()
    rows = cli.json("status")
    assert versions(rows) == ALL
    fields = [f.name for f in dataclasses.fields(vecdb.MigrationStatus)]
    assert all(list(row) == fields for row in rows)
    assert {row["state"] for row in rows} == {"applied"}
    assert all(dt.datetime.fromisoformat(row["applied_at"]).tzinfo for row in rows)


def test_status_check_exits_3_while_migrations_are_pending(cli: Cli):
    assert cli("status", "--check").returncode == 3


def test_status_check_exits_0_once_everything_is_applied(cli: Cli):
    cli.given_migrated()
    assert cli("status", "--check").returncode == 0


# -- plan, migrate, rollback ----------------------------------------------------------


def test_plan_lists_what_migrate_would_run_and_applies_nothing(cli: Cli):
    out = cli.ok("plan")
    assert out.splitlines()[0] == "Would apply 4 migration(s):"
    assert [line.split()[:2] for line in out.splitlines()[3:]] == [
        [source, str(version)] for source, version in ALL
    ]
    assert set(cli.states().values()) == {"pending"}


def test_plan_to_lists_vecdb_first_then_the_source_up_to_that_version(cli: Cli):
    assert versions(cli.json("plan", "--to", "2", "--source", "appmig")) == ALL[:3]


def test_migrate_applies_everything_in_order_then_says_already_at_head(cli: Cli):
    out = cli.ok("migrate")
    assert out.splitlines()[0] == "Applied 4 migration(s):"
    assert [line.split()[:2] for line in out.splitlines()[3:]] == [
        [source, str(version)] for source, version in ALL
    ]
    assert cli.ok("migrate").strip() == "Already at head."
    assert set(cli.states().values()) == {"applied"}


def test_migrate_to_stops_at_that_version(cli: Cli):
    applied = cli.json("migrate", "--to", "2")
    assert [v for s, v in versions(applied) if s == "appmig"] == [1, 2]
    states = cli.states()
    assert states[("appmig", 2)] == "applied"
    assert states[("appmig", 3)] == "pending"


def test_rollback_to_reverts_newest_first(cli: Cli):
    cli.given_migrated()
    out = cli.ok("rollback", "--to", "1")
    assert out.splitlines()[0] == "Rolled back 2 migration(s):"
    assert [line.split()[:2] for line in out.splitlines()[3:]] == [["appmig", "3"], ["appmig", "2"]]
    states = cli.states()
    assert [states[("appmig", v)] for v in (1, 2, 3)] == ["applied", "pending", "pending"]
    assert fetchval(cli.dsn, "SELECT to_regclass('items_name')") is None


def test_rollback_without_anything_to_revert_says_so(cli: Cli):
    cli.given_migrated()
    assert cli.ok("rollback", "--to", "3").strip() == "Nothing to roll back."


# -- history --------------------------------------------------------------------------


def test_history_json_lists_applied_and_rolled_back_events_oldest_first(cli: Cli):
    cli.given_migrated()
    cli.ok("rollback", "--to", "2")
    events = cli.json("history")
    assert [(e["source"], e["version"], e["event"]) for e in events] == [
        *((source, version, "applied") for source, version in ALL),
        ("appmig", 3, "rolled_back"),
    ]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert list(events[0]) == [f.name for f in dataclasses.fields(vecdb.HistoryEvent)]
    assert dt.datetime.fromisoformat(events[0]["started_at"]).tzinfo is not None


def test_history_table_shows_one_line_per_event(cli: Cli):
    cli.given_migrated()
    lines = cli.ok("history").splitlines()
    assert lines[0].split()[:2] == ["id", "time"]
    assert len(lines) == 2 + len(ALL)
    assert all(" applied " in line and " ms" in line for line in lines[2:])


# -- drift and repair -----------------------------------------------------------------


def test_status_shows_drift_after_an_applied_migration_file_changes(cli: Cli):
    cli.given_migrated()
    cli.edit("v0002_name.py", "name text", "name varchar(100)")
    drift = {(r["source"], r["version"]): r["drift"] for r in cli.json("status")}
    assert drift == {key: key == ("appmig", 2) for key in ALL}
    assert cli("status", "--check").returncode == 3


def test_migrate_refuses_a_drifted_schema_and_points_to_repair(cli: Cli):
    cli.given_migrated(to=2)
    cli.edit("v0002_name.py", "name text", "name varchar(100)")
    result = cli("migrate")
    assert result.returncode == 1
    assert result.stderr.startswith("error: migration appmig 2 (Add a name to items.) was changed")
    assert "vecdb repair" in result.stderr


def test_repair_accepts_the_changed_checksum(cli: Cli):
    cli.given_migrated()
    cli.edit("v0002_name.py", "name text", "name varchar(100)")
    repaired = cli.json("repair")
    assert versions(repaired) == [("appmig", 2)]
    assert not any(row["drift"] for row in cli.json("status"))
    assert cli.json("history")[-1]["event"] == "repaired"


# -- baseline -------------------------------------------------------------------------


def test_baseline_records_versions_as_applied_without_running_them(cli: Cli):
    out = cli.ok("baseline", "--to", "2")
    assert out.splitlines()[0] == "Baselined 2 migration(s):"
    states = cli.states()
    assert [states[("appmig", v)] for v in (1, 2, 3)] == ["applied", "applied", "pending"]
    assert [e["event"] for e in cli.json("history")] == ["baselined", "baselined"]
    assert fetchval(cli.dsn, "SELECT to_regclass('items')") is None


# -- errors ---------------------------------------------------------------------------


def test_rollback_past_an_irreversible_migration_exits_1_and_changes_nothing(cli: Cli):
    cli.given_migrated()
    result = cli("rollback", "--to", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot roll back 'appmig' to 0")
    assert "Nothing was changed" in result.stderr
    assert set(cli.states().values()) == {"applied"}


def test_a_failing_migration_exits_1_and_says_so_once(cli: Cli):
    cli.edit("v0002_name.py", "name text", "name no_such_type")
    result = cli("migrate")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: migration appmig 2 (Add a name to items.) could not be applied: "
        'type "no_such_type" does not exist'
    )
    assert result.stderr.count("no_such_type") == 1  # not logged as well as printed


def test_an_unreachable_server_exits_1_with_a_clear_message(cli: Cli):
    result = cli.raw("status", "--dsn", UNREACHABLE)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot connect to postgresql://nobody@127.0.0.1:1/x")


def test_json_errors_are_an_object_on_stdout_as_well(cli: Cli):
    result = cli.raw("status", "--dsn", UNREACHABLE, "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConnectError"
    assert error["message"].startswith("cannot connect to")


def test_an_unimportable_migration_package_exits_1(cli: Cli):
    result = cli.raw("status", "--dsn", cli.dsn, "--migrations", "no_such_package")
    assert result.returncode == 1
    assert "cannot import migration package 'no_such_package'" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-command"),
        pytest.param(["rollback"], id="rollback-without-to"),
        pytest.param(["migrate", "--to", "two"], id="to-not-an-integer"),
    ],
)
def test_bad_arguments_exit_2_with_usage(cli: Cli, args: list[str]):
    result = cli.raw(*args, "--dsn", UNREACHABLE)
    assert result.returncode == 2
    assert "usage: vecdb" in result.stderr


# -- options --------------------------------------------------------------------------


def test_global_options_may_come_before_the_command(cli: Cli):
    result = cli.raw("--dsn", cli.dsn, "--migrations", cli.package, "--json", "plan")
    assert result.returncode == 0, result.stderr
    assert versions(json.loads(result.stdout)) == ALL


def test_verbose_logs_each_migration_step_to_stderr_and_is_quiet_otherwise(cli: Cli):
    quiet = cli("migrate", "--to", "1")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    result = cli("migrate", "-v")
    assert result.returncode == 0, result.stderr
    assert "vecdb.migrations INFO Running appmig 2 (Add a name to items.)" in result.stderr


def test_invalid_indexes_reports_none_on_a_clean_database(cli: Cli):
    assert cli.ok("invalid-indexes").strip() == "No invalid indexes."
