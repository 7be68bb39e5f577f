"""The tutorial in docs/migrations.md, run exactly as written, step by step.

Marked blocks: ``tutorial-shell`` (``$ vecdb ...`` lines, run as ``python -m
vecdb`` in a project directory), ``tutorial-file: PATH`` (the file as the
reader writes it, over the stub that ``new-migration`` made there: the stub
must exist first) and ``tutorial-run`` (Python run in order in one namespace,
with top-level ``await``; ``dsn`` is this test's database).
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.cli.test_cli_scaffold import vecdb_cli
from vecdb._migrate.sources import load_package

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"
_BLOCK = re.compile(r"<!-- (tutorial-[a-z]+)(?::\s*(\S+))? -->\n```\w+\n(.*?)```", re.DOTALL)


def tutorial_steps() -> list[tuple[str, str | None, str]]:
    return [(kind, arg, body) for kind, arg, body in _BLOCK.findall(DOC.read_text())]


def test_the_tutorial_has_every_step() -> None:
    kinds = [kind for kind, _, _ in tutorial_steps()]
    assert kinds.count("tutorial-shell") == 3
    assert kinds.count("tutorial-file") == 2
    assert kinds.count("tutorial-run") == 6


async def test_the_migrations_tutorial_runs_as_written(
    tmp_path: Path,
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    pgbouncer: Callable[[str], str] | None,
) -> None:
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    database = urlsplit(dsn).path.lstrip("/")
    namespace: dict[str, Any] = {
        "dsn": dsn,
        "direct_dsn": dsn,
        "pgbouncer_dsn": pgbouncer(database) if pgbouncer else None,
    }
    skipped = []
    for kind, arg, body in tutorial_steps():
        if kind == "tutorial-shell":
            for line in body.splitlines():
                assert line.startswith("$ vecdb "), line
                args = shlex.split(line.removeprefix("$ vecdb "))
                done = vecdb_cli(project, *args)
                assert done.returncode == 0, done.stderr
        elif kind == "tutorial-file":
            target = project / str(arg)
            assert target.exists(), f"{arg}: the tutorial's command should have made it"
            target.write_text(body)
            for name in [m for m in sys.modules if m.startswith("myapp.migrations")]:
                monkeypatch.delitem(sys.modules, name)
        elif arg == "pgbouncer" and pgbouncer is None:
            skipped.append(body)
        else:
            # dont_inherit: not this file's `from __future__ import annotations`.
            code = compile(
                body,
                "docs/migrations.md",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                dont_inherit=True,
            )
            result = eval(code, namespace)  # noqa: S307 - the project's own documentation
            if result is not None:
                await result
    # Resumable, as the tutorial says: rows that lost their value are filled again.
    await _backfill_resumes(namespace, dsn)
    if skipped:
        pytest.skip("PgBouncer is not installed: the tutorial's PgBouncer step was not run")


async def _backfill_resumes(namespace: dict[str, Any], dsn: str) -> None:
    backfill = load_package("myapp.migrations").get(2).cls()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE chunks SET lang = NULL WHERE id >= 1200")
        await backfill.up(conn)
        assert await conn.fetchval("SELECT count(*) FROM chunks WHERE lang IS NULL") == 0
    finally:
        await conn.close()
    assert namespace["chunks"].name == "chunks"
