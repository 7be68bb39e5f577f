"""Every Python snippet in the docs and the README runs here, or says why not.

The line right before each ```python fence is one of these HTML comments
(invisible on the site and on GitHub):

- ``<!-- run -->`` or ``<!-- run: GROUP -->``: run by this file. The blocks of
  one page and group run in page order in one namespace, with top-level
  ``await``, against a fresh database: ``dsn`` is its DSN (also ``$VECDB_DSN``,
  so ``vecdb.connect()`` without a DSN reaches it), ``db`` is a connected
  ``vecdb.Database`` on it and ``conn`` an asyncpg connection with pgvector's
  codec. A snippet may state what it shows with ``assert``.
- ``<!-- not-run: REASON -->``: not run; the reason is shown to whoever edits
  the page, so it must say what the snippet needs (a PgBouncer, another
  package, names from the surrounding prose).
- ``<!-- tutorial-... -->``: a step of the migrations tutorial, run by
  tests/firsthour/test_migrations_tutorial.py.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pgvector.asyncpg import register_vector

import vecdb

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^\s*```(python|py|pycon)\s*$")
_MARK = re.compile(r"^\s*<!--\s*(run|not-run|tutorial-[a-z]+)(?::\s*(.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository, as the failure message shows it
    line: int  # the fence's line, 1-based
    mark: str | None  # "run", "not-run", "tutorial-run", ... or None when unmarked
    arg: str  # the group of a run block, the reason of a not-run block
    code: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text().splitlines()
    rel = str(page.relative_to(ROOT))
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            found = _MARK.match(lines[i - 1]) if i else None
            mark, arg = (found.group(1), found.group(2) or "") if found else (None, "")
            yield Block(rel, i + 1, mark, arg.strip(), "\n".join(lines[i + 1 : end]) + "\n")
            i = end
        i += 1


def all_blocks() -> list[Block]:
    return [block for page in _pages() for block in _blocks(page)]


def run_groups() -> dict[str, list[Block]]:
    groups: dict[str, list[Block]] = {}
    for block in all_blocks():
        if block.mark == "run":
            name = block.path + (f"[{block.arg}]" if block.arg else "")
            groups.setdefault(name, []).append(block)
    return groups


def test_every_python_block_is_run_or_marked() -> None:
    unmarked = [b.where for b in all_blocks() if b.mark is None]
    unexplained = [b.where for b in all_blocks() if b.mark == "not-run" and not b.arg]
    problems = [f"  {where}: no marker\n" for where in unmarked]
    problems += [f"  {where}: not-run without a reason\n" for where in unexplained]
    assert not problems, (
        "Each ```python block in the docs needs a comment on the line before its fence: "
        "`<!-- run -->` (it runs in tests/test_docs_snippets.py; see its docstring) or "
        "`<!-- not-run: why -->`.\n" + "".join(problems)
    )


def test_the_convention_finds_what_it_should() -> None:
    # A regex that silently matched nothing would make the test above pass on any docs.
    blocks = all_blocks()
    assert len(blocks) >= 40
    assert any(b.path == "README.md" and b.mark == "run" for b in blocks)
    assert any(b.mark == "tutorial-run" for b in blocks)


async def _run_group(blocks: list[Block], dsn: str) -> None:
    db = await vecdb.connect(dsn)
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    namespace: dict[str, Any] = {"__name__": "__docs__", "vecdb": vecdb, "dsn": dsn}
    namespace.update(db=db, conn=conn)
    try:
        for block in blocks:
            # dont_inherit: not this file's `from __future__ import annotations`;
            # the line offset makes a traceback point at the page's own line.
            source = "\n" * block.line + block.code
            code = compile(
                source, block.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
            )
            if code.co_flags & inspect.CO_COROUTINE:
                await eval(code, namespace)  # noqa: S307 - the project's own documentation
            else:
                # In a thread, where no loop runs: a script's asyncio.run(main()) works there.
                await asyncio.to_thread(exec, code, namespace)
    finally:
        await conn.close()
        # A snippet may rebind `db`, or open databases of its own and leave them open.
        for value in [db, *namespace.values()]:
            if isinstance(value, vecdb.Database):
                await value.close()


@pytest.mark.parametrize("group", sorted(run_groups()))
async def test_the_snippets_run(group: str, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECDB_DSN", dsn)
    await _run_group(run_groups()[group], dsn)
