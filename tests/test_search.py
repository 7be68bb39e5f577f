"""Search: order and distances against numpy, settings, strategies, recall under filters."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pytest

import vecdb
from vecdb import _search

DIM = 16
METRICS = ["cosine", "l2", "inner_product", "l1"]
STORAGES = ["vector", "halfvec"]


class Item(vecdb.Record):
    id: int
    bucket: int
    cluster: int
    embedding: vecdb.Vector


def clustered(
    n: int, *, seed: int = 0, clusters: int = 20, spread: float = 0.3
) -> tuple[npt.NDArray[np.float32], Any]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, DIM))
    labels = rng.integers(0, clusters, n)
    vectors = (centers[labels] + spread * rng.normal(size=(n, DIM))).astype(np.float32)
    return vectors, labels


def numpy_distances(
    metric: str, vectors: npt.NDArray[np.float32], q: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    x, q64 = vectors.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        return 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
    if metric == "l2":
        return np.linalg.norm(x - q64, axis=1)
    if metric == "inner_product":
        return -(x @ q64)  # hit.distance reports the negative inner product: smaller is closer
    return np.abs(x - q64).sum(axis=1)


async def load(
    db: vecdb.Database,
    vectors: npt.NDArray[np.float32],
    labels: Any,
    *,
    name: str = "items",
    **kwargs: Any,
) -> vecdb.Collection[Item]:
    c = await db.collection(name, Item, dim=DIM, filterable=("bucket", "cluster"), **kwargs)
    await c.upsert(
        Item(id=i, bucket=i % 100, cluster=int(labels[i]), embedding=vectors[i])
        for i in range(len(vectors))
    )
    await c.analyze()
    return c


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("metric", METRICS)
async def test_results_and_distances_match_numpy(
    db: vecdb.Database, metric: Any, storage: Any
) -> None:
    vectors, labels = clustered(300, seed=1)
    c = await load(db, vectors, labels, metric=metric, storage=storage)
    stored = vectors.astype(np.float16).astype(np.float32) if storage == "halfvec" else vectors
    q = np.random.default_rng(2).normal(size=DIM).astype(np.float32)
    q_db = q.astype(np.float16).astype(np.float32) if storage == "halfvec" else q
    expected = numpy_distances(metric, stored, q_db)
    hits = await c.search(q, k=10, exact=True)
    distances = [h.distance for h in hits]
    assert distances == sorted(distances)
    np.testing.assert_allclose(distances, np.sort(expected)[:10], rtol=1e-4, atol=1e-4)
    for hit in hits:
        assert hit.distance == pytest.approx(expected[hit.record.id], rel=1e-4, abs=1e-4)


async def test_inner_product_distance_is_the_negative_dot_product(db: vecdb.Database) -> None:
    c = await db.collection("ip", Item, dim=2, metric="inner_product")
    await c.upsert(
        [Item(id=1, bucket=0, cluster=0, embedding=[1, 0]),
         Item(id=2, bucket=0, cluster=0, embedding=[3, 0])]
    )  # fmt: skip
    hits = await c.search([2, 0], k=2)
    assert [(h.record.id, h.distance) for h in hits] == [(2, -6.0), (1, -2.0)]


async def test_hits_are_closest_first_and_typed(db: vecdb.Database) -> None:
    vectors, labels = clustered(500)
    c = await load(db, vectors, labels)
    hits = await c.search(vectors[7], k=5)
    assert hits[0].record.id == 7
    assert hits[0].distance == pytest.approx(0.0, abs=1e-6)
    assert isinstance(hits[0].record, Item)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


async def test_vectors_are_not_fetched_unless_asked(db: vecdb.Database) -> None:
    vectors, labels = clustered(50)
    c = await load(db, vectors, labels)
    without = await c.search(vectors[3], k=1)
    with_vectors = await c.search(vectors[3], k=1, include_vectors=True)
    assert without[0].record.embedding is None
    np.testing.assert_array_equal(with_vectors[0].record.embedding, vectors[3])
    assert with_vectors[0].record.embedding.dtype == np.float32


async def test_ef_search_is_set_local_and_does_not_leak(dsn: str) -> None:
    pool = vecdb.PoolConfig(min_size=1, max_size=1)  # the same connection every time
    async with vecdb.connect(dsn, pool=pool) as db:
        vectors, labels = clustered(200)
        c = await load(db, vectors, labels)
        async with db.acquire() as conn:
            default = await conn.fetchval("SHOW hnsw.ef_search")
        explained = await c.explain(vectors[0], k=10, ef_search=123)
        assert explained.settings["hnsw.ef_search"] == "123"
        await c.search(vectors[0], k=10, ef_search=123)
        async with db.acquire() as conn:
            assert await conn.fetchval("SHOW hnsw.ef_search") == default
            assert await conn.fetchval("SHOW jit") == "on"


async def test_ef_search_is_raised_to_k(db: vecdb.Database) -> None:
    vectors, labels = clustered(200)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=50, ef_search=10)
    assert explained.settings["hnsw.ef_search"] == "50"
    assert len(await c.search(vectors[0], k=50, ef_search=10)) == 50


async def test_searches_run_without_jit(db: vecdb.Database) -> None:
    vectors, labels = clustered(100)
    c = await load(db, vectors, labels)
    assert (await c.explain(vectors[0], k=5)).settings["jit"] == "off"


def recall(found: list[int], truth: list[int]) -> float:
    return len(set(found) & set(truth)) / len(truth)


async def _recall_under_filter(
    c: vecdb.Collection[Item], vectors: npt.NDArray[np.float32], buckets: int
) -> float:
    where = {"bucket": {"$lt": buckets}}
    matching = np.arange(len(vectors)) % 100 < buckets
    recalls = []
    for q in clustered(20, seed=4)[0]:
        d = numpy_distances("cosine", vectors, q)
        d[~matching] = np.inf
        truth = np.argsort(d)[:10].tolist()
        hits = await c.search(q, k=10, where=where)
        assert len(hits) == 10
        assert all(h.record.bucket < buckets for h in hits)
        recalls.append(recall([h.record.id for h in hits], truth))
    return float(np.mean(recalls))


async def test_a_selective_filter_keeps_its_recall(db: vecdb.Database) -> None:
    vectors, labels = clustered(4000, seed=3)
    c = await load(db, vectors, labels, index=vecdb.HNSW(m=8, ef_construction=32))
    explained = await c.explain(vectors[0], k=10, where={"bucket": {"$lt": 1}})
    assert explained.strategy == "exact"
    assert await _recall_under_filter(c, vectors, buckets=1) == 1.0


async def test_an_iterative_index_scan_keeps_its_recall(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few thousand rows are "few" for the strategy and cheap for the planner:
    # lower the bar and forbid the alternatives, so this really measures the
    # iterative HNSW scan under a filter matching 30% of the rows.
    monkeypatch.setattr(_search, "EXACT_MAX_ROWS", 100)
    pool = vecdb.PoolConfig(
        min_size=1, max_size=2,
        server_settings={"enable_seqscan": "off", "enable_bitmapscan": "off"},
    )  # fmt: skip
    async with vecdb.connect(dsn, pool=pool) as db:
        # Clusters loose enough for HNSW's graph to connect them (very tight
        # synthetic clusters break any HNSW graph, filtered or not).
        vectors, labels = clustered(4000, seed=3, spread=0.7)
        c = await load(db, vectors, labels)
        explained = await c.explain(vectors[0], k=10, where={"bucket": {"$lt": 30}})
        assert (explained.strategy, explained.uses_vector_index) == ("hnsw_iterative", True)
        assert explained.settings["hnsw.iterative_scan"] == "relaxed_order"
        assert await _recall_under_filter(c, vectors, buckets=30) >= 0.95


async def test_fewer_matches_than_k_returns_them_all(db: vecdb.Database) -> None:
    vectors, labels = clustered(1000)
    c = await load(db, vectors, labels)
    hits = await c.search(vectors[0], k=10, where={"id": {"$in": [3, 5, 8]}})
    assert sorted(h.record.id for h in hits) == [3, 5, 8]


async def test_exact_search_skips_the_index(db: vecdb.Database) -> None:
    vectors, labels = clustered(2000)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10, exact=True)
    assert explained.strategy == "exact"
    assert not explained.uses_vector_index
    hits = await c.search(vectors[0], k=10, exact=True)
    truth = np.argsort(numpy_distances("cosine", vectors, vectors[0]))[:10].tolist()
    assert [h.record.id for h in hits] == truth


async def test_explain_shows_the_vector_index_for_an_unfiltered_search(
    db: vecdb.Database,
) -> None:
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10)
    assert explained.strategy == "hnsw"
    assert explained.uses_vector_index
    assert "items_embedding_hnsw" in str(explained.plan)


async def test_explain_analyze_reports_timings(db: vecdb.Database) -> None:
    vectors, labels = clustered(200)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10, analyze=True)
    assert "Actual Total Time" in explained.plan["Plan"]


async def test_a_selective_filter_is_searched_exactly(db: vecdb.Database) -> None:
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10, where={"bucket": 5})
    assert explained.strategy == "exact"
    assert explained.estimated_rows is not None
    assert explained.estimated_rows < 100
    assert "exact scan" in explained.reason


async def test_collection_without_index_searches_exactly(db: vecdb.Database) -> None:
    vectors, labels = clustered(300)
    c = await load(db, vectors, labels, index=None)
    explained = await c.explain(vectors[0], k=5)
    assert (explained.strategy, explained.uses_vector_index) == ("exact", False)
    assert (await c.search(vectors[0], k=1))[0].record.id == 0


async def test_search_many_matches_single_searches(db: vecdb.Database) -> None:
    vectors, labels = clustered(1000)
    c = await load(db, vectors, labels)
    queries = vectors[:12]
    many = await c.search_many(queries, k=3, where={"cluster": {"$ne": -1}}, concurrency=3)
    singles = [await c.search(q, k=3, where={"cluster": {"$ne": -1}}) for q in queries]
    assert [[h.record.id for h in hits] for hits in many] == [
        [h.record.id for h in hits] for hits in singles
    ]
    assert [hits[0].record.id for hits in many] == list(range(12))


async def test_search_many_names_the_bad_query(db: vecdb.Database) -> None:
    vectors, labels = clustered(10)
    c = await load(db, vectors, labels)
    queries = [vectors[0], vectors[1][:3]]
    with pytest.raises(vecdb.DimensionMismatchError, match="query vector 1") as info:
        await c.search_many(queries, k=3)
    assert info.value.position == 1


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        ([1.0] * (DIM - 1), vecdb.DimensionMismatchError, "has 15 dimensions"),
        ([float("nan")] * DIM, vecdb.InvalidVectorError, "NaN"),
        ([0.0] * DIM, vecdb.InvalidVectorError, "all zeros"),
        ([], vecdb.InvalidVectorError, "empty"),
    ],
    ids=["dimension", "nan", "zero", "empty"],
)
async def test_bad_query_vectors_are_refused(
    db: vecdb.Database, query: list[float], error: type[Exception], match: str
) -> None:
    vectors, labels = clustered(10)
    c = await load(db, vectors, labels)
    with pytest.raises(error, match=match):
        await c.search(query, k=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be"), ({"k": 10_001}, "k must be"), ({"ef_search": 1001}, "ef_search")],
    ids=["k-zero", "k-huge", "ef-huge"],
)
async def test_bad_search_arguments_are_config_errors(
    db: vecdb.Database, kwargs: dict[str, Any], match: str
) -> None:
    vectors, labels = clustered(10)
    c = await load(db, vectors, labels)
    with pytest.raises(vecdb.ConfigError, match=match):
        await c.search(vectors[0], **kwargs)


class TwoVectors(vecdb.Record):
    id: int
    title: Annotated[vecdb.Vector, vecdb.Dim(3)]
    body: vecdb.Vector


async def test_several_vector_fields_are_searched_by_name(db: vecdb.Database) -> None:
    c = await db.collection("two", TwoVectors, dim=4, metric="l2")
    await c.upsert(
        [TwoVectors(id=1, title=[1, 0, 0], body=[0, 0, 0, 9]),
         TwoVectors(id=2, title=[0, 0, 9], body=[0, 0, 0, 1])]
    )  # fmt: skip
    assert (await c.search([1, 0, 0], k=1, field="title"))[0].record.id == 1
    assert (await c.search([0, 0, 0, 1], k=1, field="body"))[0].record.id == 2
    with pytest.raises(vecdb.ConfigError, match="several vector fields"):
        await c.search([1, 0, 0], k=1)


async def test_create_index_concurrently_reports_progress(db: vecdb.Database) -> None:
    vectors, labels = clustered(2000)
    c = await load(db, vectors, labels, index=None)
    reports: list[vecdb.IndexProgress] = []
    await c.create_index(vecdb.HNSW(m=8, ef_construction=32), progress=reports.append)
    assert reports[-1].phase == "done"
    assert reports[-1].fraction == 1.0
    assert c.spec["index"] == {"m": 8, "ef_construction": 32}
    assert (await db.collections())[0].spec["index"] == {"m": 8, "ef_construction": 32}
    assert (await c.explain(vectors[0], k=10)).uses_vector_index
    reopened = await db.collection(
        "items", Item, dim=DIM, filterable=("bucket", "cluster"),
        index=vecdb.HNSW(m=8, ef_construction=32),
    )  # fmt: skip
    assert reopened.spec["index"]["m"] == 8


async def test_create_index_rebuilds_and_swaps_an_existing_index(db: vecdb.Database) -> None:
    vectors, labels = clustered(1000)
    c = await load(db, vectors, labels)
    await c.create_index(vecdb.HNSW(m=12, ef_construction=48), concurrently=False)
    async with db.acquire() as conn:
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'items_embedding_hnsw'"
        )
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%hnsw_new%'"
        )
    assert "m='12'" in definition
    assert leftovers == 0


async def test_create_index_replaces_an_invalid_index(db: vecdb.Database) -> None:
    vectors, labels = clustered(500)
    c = await load(db, vectors, labels)
    async with db.acquire() as conn:
        # What a failed CREATE INDEX CONCURRENTLY leaves behind.
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'items_embedding_hnsw'::regclass"
        )
    await c.create_index()
    async with db.acquire() as conn:
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_embedding_hnsw'::regclass"
        )
    assert valid is True
