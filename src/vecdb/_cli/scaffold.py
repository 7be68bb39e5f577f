"""``vecdb init`` and ``vecdb new-migration``: start a migrations package, add to it.

Usage::

    vecdb init myapp/migrations
    vecdb new-migration "add language column" --package myapp.migrations

Neither touches a database. ``init`` refuses a directory that already holds
files; ``new-migration`` refuses a package that does not import, or whose
migrations are not a sequence 1..N (gaps, duplicate versions, two files of one
version made on two branches): the checks ``connect()`` makes. Nothing is
written when either refuses.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from .._errors import ConfigError, MigrationChainError
from .._migrate import scaffold as _scaffold
from .._migrate.sources import load_package
from .output import AddCommand, Outcome

__all__ = ["Offline", "add_commands"]

Offline: TypeAlias = Callable[[argparse.Namespace], Outcome]
"""A command that needs no database: set as ``offline`` on its subparser."""


def _package_name(path: Path) -> str:
    """The dotted name ``path`` imports as: its name, under every parent that is a package."""
    parts = [path.name]
    parent = path.parent
    while (parent / "__init__.py").is_file():
        parts.insert(0, parent.name)
        parent = parent.parent
    return ".".join(parts)


def init(args: argparse.Namespace) -> Outcome:
    """Create the migrations package at ``args.path``."""
    path = Path(args.path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a directory; choose another path")
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(
            f"{path} already holds files ({', '.join(sorted(p.name for p in path.iterdir()))}); "
            "vecdb init writes only into a new or empty directory. Choose another path, or "
            'add a migration to an existing package with `vecdb new-migration "..." --package`.'
        )
    if not path.name.isidentifier():
        raise ConfigError(
            f"{path.name!r} cannot be imported as a Python package name; use letters, "
            "digits and underscores (e.g. myapp/migrations)"
        )
    package = _package_name(path.resolve())
    source = package.split(".")[0]
    path.mkdir(parents=True, exist_ok=True)
    (path / "__init__.py").write_text(_scaffold.init_module(package, source))
    text = (
        f"created {path / '__init__.py'} (migration source {source!r})\n\n"
        "Pass the package to connect():\n\n"
        f'    db = await vecdb.connect(migrations=["{package}"])\n\n'
        "then add the first migration:\n\n"
        f'    vecdb new-migration "create my table" --package {package}'
    )
    if "." not in package and path.parent.resolve() != Path.cwd().resolve():
        text += (
            f"\n\nnote: {path.parent} is not a package (no __init__.py), so this one imports "
            f"as {package!r} only with {path.parent} on sys.path"
        )
    return Outcome({"path": str(path), "package": package, "source": source}, text)


def _version_files(directory: Path) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for child in sorted(directory.iterdir()):
        match = _scaffold.VERSION_FILE.match(child.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(child.name)
    return found


def new_migration(args: argparse.Namespace) -> Outcome:
    """Write the next version's module into ``args.package``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--package myapp.migrations` from the project root
    name: str = args.package
    try:
        source = load_package(name)
    except MigrationChainError as exc:
        raise MigrationChainError(
            f"no migration written: {exc}",
            source=exc.source,
            duplicates=exc.duplicates,
            missing=exc.missing,
        ) from exc
    except Exception as exc:  # whatever the user's module raises while importing
        raise ConfigError(
            f"no migration written: package {name!r} does not import: "
            f"{type(exc).__name__}: {exc}. Fix it (run `python -c 'import {name}'`), then "
            "run new-migration again.",
            setting="--package",
        ) from exc
    package = importlib.import_module(name)
    paths = list(getattr(package, "__path__", []))
    if not paths:
        raise ConfigError(f"{name!r} is a module, not a package: pass the migrations package")
    directory = Path(paths[0])
    # Two branches that each added "the next" version: the files say so even when
    # one of them has no class yet (or both classes were renamed alike).
    clashes = {v: files for v, files in _version_files(directory).items() if len(files) > 1}
    if clashes:
        listed = "; ".join(f"{v}: {', '.join(files)}" for v, files in sorted(clashes.items()))
        raise MigrationChainError(
            f"no migration written: package {name!r} has several files of one version "
            f"({listed}), as when two branches each added the next migration. Renumber "
            "one of them (its file name and `version`), then run new-migration again.",
            source=source.name,
            duplicates=sorted(clashes),
        )
    version = source.head + 1
    target = directory / _scaffold.file_name(version, args.title)
    target.write_text(_scaffold.migration_module(version, args.title))
    text = (
        f"created {target} (version {version} of source {source.name!r}): fill in up() and "
        "down(); it runs at the next connect()"
    )
    return Outcome({"path": str(target), "version": version, "source": source.name}, text)


async def _no_database(*_: object) -> Outcome:  # pragma: no cover - main runs `offline` instead
    raise AssertionError("offline commands run without a database")


def add_commands(command: AddCommand) -> None:
    """Register ``init`` and ``new-migration``; they run without connecting (``offline``)."""
    sub = command("init", _no_database, "create a migrations package at PATH")
    sub.add_argument("path", metavar="PATH", help="the package's directory, e.g. myapp/migrations")
    sub.set_defaults(offline=init)
    sub = command("new-migration", _no_database, "write the next migration's module into a package")
    sub.add_argument("title", help='what it does, e.g. "add language column"')
    sub.add_argument(
        "--package", required=True, metavar="PKG", help="the migrations package (importable)"
    )
    sub.set_defaults(offline=new_migration)
