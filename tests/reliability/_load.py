"""The shared parts of the fault tests: a small collection, its rows, what the calls saw."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import vecdb

DIM = 8


class Doc(vecdb.Record):
    """A record whose every field is checked after the fault."""

    id: int
    text: str
    year: int
    embedding: vecdb.Vector


def doc(i: int) -> Doc:
    """The record with id ``i``: its content derives from the id, so it can be checked."""
    # Small integers: exact in float32, so read-back vectors compare equal.
    vector = [float((i * 7 + d) % 13 + 1) for d in range(DIM)]
    return Doc(id=i, text=f"doc {i}", year=2000 + i % 25, embedding=vector)


def query(i: int) -> list[float]:
    """A query vector (never all zeros: cosine)."""
    return [float((i + d) % 5 + 1) for d in range(DIM)]


@dataclasses.dataclass
class Outcomes:
    """What the calls under fault returned or raised, by kind."""

    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: list[vecdb.VecdbError] = dataclasses.field(default_factory=list)

    def ok(self, kind: str) -> None:
        self.counts[f"{kind} ok"] += 1

    def failed(self, kind: str, exc: vecdb.VecdbError) -> None:
        self.counts[f"{kind} {type(exc).__name__}"] += 1
        self.errors.append(exc)


async def check_rows(db: vecdb.Database, table: str, ids: Sequence[int]) -> list[int]:
    """The ids among ``ids`` stored, after checking each stored row is exactly ``doc(id)``."""
    stored: list[int] = []
    async with db.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT id, text, year, embedding::text AS v FROM {table} "
            "WHERE id = ANY($1) ORDER BY id",
            list(ids),
        )
    for row in rows:
        want = doc(row["id"])
        got = (row["text"], row["year"], [float(x) for x in row["v"].strip("[]").split(",")])
        assert got == (want.text, want.year, [float(x) for x in want.embedding]), row["id"]
        stored.append(row["id"])
    return stored
