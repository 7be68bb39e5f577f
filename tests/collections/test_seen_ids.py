"""`SeenIds`: the ids of an upsert's earlier chunks, in bounded memory, never missing one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vecdb._collections.seen import SeenIds

CHUNK = 5_000


def chunks(kind: str, n: int) -> list[set[Any]]:
    def make(i: int) -> Any:
        return {"int": i, "str": f"doc-{i}", "uuid": uuid.UUID(int=i)}[kind]

    return [{make(i) for i in range(c * CHUNK, (c + 1) * CHUNK)} for c in range(n)]


@pytest.mark.parametrize("kind", ["int", "str", "uuid"])
def test_every_repeated_id_is_found_and_few_others(kind: str) -> None:
    seen = SeenIds()
    given = chunks(kind, 60)  # 300,000 distinct ids
    false_maybe = sum(len(seen.add(chunk)) for chunk in given)
    assert false_maybe < 0.01 * 60 * CHUNK
    repeats = {next(iter(chunk)) for chunk in given} | given[-1]
    assert set(seen.add(repeats)) == repeats


def test_a_one_chunk_upsert_builds_no_filter() -> None:
    seen = SeenIds()
    assert seen.add({1, 2, 3}) == []
    assert seen._layers == []
    assert sorted(seen.add({3, 4, 1})) == [1, 3]


def test_memory_grows_by_layers_of_a_few_bits_an_id() -> None:
    seen = SeenIds()
    for c in range(240):  # 1.2M ids: past the first layer's million
        seen.add(set(range(c * CHUNK, (c + 1) * CHUNK)))
    layers = seen._layers
    assert len(layers) == 2
    assert sum(layer.bits.nbytes for layer in layers) <= 6 * 2**20  # a set: ~80 MB
    assert set(seen.add({0, 1_199_999})) == {0, 1_199_999}
