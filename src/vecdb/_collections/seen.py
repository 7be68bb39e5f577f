"""The ids an upsert's earlier chunks gave, kept in a few bits an id instead of a set.

An upsert from a generator writes chunk after chunk in one transaction, and a
chunk that repeats an earlier chunk's id must replace that row (the last one
wins). Knowing which ids to replace took a set of every id so far: about 70
bytes an id in CPython, 70 MB at 1M records, growing with the input while the
rows themselves stream through. `SeenIds` is a scalable Bloom filter instead:
about 2 bytes an id, in numpy.

It can answer "maybe seen" for an id it never saw (below 1% of ids). That is
harmless where it is used: a maybe-repeated id costs a ``DELETE`` of a row
that is not there (the count of rows written counts only rows deleted), or a
``DISTINCT ON`` over the staged rows that removes nothing. It never misses an
id it saw. `insert()` refuses repeats with the exact list, so it keeps a set.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SeenIds"]

_HASHES = 3  # bit positions an id sets in a layer
_FIRST_BITS = 1 << 24  # 2 MB: the first layer holds 1M ids at a 0.5% false "maybe"
_BITS_PER_ID = 16  # a layer is full at bits / 16 ids; the next one is twice as large
_MIX_1 = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants (Fibonacci, xxHash):
_MIX_2 = np.uint64(0xC2B2AE3D27D4EB4F)  # multiplying spreads any hash over the top bits


class _Layer:
    __slots__ = ("bits", "capacity", "count", "shift")

    def __init__(self, size: int) -> None:
        self.bits = np.zeros(size // 8, dtype=np.uint8)
        self.shift = np.uint64(64 - (size.bit_length() - 1))  # top log2(size) bits
        self.capacity = size // _BITS_PER_ID
        self.count = 0

    def positions(self, h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64]) -> list[Any]:
        # Double hashing (Kirsch and Mitzenmacher): h1 + i * h2 for the i-th position.
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as meant
            return [(h1 + np.uint64(i) * h2) >> self.shift for i in range(_HASHES)]

    def has(self, at: list[Any]) -> npt.NDArray[np.bool_]:
        found = np.ones(len(at[0]), dtype=np.bool_)
        for p in at:
            byte, bit = p >> np.uint64(3), (p & np.uint64(7)).astype(np.uint8)
            found &= ((self.bits[byte] >> bit) & np.uint8(1)).astype(np.bool_)
        return found

    def add(self, at: list[Any]) -> None:
        for p in at:
            byte, bit = p >> np.uint64(3), (p & np.uint64(7)).astype(np.uint8)
            np.bitwise_or.at(self.bits, byte, np.left_shift(np.uint8(1), bit))
        self.count += len(at[0])


class SeenIds:
    """Ids seen so far; `add` returns those of a chunk that may have been seen before."""

    __slots__ = ("_first", "_layers")

    def __init__(self) -> None:
        # The first chunk's ids are only held: a one-chunk upsert builds no filter.
        self._first: Collection[Any] | None = None
        self._layers: list[_Layer] = []

    def add(self, unique: Collection[Any]) -> list[Any]:
        """Note ``unique`` (distinct ids); return those an earlier call may have given."""
        if self._first is None and not self._layers:
            self._first = unique
            return []
        if self._first is not None:
            first, self._first = self._first, None
            self._insert(*self._hashes(list(first)))
        items = list(unique)
        h1, h2 = self._hashes(items)
        maybe = np.zeros(len(items), dtype=np.bool_)
        for layer in self._layers:
            maybe |= layer.has(layer.positions(h1, h2))
        self._insert(h1, h2)
        return [items[i] for i in np.flatnonzero(maybe)]

    @staticmethod
    def _hashes(items: list[Any]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        # hash() is stable within the process, which is all one upsert needs.
        raw = np.fromiter(map(hash, items), dtype=np.int64, count=len(items)).view(np.uint64)
        with np.errstate(over="ignore"):
            return raw * _MIX_1, (raw * _MIX_2) | np.uint64(1)  # h2 odd: positions differ

    def _insert(self, h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64]) -> None:
        if not len(h1):
            return
        if not self._layers or self._layers[-1].count + len(h1) > self._layers[-1].capacity:
            size = _FIRST_BITS << len(self._layers)
            self._layers.append(_Layer(size))
        layer = self._layers[-1]
        layer.add(layer.positions(h1, h2))
