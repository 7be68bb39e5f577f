"""Quantized HNSW indexes: what each kind indexes, for which metrics, and its SQL expressions.

The table always keeps the full-precision vectors; only the index is compact:

* ``"halfvec"``: an expression index over ``col::halfvec(d)`` (half the size of
  a ``vector`` index, float16 precision in the graph).
* ``"binary"``: an expression index over ``binary_quantize(col)::bit(d)`` with
  ``bit_hamming_ops`` (one bit per dimension, about 1/32 of the vectors' size).

A quantized search takes ``k * rerank`` candidates from the index, ordered by
the quantized expression (the query must use the very expression the index was
built on), then re-ranks them by the collection's metric on the full vectors.
pgvector returns at most ``hnsw.ef_search`` rows from one index scan (pgvector
#865), so the planner is given the candidate count, not ``k``.

Nothing here does I/O; names are quoted, dimensions and factors are ints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from .._errors import ConfigError
from .._identifiers import quote_ident

if TYPE_CHECKING:
    from .record import VectorSpec
    from .spec import HNSW

__all__ = [
    "BINARY_METRICS",
    "DEFAULT_RERANK",
    "MAX_RERANK",
    "QUANTIZATIONS",
    "Quantization",
    "candidates",
    "check_index",
    "index_expression",
    "max_dim",
    "order_expression",
]

Quantization = Literal["halfvec", "binary"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
DEFAULT_RERANK: dict[str, int] = {"halfvec": 1, "binary": 4}
MAX_RERANK = 100
# Sign bits keep a vector's direction and drop its length: Hamming distance
# between them follows the angle, so it can pre-select for cosine and for inner
# product (of normalised embeddings), never for l2 or l1 (magnitudes matter).
BINARY_METRICS = ("cosine", "inner_product")
# pgvector's most dimensions an HNSW index takes, per indexed type.
_MAX_DIM = {"vector": 2_000, "halfvec": 4_000, "binary": 64_000}


def check_index(index: HNSW, *, metric: str, storage: str) -> None:
    """Refuse a quantization that this metric or storage cannot be indexed with.

    Raises:
        ConfigError: ``binary`` under ``l2``/``l1``, or ``halfvec`` over
            vectors already stored as ``halfvec``.
    """
    if index.quantization == "binary" and metric not in BINARY_METRICS:
        raise ConfigError(
            f"HNSW(quantization='binary') cannot serve metric={metric!r}: the Hamming "
            f"distance of sign bits follows the angle between vectors, not their {metric} "
            f"distance. Use it with metric in {list(BINARY_METRICS)} (for normalised "
            "embeddings cosine ranks exactly as l2 does), or quantization='halfvec'",
            setting="quantization",
        )
    if index.quantization == "halfvec" and storage == "halfvec":
        raise ConfigError(
            "HNSW(quantization='halfvec') on storage='halfvec': the vectors are already "
            "half precision, so the plain index is that size. Drop quantization=, or use "
            "storage='vector' to keep full precision in the table",
            setting="quantization",
        )


def max_dim(index: HNSW, storage: str) -> int:
    """The most dimensions the index can take (the indexed type's, not the column's)."""
    return _MAX_DIM[index.quantization or storage]


def candidates(index: HNSW | None, k: int) -> int:
    """How many rows the index scan must return for ``k`` re-ranked results."""
    if index is None or index.quantization is None:
        return k
    rerank = index.rerank if index.rerank is not None else DEFAULT_RERANK[index.quantization]
    return k * rerank


def index_expression(index: HNSW, vector: VectorSpec, storage: str, opclass_suffix: str) -> str:
    """The indexed expression with its operator class: ``("col" vector_cosine_ops)``, ...

    ``opclass_suffix`` is the metric's (``cosine_ops``, ``l2_ops``, ``ip_ops``, ``l1_ops``).
    """
    column, dim = quote_ident(vector.name), int(vector.dim)
    if index.quantization == "halfvec":
        return f"(({column}::halfvec({dim})) halfvec_{opclass_suffix})"
    if index.quantization == "binary":
        return f"((binary_quantize({column})::bit({dim})) bit_hamming_ops)"
    return f"({column} {storage}_{opclass_suffix})"


def order_expression(index: HNSW, vector: VectorSpec, operator: str, query: str) -> str:
    """What the index scan orders by: the index's own expression against the query's.

    ``query`` is the query parameter with its cast (``$1::vector(384)``).
    """
    column, dim = quote_ident(vector.name), int(vector.dim)
    if index.quantization == "halfvec":
        return f"{column}::halfvec({dim}) {operator} ({query})::halfvec({dim})"
    if index.quantization == "binary":
        return f"binary_quantize({column})::bit({dim}) <~> binary_quantize({query})"
    return f"{column} {operator} {query}"
