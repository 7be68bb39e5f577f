"""The rough edges a newcomer meets: a class made again, and ``asyncio.run(vecdb.connect())``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import vecdb

MODEL = """
import vecdb

class Chunk(vecdb.Record):
    id: int
    text: str
    embedding: vecdb.Vector
"""


def make_chunk_class(source: str = MODEL, module: str = "notebook_cell") -> type[vecdb.Record]:
    """Run a model's source as a notebook cell (or a reloaded module) does: a new class."""
    namespace: dict[str, Any] = {"__name__": module}
    # dont_inherit: this file's `from __future__ import annotations` would make strings
    # of the annotations, which a class in a cell of its own does not have.
    code = compile(textwrap.dedent(source), module, "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102 - the test's own source text
    cls: type[vecdb.Record] = namespace["Chunk"]
    return cls


async def test_a_record_of_the_same_class_made_again_is_accepted(db: vecdb.Database) -> None:
    first = make_chunk_class()
    chunks = await db.collection("chunks", first, dim=3)
    again = make_chunk_class()  # the cell run again
    assert again is not first
    written = await chunks.upsert([again(id=1, text="a", embedding=[1, 0, 0])])
    assert written == 1
    record = await chunks.get(1)
    assert type(record) is first
    assert record is not None
    assert record.text == "a"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            MODEL + "    year: int = 0\n",
            "'year' only in Chunk",
        ),
        (
            MODEL.replace("text: str", "text: int"),
            "'text' is <class 'int'> in the first, <class 'str'> in the second",
        ),
        (
            MODEL.replace("class Chunk", "class Chunk2") + "\nChunk = Chunk2\n",
            "the classes have different names",
        ),
    ],
    ids=["extra-field", "other-type", "other-name"],
)
async def test_a_record_of_another_class_is_refused_naming_both_and_the_differences(
    db: vecdb.Database, source: str, expected: str
) -> None:
    chunks = await db.collection("chunks", make_chunk_class(module="app.models"), dim=3)
    other = make_chunk_class(source, module="other.models")
    with pytest.raises(vecdb.RecordValidationError) as caught:
        await chunks.upsert(
            [other(id=1, text=1 if "int" in expected else "a", embedding=[1, 0, 0])]
        )
    message = str(caught.value)
    assert "record at position 0 is a other.models.Chunk" in message
    assert "collection 'chunks' holds app.models.Chunk" in message
    assert expected in message
    assert await chunks.count() == 0


def test_asyncio_run_of_connect_says_to_await_it() -> None:
    with pytest.raises(ValueError, match="a coroutine was expected") as caught:
        asyncio.run(vecdb.connect("postgresql://nobody@127.0.0.1:1/x"))  # type: ignore[arg-type]
    assert "await it inside an async function (db = await vecdb.connect(...))" in str(caught.value)
    assert "async with vecdb.connect(...) as db:" in str(caught.value)


def test_asyncio_run_of_connect_in_a_fresh_interpreter_leaves_no_warning() -> None:
    """Nothing was started: no coroutine left un-awaited, no server touched."""
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            "import asyncio, vecdb\n"
            "try:\n"
            "    asyncio.run(vecdb.connect('postgresql://nobody@127.0.0.1:1/x'))\n"
            "except ValueError as exc:\n"
            "    print(exc)\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "await it inside an async function" in done.stdout
    assert done.stderr == ""
