"""``vecdb grant ROLE``, run as a subprocess: the statements, ``--json``, ``--apply``, errors.

What the runtime role can then do is specified in tests/deploy/test_least_privilege.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

import vecdb

from ..deploy import _parts


class Chunk(vecdb.Record):
    id: int
    text: str
    embedding: vecdb.Vector


def _grant(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", "grant", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _privileges(dsn: str, role: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_schema || '.' || table_name || ':' || privilege_type AS p "
            "FROM information_schema.role_table_grants WHERE grantee = $1 ORDER BY 1",
            role,
        )
        return [r["p"] for r in rows]
    finally:
        await conn.close()


@pytest.fixture
async def role(dsn: str, db: vecdb.Database) -> AsyncIterator[str]:
    await db.collection("chunks", Chunk, dim=2)
    async with _parts.new_role(dsn) as name:
        yield name


async def test_grant_prints_the_statements_and_changes_nothing(dsn: str, role: str) -> None:
    done = _grant(dsn, role)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.endswith(";") for line in lines)
    assert f'GRANT USAGE ON SCHEMA "vecdb" TO "{role}";' in lines
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "vecdb" TO "{role}";' in lines
    assert any(
        line.startswith("GRANT SELECT, INSERT, UPDATE, DELETE") and '"public"."chunks"' in line
        for line in lines
    )
    assert not any("CREATE" in line.split(" ON ")[0] for line in lines)  # no DDL right
    assert await _privileges(dsn, role) == []


async def test_grant_json_lists_the_statements(dsn: str, role: str) -> None:
    done = _grant(dsn, role, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["role"] == role
    assert data["applied"] is False
    assert data["statements"] == _grant(dsn, role).stdout.replace(";", "").splitlines()


async def test_grant_apply_runs_them(dsn: str, role: str) -> None:
    done = _grant(dsn, role, "--apply")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("-- applied:")
    privileges = await _privileges(dsn, role)
    for kind in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert f"public.chunks:{kind}" in privileges
    assert "vecdb.collections:SELECT" in privileges
    assert "vecdb.collections:INSERT" not in privileges


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("no_such_role_x", "does not exist; create it first", id="missing"),
        pytest.param("Robert'); DROP TABLE x;--", "invalid role name", id="injection"),
    ],
)
async def test_grant_refuses_a_bad_role_and_changes_nothing(
    dsn: str, role: str, name: str, message: str
) -> None:
    done = _grant(dsn, name, "--apply")
    assert done.returncode == 1
    assert message in done.stderr
    assert await _privileges(dsn, role) == []
