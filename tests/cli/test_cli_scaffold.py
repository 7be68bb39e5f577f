"""``vecdb init`` and ``vecdb new-migration``, run as a user runs them: a subprocess in a project.

Neither needs a database. Each bad input is refused with exit 1, a message
saying what to do, and the project's files exactly as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vecdb
from vecdb._migrate.sources import load_package


def vecdb_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECDB_")}
    return subprocess.run(
        [sys.executable, "-m", "vecdb", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with an (empty) ``myapp`` package, importable in this process too."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    for name in [m for m in sys.modules if m == "myapp" or m.startswith("myapp.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def write_migration(project: Path, file: str, version: int, cls: str) -> None:
    (project / "myapp" / "migrations" / file).write_text(
        textwrap.dedent(f'''
            import vecdb

            class {cls}(vecdb.Migration):
                """{cls}."""

                version = {version}

                async def up(self, conn):
                    await conn.execute("SELECT 1")
        ''')
    )


def test_init_creates_the_package_and_says_how_to_pass_it_to_connect(project: Path) -> None:
    done = vecdb_cli(project, "init", "myapp/migrations")
    assert done.returncode == 0, done.stderr
    assert 'vecdb.connect(migrations=["myapp.migrations"])' in done.stdout
    assert 'vecdb new-migration "create my table" --package myapp.migrations' in done.stdout
    source = load_package("myapp.migrations")
    assert (source.name, source.head) == ("myapp", 0)


def test_init_json_reports_the_package(project: Path) -> None:
    done = vecdb_cli(project, "init", "myapp/migrations", "--json")
    assert json.loads(done.stdout) == {
        "path": "myapp/migrations",
        "package": "myapp.migrations",
        "source": "myapp",
    }


@pytest.mark.parametrize("existing", ["README.md", "__init__.py"], ids=["any-file", "a-package"])
def test_init_refuses_a_directory_that_holds_files(project: Path, existing: str) -> None:
    (project / "myapp" / "migrations").mkdir()
    (project / "myapp" / "migrations" / existing).write_text("mine\n")
    before = snapshot(project)
    done = vecdb_cli(project, "init", "myapp/migrations")
    assert done.returncode == 1
    assert f"already holds files ({existing})" in done.stderr
    assert "vecdb new-migration" in done.stderr
    assert snapshot(project) == before


def test_init_into_an_empty_directory_is_fine(project: Path) -> None:
    (project / "myapp" / "migrations").mkdir()
    assert vecdb_cli(project, "init", "myapp/migrations").returncode == 0


def test_new_migration_writes_the_next_version_with_stubs(project: Path) -> None:
    assert vecdb_cli(project, "init", "myapp/migrations").returncode == 0
    first = vecdb_cli(project, "new-migration", "create notes", "--package", "myapp.migrations")
    second = vecdb_cli(
        project, "new-migration", "add language column", "--package", "myapp.migrations"
    )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "version 2 of source 'myapp'" in second.stdout
    files = sorted(p.name for p in (project / "myapp" / "migrations").glob("v*.py"))
    assert files == ["v0001_create_notes.py", "v0002_add_language_column.py"]
    source = load_package("myapp.migrations")
    spec = source.get(2)
    assert spec.cls.__name__ == "AddLanguageColumn"
    assert spec.description == "Add language column."
    assert spec.reversible
    assert spec.transactional


async def test_a_generated_stub_fails_clearly_until_it_is_filled_in(
    project: Path, dsn: str
) -> None:
    assert vecdb_cli(project, "init", "myapp/migrations").returncode == 0
    assert (
        vecdb_cli(project, "new-migration", "notes", "--package", "myapp.migrations").returncode
        == 0
    )
    with pytest.raises(vecdb.MigrationError, match="write the change") as caught:
        await vecdb.connect(dsn, migrations=["myapp.migrations"])
    assert (caught.value.source, caught.value.version) == ("myapp", 1)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([("v0001_a.py", 1, "A"), ("v0003_c.py", 3, "C")], "missing versions [2]"),
        (
            [
                ("v0001_a.py", 1, "A"),
                ("v0002_mine.py", 2, "Mine"),
                ("v0002_theirs.py", 2, "Theirs"),
            ],
            "duplicate versions (2: Mine, Theirs)",
        ),
        (
            # Two branches' files of one version, one of them renumbered in its class only.
            [("v0001_a.py", 1, "A"), ("v0002_mine.py", 2, "Mine"), ("v0002_theirs.py", 3, "Th")],
            "several files of one version (2: v0002_mine.py, v0002_theirs.py)",
        ),
    ],
    ids=["gap", "duplicate-versions", "two-files-of-one-version"],
)
def test_new_migration_refuses_a_package_that_is_not_a_sequence(
    project: Path, files: list[tuple[str, int, str]], expected: str
) -> None:
    assert vecdb_cli(project, "init", "myapp/migrations").returncode == 0
    for file, version, cls in files:
        write_migration(project, file, version, cls)
    before = snapshot(project)
    done = vecdb_cli(project, "new-migration", "next", "--package", "myapp.migrations")
    assert done.returncode == 1
    assert "no migration written" in done.stderr
    assert expected in done.stderr
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("package", "breakage", "expected"),
    [
        ("myapp.nope", None, "cannot import migration package 'myapp.nope'"),
        ("myapp.migrations", "def broken(:\n", "does not import: SyntaxError"),
        ("myapp.migrations", "raise RuntimeError('no config')\n", "RuntimeError: no config"),
    ],
    ids=["missing", "syntax-error", "raises-on-import"],
)
def test_new_migration_refuses_a_package_that_does_not_import(
    project: Path, package: str, breakage: str | None, expected: str
) -> None:
    assert vecdb_cli(project, "init", "myapp/migrations").returncode == 0
    if breakage is not None:
        (project / "myapp" / "migrations" / "v0001_broken.py").write_text(breakage)
    before = snapshot(project)
    done = vecdb_cli(project, "new-migration", "next", "--package", package)
    assert done.returncode == 1
    assert "no migration written" in done.stderr
    assert expected in done.stderr
    assert snapshot(project) == before
