"""What ``vecdb init`` and ``vecdb new-migration`` write: the files and their names (no I/O).

A migration module is named ``v<NNNN>_<slug>.py`` after its version, so that
two people who each made "the next" migration on their own branch end up with
two files of one version, which the chain check (duplicate versions) refuses
at the next ``new-migration`` or ``connect()``.
"""

from __future__ import annotations

import keyword
import re

__all__ = ["VERSION_FILE", "class_name", "file_name", "init_module", "migration_module", "slug"]

VERSION_FILE = re.compile(r"^v(\d+)_\w*\.py$")
"""A migration module's file name; the number is its version."""

_WORD = re.compile(r"[A-Za-z0-9]+")

_INIT = '''"""{package}: this application's vecdb migrations, one module per version.

Add one with ``vecdb new-migration "what it does" --package {package}``.
"""

# The name the database records these migrations under: keep it when the
# package moves, or every migration would look new.
SOURCE = "{source}"
'''

_MIGRATION = '''"""{title}."""

from __future__ import annotations

import vecdb


class {cls}(vecdb.Migration):
    """{title}."""

    version = {version}
    # transactional = False  # for CREATE INDEX CONCURRENTLY and batched backfills

    async def up(self, conn: vecdb.Connection) -> None:
        raise NotImplementedError("write the change, e.g. await conn.execute('ALTER TABLE ...')")

    async def down(self, conn: vecdb.Connection) -> None:
        # Delete down() if the change cannot be undone: rollback then refuses it.
        raise NotImplementedError("undo what up() did")
'''


def slug(title: str) -> str:
    """``"Add language column!"`` -> ``"add_language_column"`` (at most 40 characters)."""
    words = _WORD.findall(title.lower())
    return "_".join(words)[:40].rstrip("_") or "migration"


def class_name(title: str) -> str:
    """``"add language column"`` -> ``"AddLanguageColumn"``, a valid Python class name."""
    name = "".join(w[:1].upper() + w[1:] for w in _WORD.findall(title))[:60] or "Migration"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "Migration" + name
    return name


def file_name(version: int, title: str) -> str:
    """The module's file name: ``v0003_add_language_column.py``."""
    return f"v{version:04d}_{slug(title)}.py"


def init_module(package: str, source: str) -> str:
    """The package's ``__init__.py``."""
    return _INIT.format(package=package, source=source)


def migration_module(version: int, title: str) -> str:
    """A migration module with a class, its version, a docstring and ``up``/``down`` stubs."""
    text = " ".join(title.split()).rstrip(".")
    text = (text[:1].upper() + text[1:]).replace('"""', "'''").replace("\\", "/")
    return _MIGRATION.format(cls=class_name(title), title=text, version=version)
