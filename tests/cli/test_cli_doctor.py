"""``vecdb doctor``, run end to end as a subprocess: its table, its JSON, its exit codes.

What each check finds is specified in tests/server/test_doctor.py; here, only
what the command adds: the output and the exit code that a script or a CI
job acts on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import asyncpg
import pytest

import vecdb
from vecdb._cli.doctor import exit_code
from vecdb._server.doctor import CHECKS, Check


def _doctor(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", "doctor", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _warn_on_settings(dsn: str) -> None:
    """jit on for this database: the settings check warns, on any server."""
    database = urlsplit(dsn).path.lstrip("/")
    await _execute(dsn, f'ALTER DATABASE "{database}" SET jit = on')


async def test_doctor_prints_a_table_with_one_row_per_check_in_order(
    db: vecdb.Database, dsn: str
) -> None:
    done = _doctor(dsn)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["check", "status", "evidence", "fix"]
    assert set(lines[1]) == {"-", " "}
    assert [line.split()[0] for line in lines[2 : 2 + len(CHECKS)]] == list(CHECKS)
    assert lines[-1].endswith(".")
    assert " ok" in lines[-1]


async def test_doctor_json_gives_every_check_with_name_status_evidence_and_fix(
    db: vecdb.Database, dsn: str
) -> None:
    done = _doctor(dsn, "--json")
    assert done.returncode == 0, done.stderr
    checks = json.loads(done.stdout)
    assert [c["name"] for c in checks] == list(CHECKS)
    assert all(list(c) == ["name", "status", "evidence", "fix"] for c in checks)
    assert {c["status"] for c in checks} <= {"ok", "warn", "fail", "skip"}


async def test_doctor_exits_1_when_a_check_fails(db: vecdb.Database, dsn: str) -> None:
    await _execute(dsn, "CREATE TABLE dup (x int)", "INSERT INTO dup VALUES (1), (1)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _execute(dsn, "CREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x)")
    done = _doctor(dsn)
    assert done.returncode == 1
    [row] = [line for line in done.stdout.splitlines() if line.startswith("invalid_indexes")]
    assert row.split()[1] == "fail"
    assert "public.dup_x" in row


async def test_doctor_exits_0_on_warnings_and_3_with_strict(db: vecdb.Database, dsn: str) -> None:
    await _warn_on_settings(dsn)
    plain, strict = _doctor(dsn), _doctor(dsn, "--strict")
    assert plain.returncode == 0, plain.stderr
    assert strict.returncode == 3, strict.stderr
    [row] = [line for line in strict.stdout.splitlines() if line.startswith("settings")]
    assert row.split()[1] == "warn"


async def test_doctor_judges_the_settings_for_the_memory_and_cores_given(
    db: vecdb.Database, dsn: str
) -> None:
    done = _doctor(dsn, "--memory", "64GB", "--cores", "16", "--json")
    assert done.returncode == 0, done.stderr
    [settings] = [c for c in json.loads(done.stdout) if c["name"] == "settings"]
    assert (
        "judged for 64.0 GB (given --memory) and 16 cores (given --cores)" in (settings["evidence"])
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--memory", "lots"), "invalid size 'lots'", id="memory"),
        pytest.param(("--cores", "-2"), "--cores must be a positive number", id="cores"),
    ],
)
def test_doctor_refuses_a_machine_it_cannot_read(args: tuple[str, str], message: str) -> None:
    done = _doctor("postgresql://nobody@127.0.0.1:1/x", *args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize(
    ("statuses", "strict", "code"),
    [
        pytest.param(("ok", "skip"), True, 0, id="skip-never-counts"),
        pytest.param(("ok", "warn"), False, 0, id="warn"),
        pytest.param(("ok", "warn"), True, 3, id="warn-strict"),
        pytest.param(("warn", "fail"), True, 1, id="fail-wins"),
    ],
)
def test_exit_code_follows_the_worst_status(
    statuses: tuple[str, ...], strict: bool, code: int
) -> None:
    checks = [Check(f"c{i}", status, "evidence") for i, status in enumerate(statuses)]  # type: ignore[arg-type]
    assert exit_code(checks, strict=strict) == code
