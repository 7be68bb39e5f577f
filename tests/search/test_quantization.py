"""Quantized HNSW indexes: halfvec and binary expression indexes, re-ranked on full vectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import vecdb
from vecdb._schema.quantization import candidates

DIM = 32
N = 2_000
QUANTIZATIONS = ["halfvec", "binary"]


class Item(vecdb.Record):
    id: int
    bucket: int
    embedding: vecdb.Vector


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    embedding: vecdb.Vector


def clustered(n: int = N, dim: int = DIM, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, dim))
    labels = rng.integers(0, 20, n)
    return (centers[labels] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)


def cosine(vectors: npt.NDArray[np.float32], q: npt.NDArray[np.float32]) -> Any:
    x, q64 = vectors.astype(np.float64), q.astype(np.float64)
    return 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))


async def load(
    db: vecdb.Database, vectors: npt.NDArray[np.float32], index: vecdb.HNSW, **kwargs: Any
) -> vecdb.Collection[Item]:
    col = await db.collection(
        "items", Item, dim=vectors.shape[1], filterable=("bucket",), index=index, **kwargs
    )
    await col.upsert(Item(id=i, bucket=i % 10, embedding=vectors[i]) for i in range(len(vectors)))
    await col.analyze()
    return col


async def index_definition(db: vecdb.Database, name: str) -> str:
    async with db.acquire() as conn:
        found: str = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", name
        )
    return found


@pytest.mark.parametrize(
    ("quantization", "expression"),
    [
        ("halfvec", "((embedding)::halfvec(32)) halfvec_cosine_ops"),
        ("binary", "(binary_quantize(embedding))::bit(32)) bit_hamming_ops"),
    ],
    ids=QUANTIZATIONS,
)
async def test_the_index_is_an_expression_index_over_the_full_precision_column(
    db: vecdb.Database, quantization: str, expression: str
) -> None:
    """The table keeps vector(d); only the index holds the quantized form."""
    col = await load(db, clustered(200), vecdb.HNSW(quantization=quantization))  # type: ignore[arg-type]
    definition = await index_definition(db, "items_embedding_hnsw")
    assert "USING hnsw" in definition
    assert expression.replace('"', "") in definition.replace('"', "")
    async with db.acquire() as conn:
        column_type = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'items'::regclass AND attname = 'embedding'"
        )
    assert column_type == "vector(32)"
    assert col.spec["index"]["quantization"] == quantization


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
async def test_results_are_reranked_by_the_exact_distance(
    db: vecdb.Database, quantization: str
) -> None:
    """Distances are the metric's on the full vectors, ascending; recall stays high."""
    vectors = clustered()
    col = await load(db, vectors, vecdb.HNSW(quantization=quantization, rerank=8))  # type: ignore[arg-type]
    recalls = []
    for qi in range(0, 200, 10):
        q = vectors[qi] + 0.05
        hits = await col.search(q, k=10, ef_search=200)
        exact = cosine(vectors, q)
        ids = [h.record.id for h in hits]
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        for h in hits:
            assert h.distance == pytest.approx(exact[h.record.id], abs=1e-5)
        recalls.append(len(set(ids) & set(np.argsort(exact)[:10].tolist())) / 10)
    assert np.mean(recalls) >= 0.9


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
async def test_the_search_uses_the_quantized_index(db: vecdb.Database, quantization: str) -> None:
    """The query orders by the index's own expression, so PostgreSQL scans that index."""
    col = await load(db, clustered(), vecdb.HNSW(quantization=quantization))  # type: ignore[arg-type]
    plan = await col.explain(clustered(1, seed=9)[0], k=10)
    assert plan.strategy == "hnsw"
    assert plan.uses_vector_index
    assert ("binary_quantize" if quantization == "binary" else "::halfvec(") in plan.sql


async def test_ef_search_is_raised_to_cover_k_times_rerank(db: vecdb.Database) -> None:
    """pgvector #865: an index scan yields at most ef_search rows, so k * rerank must fit."""
    vectors = clustered()
    col = await load(db, vectors, vecdb.HNSW(quantization="binary", rerank=4))
    plan = await col.explain(vectors[0], k=30)
    assert plan.settings["hnsw.ef_search"] == "max:120"
    # At pgvector's default ef_search (40) the scan would stop at 40 candidates.
    hits = await col.search(vectors[0], k=100)
    assert len(hits) == 100
    asked = await col.explain(vectors[0], k=30, ef_search=50)
    assert asked.settings["hnsw.ef_search"] == "120"
    assert candidates(vecdb.HNSW(quantization="halfvec"), 10) == 10
    assert candidates(vecdb.HNSW(quantization="binary"), 10) == 40


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
@pytest.mark.parametrize(
    ("where", "strategy"),
    [({"bucket": {"$lt": 5}}, "hnsw_iterative"), ({"id": {"$lt": 50}}, "exact")],
    ids=["iterative", "exact"],
)
async def test_filters_and_strategies_work_with_quantized_indexes(
    db: vecdb.Database, quantization: str, where: dict[str, Any], strategy: str
) -> None:
    """A filter many rows match scans the quantized index iteratively; a narrow one is exact."""
    vectors = clustered(12_000)  # more rows match than an exact scan takes (5000)
    # 32 sign bits tie a lot: binary needs many candidates at so few dimensions.
    index = vecdb.HNSW(quantization=quantization, rerank=16)  # type: ignore[arg-type]
    col = await load(db, vectors, index)
    q = vectors[7]
    plan = await col.explain(q, k=10, where=where)
    assert plan.strategy == strategy
    hits = await col.search(q, k=10, where=where)
    assert len(hits) == 10
    ids = np.array([h.record.id for h in hits])
    match = np.array(
        [i for i in range(len(vectors)) if (i % 10 < 5 if "bucket" in where else i < 50)]
    )
    assert set(ids) <= set(match.tolist())
    exact = cosine(vectors, q)
    best = match[np.argsort(exact[match])[:10]]
    assert len(set(ids) & set(best.tolist())) >= 8


async def test_partitioned_collections_get_the_quantized_index_on_every_partition(
    db: vecdb.Database,
) -> None:
    """ON ONLY the parent plus one build per partition, as for plain indexes."""
    col = await db.collection(
        "events",
        Event,
        dim=DIM,
        partition=vecdb.TimePartitions("created_at", interval="month", premake=0),
    )
    vectors = clustered(400)
    start = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
    await col.upsert(
        Event(id=i, created_at=start + dt.timedelta(days=i % 60), embedding=vectors[i])
        for i in range(400)
    )
    await col.create_index(vecdb.HNSW(quantization="binary", rerank=8), concurrently=True)
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename LIKE 'events_%' "
            "AND indexdef LIKE '%USING hnsw%'"
        )
    assert len(rows) >= 2
    assert all("bit_hamming_ops" in r["indexdef"] for r in rows)
    hits = await col.search(vectors[3], k=10)
    assert hits[0].record.id == 3
    assert col.spec["index"] == {"m": 16, "ef_construction": 64, "quantization": "binary",
                                 "rerank": 8}  # fmt: skip


async def test_create_index_switches_an_existing_collection_to_a_quantized_index(
    db: vecdb.Database,
) -> None:
    """The index is rebuilt and swapped in; the stored spec says which it is."""
    vectors = clustered(500)
    col = await load(db, vectors, vecdb.HNSW())
    assert col.spec["index"] == {"m": 16, "ef_construction": 64}  # older specs stay as they were
    await col.create_index(vecdb.HNSW(quantization="halfvec"))
    assert "halfvec_cosine_ops" in await index_definition(db, "items_embedding_hnsw")
    assert (await col.search(vectors[4], k=1))[0].record.id == 4
    again = await db.collection(
        "items", Item, dim=DIM, filterable=("bucket",), index=vecdb.HNSW(quantization="halfvec")
    )
    assert again.spec["index"]["quantization"] == "halfvec"
    with pytest.raises(vecdb.SchemaMismatchError, match="index"):
        await db.collection("items", Item, dim=DIM, filterable=("bucket",), index=vecdb.HNSW())


async def test_the_compact_index_is_smaller(db: vecdb.Database) -> None:
    """At 256 dimensions a binary index is a fraction of a plain one, halfvec about half."""
    vectors = clustered(1_000, dim=256)
    sizes = {}
    for name, index in [
        ("plain", vecdb.HNSW()),
        ("halfvec", vecdb.HNSW(quantization="halfvec")),
        ("binary", vecdb.HNSW(quantization="binary")),
    ]:
        col = await db.collection(f"q_{name}", Item, dim=256, index=index)
        await col.upsert(Item(id=i, bucket=0, embedding=vectors[i]) for i in range(1_000))
        async with db.acquire() as conn:
            sizes[name] = await conn.fetchval(
                "SELECT pg_relation_size($1::regclass)", f"q_{name}_embedding_hnsw"
            )
    assert sizes["halfvec"] < 0.7 * sizes["plain"]
    assert sizes["binary"] < 0.4 * sizes["plain"]


async def test_more_dimensions_than_a_vector_index_takes_are_indexed_through_halfvec(
    db: vecdb.Database,
) -> None:
    """pgvector indexes vector up to 2000 dims, halfvec up to 4000, bit up to 64000."""
    with pytest.raises(vecdb.ConfigError, match="2000 dimensions"):
        await db.collection("big", Item, dim=3_000)
    col = await db.collection("big", Item, dim=3_000, index=vecdb.HNSW(quantization="halfvec"))
    v = np.random.default_rng(1).normal(size=3_000).astype(np.float32)
    await col.upsert([Item(id=1, bucket=0, embedding=v)])
    assert (await col.search(v, k=1))[0].record.id == 1


# -- bad inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "binary", "rerank": 0}, "HNSW.rerank must be an int from 1 to 100"),
        ({"quantization": "binary", "rerank": -3}, "HNSW.rerank must be an int from 1 to 100"),
        ({"quantization": "halfvec", "rerank": 1.5}, "HNSW.rerank must be an int"),
        ({"rerank": 4}, "needs quantization='halfvec' or 'binary'"),
        ({"quantization": "int8"}, r"is not one of \[None, 'halfvec', 'binary'\]"),
    ],
    ids=["rerank-0", "rerank-negative", "rerank-float", "rerank-without-quantization", "unknown"],
)
def test_bad_hnsw_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(vecdb.ConfigError, match=message):
        vecdb.HNSW(**kwargs)


async def no_table(db: vecdb.Database, name: str) -> bool:
    async with db.acquire() as conn:
        gone: bool = await conn.fetchval("SELECT to_regclass($1) IS NULL", name)
    return gone and not [c for c in await db.collections() if c.name == name]


@pytest.mark.parametrize(
    ("metric", "storage", "quantization", "message"),
    [
        ("l2", "vector", "binary", "cannot serve metric='l2'"),
        ("l1", "vector", "binary", "cannot serve metric='l1'"),
        ("cosine", "halfvec", "halfvec", "already half precision"),
    ],
    ids=["binary-l2", "binary-l1", "halfvec-on-halfvec"],
)
async def test_a_quantization_the_metric_cannot_use_is_refused_and_nothing_is_made(
    db: vecdb.Database, metric: str, storage: str, quantization: str, message: str
) -> None:
    with pytest.raises(vecdb.ConfigError, match=message) as caught:
        await db.collection(
            "items",
            Item,
            dim=DIM,
            metric=metric,  # type: ignore[arg-type]
            storage=storage,  # type: ignore[arg-type]
            index=vecdb.HNSW(quantization=quantization),  # type: ignore[arg-type]
        )
    assert caught.value.setting == "quantization"
    assert await no_table(db, "items")


async def test_create_index_with_a_quantization_the_metric_cannot_use_changes_nothing(
    db: vecdb.Database,
) -> None:
    vectors = clustered(300)
    col = await db.collection("items", Item, dim=DIM, metric="l2")
    await col.upsert(Item(id=i, bucket=0, embedding=vectors[i]) for i in range(300))
    before = await index_definition(db, "items_embedding_hnsw")
    with pytest.raises(vecdb.ConfigError, match="cannot serve metric='l2'"):
        await col.create_index(vecdb.HNSW(quantization="binary"))
    assert await index_definition(db, "items_embedding_hnsw") == before
    assert col.spec["index"] == {"m": 16, "ef_construction": 64}
    [info] = await db.collections()
    assert info.spec["index"] == {"m": 16, "ef_construction": 64}


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
async def test_search_many_reranks_like_search(db: vecdb.Database, quantization: str) -> None:
    vectors = clustered(500)
    col = await load(db, vectors, vecdb.HNSW(quantization=quantization, rerank=4))  # type: ignore[arg-type]
    queries = vectors[:5] + 0.01
    many = await col.search_many(queries, k=10)
    for q, hits in zip(queries, many, strict=True):
        one = await col.search(q, k=10)
        assert [h.record.id for h in hits] == [h.record.id for h in one]
        assert [h.distance for h in hits] == pytest.approx([h.distance for h in one])
