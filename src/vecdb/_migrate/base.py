"""`Migration`, the base class of every migration, and its checksum.

A migration is a class: ``version`` (1, 2, 3, ... within its source), its
docstring as the description, ``transactional``, ``async up(conn)`` and an
optional ``async down(conn)``. The checksum is taken over the class's syntax
tree with docstrings removed, so comments, docstrings and formatting can change
freely while any change to what the migration does is caught as drift.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
import weakref
from typing import Any, ClassVar

from .._typing import Connection

__all__ = ["Migration", "checksum", "describe", "is_reversible"]


class Migration:
    """Base class of migrations.

    Subclass it once per schema change. The docstring's first line is the
    description shown by ``status()`` and ``history()``.

    Example:
        >>> class AddLang(Migration):
        ...     '''Add a language column to chunks.'''
        ...     version = 3
        ...
        ...     async def up(self, conn):
        ...         await conn.execute("ALTER TABLE chunks ADD COLUMN lang text")
        ...
        ...     async def down(self, conn):
        ...         await conn.execute("ALTER TABLE chunks DROP COLUMN lang")

    Attributes:
        version: Position in its source's sequence, starting at 1, without gaps.
        transactional: ``True`` (default): ``up``/``down`` and the history row commit
            together or not at all. ``False``: run outside a transaction, for
            statements such as ``CREATE INDEX CONCURRENTLY``; such a migration
            must be idempotent (``IF NOT EXISTS``), since after a crash it is run
            again, and must issue one statement per ``execute`` call.
        source: For a class passed directly to ``connect(migrations=[...])``, the
            source it belongs to (default ``"app"``); classes found in a package
            belong to that package's source.
    """

    version: ClassVar[int]
    transactional: ClassVar[bool] = True
    source: ClassVar[str | None] = None

    async def up(self, conn: Connection) -> None:
        """Apply the change."""
        raise NotImplementedError

    async def down(self, conn: Connection) -> None:
        """Undo the change; leave it undefined for an irreversible migration."""
        raise NotImplementedError


def describe(cls: type[Migration]) -> str:
    """The first line of the migration's docstring, or its class name."""
    doc = inspect.getdoc(cls)
    if not doc or cls.__doc__ is None:
        return cls.__name__
    return doc.strip().splitlines()[0]


def is_reversible(cls: type[Migration]) -> bool:
    """Whether the class defines its own ``down()``."""
    return any("down" in vars(klass) for klass in cls.__mro__ if klass is not Migration)


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        body = node.body
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    visit_ClassDef = _strip  # noqa: N815 - ast.NodeVisitor's naming
    visit_FunctionDef = _strip  # noqa: N815
    visit_AsyncFunctionDef = _strip  # noqa: N815


def _bytecode_digest(cls: type[Migration], digest: Any) -> None:
    """Fallback when the source is unavailable (classes made by exec, zipped eggs)."""

    def feed(code: types.CodeType) -> None:
        digest.update(code.co_code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            elif not isinstance(const, str) or const != code.co_consts[0]:
                digest.update(repr(const).encode())
        digest.update(repr(code.co_names).encode())

    for name in sorted(vars(cls)):
        value = vars(cls)[name]
        if isinstance(value, types.FunctionType):
            digest.update(name.encode())
            feed(value.__code__)
        elif name in {"version", "transactional"}:
            digest.update(f"{name}={value!r}".encode())


_CHECKSUMS: weakref.WeakKeyDictionary[type[Migration], str] = weakref.WeakKeyDictionary()


def checksum(cls: type[Migration]) -> str:
    """A stable SHA-256 of what the migration does (not of its comments or layout).

    Cached per class object (a re-imported, edited module makes new classes):
    connect() at head checks every migration's checksum.

    Returns:
        ``"ast:<hex>"`` from the source's syntax tree, or ``"bc:<hex>"`` from
        bytecode when the source cannot be read.
    """
    cached = _CHECKSUMS.get(cls)
    if cached is None:
        cached = _CHECKSUMS[cls] = _compute(cls)
    return cached


def _compute(cls: type[Migration]) -> str:
    digest = hashlib.sha256()
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        _bytecode_digest(cls, digest)
        return "bc:" + digest.hexdigest()[:32]
    tree = _StripDocstrings().visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            node.name = ""  # renaming the class changes nothing the migration does
            break
    digest.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return "ast:" + digest.hexdigest()[:32]
