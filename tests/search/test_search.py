"""Search: order and distances against numpy, settings, strategies, recall under filters."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pydantic
import pytest

import vecdb
from vecdb._schema import rows as _record_rows
from vecdb._schema.columns import ColumnType
from vecdb._schema.rows import check_vectors
from vecdb._schema.spec import make_spec
from vecdb._search import estimates as _estimates
from vecdb._search import planner as _search
from vecdb._search import session as _search_session
from vecdb._search.filters import compile_filter

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


async def test_scans_run_without_jit(db: vecdb.Database) -> None:
    vectors, labels = clustered(100)
    c = await load(db, vectors, labels)
    assert (await c.explain(vectors[0], k=5, exact=True)).settings["jit"] == "off"
    assert (await c.explain(vectors[0], k=5, where={"bucket": 3})).settings["jit"] == "off"


async def test_an_unfiltered_search_at_the_default_ef_search_sets_nothing(
    db: vecdb.Database,
) -> None:
    vectors, labels = clustered(100)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=40)
    assert (explained.strategy, explained.settings) == ("hnsw", {})
    assert (await c.explain(vectors[0], k=41)).settings["hnsw.ef_search"] == "max:41"
    assert (await c.explain(vectors[0], k=5, ef_search=40)).settings["hnsw.ef_search"] == "40"


async def test_the_unfiltered_fast_path_returns_what_the_transaction_path_returns(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, labels = clustered(2000, spread=0.7)
    c = await load(db, vectors, labels)
    applied: list[dict[str, str]] = []
    real_apply = _search_session.apply

    async def spy(conn: Any, session: _search_session.Session, settings: dict[str, str]) -> None:
        if settings:
            applied.append(dict(settings))
        await real_apply(conn, session, settings)

    monkeypatch.setattr(_search_session, "apply", spy)
    for q in clustered(10, seed=9)[0]:
        fast = await c.search(q, k=10)
        assert applied == []  # nothing to set: one SELECT
        # The same ef_search (pgvector's default), set on the session:
        slow = await c.search(q, k=10, ef_search=40)
        assert applied.pop()["hnsw.ef_search"] == "40"
        assert [(h.record, h.distance) for h in fast] == [(h.record, h.distance) for h in slow]
    many = await c.search_many(vectors[:6], k=5)
    assert applied == []
    assert many == [await c.search(q, k=5) for q in vectors[:6]]


async def test_the_fast_path_follows_the_pools_ef_search_and_leaks_nothing(dsn: str) -> None:
    pool = vecdb.PoolConfig(
        min_size=1, max_size=1, server_settings={"hnsw.ef_search": "64"}
    )  # one connection: every search below runs on it
    async with vecdb.connect(dsn, pool=pool) as db:
        vectors, labels = clustered(500)
        c = await load(db, vectors, labels)
        assert (await c.explain(vectors[0], k=64)).settings == {}
        assert (await c.explain(vectors[0], k=65)).settings["hnsw.ef_search"] == "max:65"
        await c.search(vectors[0], k=10, ef_search=300)  # SET LOCAL in a transaction
        await c.search(vectors[0], k=10, exact=True)  # jit and enable_indexscan off, locally
        assert len(await c.search(vectors[0], k=64)) == 64  # the fast path, same connection
        async with db.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW hnsw.ef_search") == "64"
            assert await conn.fetchval("SHOW jit") == "on"
            assert await conn.fetchval("SHOW enable_indexscan") == "on"


async def test_a_lower_ef_search_in_the_pool_moves_k_to_the_transaction_path(dsn: str) -> None:
    pool = vecdb.PoolConfig(min_size=1, max_size=1, server_settings={"hnsw.ef_search": "5"})
    async with vecdb.connect(dsn, pool=pool) as db:
        vectors, labels = clustered(500)
        c = await load(db, vectors, labels)
        assert (await c.explain(vectors[0], k=10)).settings["hnsw.ef_search"] == "max:10"
        assert len(await c.search(vectors[0], k=10)) == 10


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
@pytest.mark.parametrize("as_array", [False, True], ids=["list", "float32-array"])
async def test_bad_query_vectors_are_refused(
    db: vecdb.Database, query: list[float], error: type[Exception], match: str, as_array: bool
) -> None:
    vectors, labels = clustered(10)
    c = await load(db, vectors, labels)
    with pytest.raises(error, match=match):
        await c.search(np.array(query, dtype=np.float32) if as_array else query, k=3)


@pytest.mark.parametrize(
    "query",
    [
        np.linspace(-1, 1, DIM, dtype=np.float32),
        np.linspace(-1, 1, DIM),
        list(np.linspace(-1, 1, DIM)),
        np.full(DIM, 7e4, dtype=np.float32),
    ],
    ids=["float32", "float64", "list", "beyond-float16"],
)
@pytest.mark.parametrize("storage", STORAGES)
def test_a_query_vector_is_checked_as_check_vectors_checks_it(query: Any, storage: Any) -> None:
    spec = make_spec(
        "q", Item, dim=DIM, metric="cosine", storage=storage, index=None, filterable=(),
        foreign_keys=None, schema="public",
    )  # fmt: skip
    field = spec.layout.vectors[0]
    try:
        expected = check_vectors([query], spec, field, queries=True)[0]
    except vecdb.InvalidVectorError as exc:
        with pytest.raises(vecdb.InvalidVectorError, match=re.escape(str(exc))):
            _record_rows.query_vector(query, spec, field)
        return
    got = _record_rows.query_vector(query, spec, field)
    assert (got.dtype, got.shape) == (np.float32, (DIM,))
    np.testing.assert_array_equal(got, expected)


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


# -- reading rows back into records ------------------------------------------------


class Nested(pydantic.BaseModel):
    a: int
    when: dt.datetime | None = None


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


class Everything(vecdb.Record):
    id: int
    s: str
    i: int
    f: float
    b: bool
    ts: dt.datetime
    d: dt.date
    u: uuid.UUID
    tags: list[str]
    nums: list[int]
    nested: Nested
    nested_list: list[Nested]
    data: dict[str, Any]
    colour: Colour
    size: Size
    kind: Literal["a", "b"]
    level: Literal[1, 2]
    title: Annotated[vecdb.Vector, vecdb.Dim(3)]  # a vector among the scalars
    maybe: int | None = None
    maybe_nested: Nested | None = None
    maybe_colour: Colour | None = None
    maybe_ts: dt.datetime | None = None
    embedding: vecdb.Vector


EVERYTHING = [
    Everything(
        id=1, s="text ü", i=-(2**62), f=2.5, b=True,
        ts=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        d=dt.date(2024, 2, 29), u=uuid.UUID(int=7), tags=["x", "y"], nums=[1, 2, 3],
        nested=Nested(a=1, when=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        nested_list=[Nested(a=2), Nested(a=3)], data={"k": [1, 2.5, None, {"z": "w"}]},
        colour=Colour.BLUE, size=Size.L, kind="b", level=2, title=[1, 0, 0],
        maybe=5, maybe_nested=Nested(a=4), maybe_colour=Colour.RED,
        maybe_ts=dt.datetime(2001, 1, 1, tzinfo=dt.UTC), embedding=np.arange(1, DIM + 1),
    ),
    Everything(
        id=2, s="", i=0, f=-0.0, b=False, ts=dt.datetime(1999, 12, 31, tzinfo=dt.UTC),
        d=dt.date(1, 1, 1), u=uuid.uuid4(), tags=[], nums=[], nested=Nested(a=0),
        nested_list=[], data={}, colour=Colour.RED, size=Size.S, kind="a", level=1,
        title=[0, 1, 0], embedding=np.ones(DIM),
    ),
]  # fmt: skip


def assert_same_record(fast: vecdb.Record, validated: vecdb.Record) -> None:
    """Equal, and alike in every way pydantic keeps a model: types, order, fields set."""
    assert type(fast) is type(validated)
    assert fast == validated
    assert list(fast.__dict__) == list(validated.__dict__)
    assert {k: type(v) for k, v in fast.__dict__.items()} == {
        k: type(v) for k, v in validated.__dict__.items()
    }
    assert fast.model_fields_set == validated.model_fields_set
    assert fast.__pydantic_extra__ == validated.__pydantic_extra__
    assert fast.__pydantic_private__ == validated.__pydantic_private__
    assert fast.model_dump_json(exclude_unset=True) == validated.model_dump_json(exclude_unset=True)
    for value in fast.__dict__.values():
        if isinstance(value, np.ndarray):
            assert (value.dtype, value.ndim) == (np.float32, 1)


async def _rows(db: vecdb.Database, c: vecdb.Collection[Any], with_vectors: bool) -> list[Any]:
    columns = c._spec.layout.columns if with_vectors else c._codec.scalar_columns
    select = ", ".join(f'"{name}"' for name in columns)
    async with db.acquire() as conn:
        return list(await conn.fetch(f"SELECT {select} FROM {c._table} ORDER BY id"))


@pytest.mark.parametrize("with_vectors", [True, False], ids=["vectors", "no-vectors"])
async def test_rows_decode_to_the_records_full_validation_makes(
    db: vecdb.Database, with_vectors: bool
) -> None:
    c = await db.collection("everything", Everything, dim=DIM)
    await c.upsert(EVERYTHING)
    assert c._codec._fast is not None  # this model is read without validation
    rows = await _rows(db, c, with_vectors)
    for row, original in zip(rows, EVERYTHING, strict=True):
        fast = c._codec.from_row(row, with_vectors=with_vectors)
        assert_same_record(fast, c._codec._validate_row(row, with_vectors=with_vectors))
        if with_vectors:
            assert fast == original
        else:
            assert (fast.embedding, fast.title) == (None, None)
            assert fast.model_dump(exclude={"embedding", "title"}) == original.model_dump(
                exclude={"embedding", "title"}
            )
    # Many rows in one loop: the same records, whether the columns come first
    # and in order (by position) or not (by name).
    many = c._codec.from_rows(rows, with_vectors=with_vectors)
    for record, row in zip(many, rows, strict=True):
        assert_same_record(record, c._codec._validate_row(row, with_vectors=with_vectors))
    async with db.acquire() as conn:
        shuffled = await conn.fetch(f"SELECT 0 AS first, * FROM {c._table} ORDER BY id")
    for record, row in zip(
        c._codec.from_rows(shuffled, with_vectors=with_vectors), rows, strict=True
    ):
        assert_same_record(record, c._codec._validate_row(row, with_vectors=with_vectors))
    assert await c.get(1) == EVERYTHING[0]
    hits = await c.search(
        EVERYTHING[1].embedding, k=2, include_vectors=with_vectors, field="embedding"
    )
    assert [h.record.id for h in hits] == [2, 1]
    assert_same_record(hits[0].record, c._codec._validate_row(rows[1], with_vectors=with_vectors))


class Normalised(vecdb.Record):
    id: int
    s: str
    embedding: vecdb.Vector

    @pydantic.field_validator("s")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class Checked(vecdb.Record):
    id: int
    s: Annotated[str, pydantic.AfterValidator(str.lower)] | None = None
    embedding: vecdb.Vector


class WithState(vecdb.Record):
    id: int
    s: str
    embedding: vecdb.Vector
    _seen: int = pydantic.PrivateAttr(default=0)

    def model_post_init(self, context: Any) -> None:
        self._seen += 1


@pytest.mark.parametrize(
    ("model", "fast"),
    [(Normalised, False), (Checked, False), (WithState, True)],
    ids=["field-validator", "annotated-validator", "private-attribute-and-post-init"],
)
@pytest.mark.parametrize("with_vectors", [True, False], ids=["vectors", "no-vectors"])
async def test_models_with_validators_are_still_validated_when_read(
    db: vecdb.Database, model: type[Any], fast: bool, with_vectors: bool
) -> None:
    c = await db.collection("odd", model, dim=DIM)
    await c.upsert([model(id=1, s=" a ", embedding=np.ones(DIM))])
    assert (c._codec._fast is not None) is fast
    (row,) = await _rows(db, c, with_vectors)
    validated = c._codec._validate_row(row, with_vectors=with_vectors)
    assert_same_record(c._codec.from_row(row, with_vectors=with_vectors), validated)
    assert_same_record((await c.search(np.ones(DIM), k=1, include_vectors=with_vectors))[0].record,
                       validated)  # fmt: skip


# -- the planner's estimates ---------------------------------------------------------


async def _planner_total(db: vecdb.Database, c: vecdb.Collection[Any]) -> float:
    async with db.acquire() as conn:
        return await _estimates._plan_rows(conn, f"SELECT 1 FROM {c._table}", [])


async def test_the_table_size_comes_from_pg_class_as_the_planner_computes_it(
    db: vecdb.Database,
) -> None:
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10, where={"bucket": {"$lt": 50}})
    assert explained.total_rows == await _planner_total(db, c) == 3000
    async with db.acquire() as conn:
        # Grow the table behind the statistics' back: the planner scales the
        # analysed density by the current number of pages, and so must we.
        await conn.execute(f"ALTER TABLE {c._table} SET (autovacuum_enabled = off)")
        await conn.execute(
            f"INSERT INTO {c._table} (id, bucket, cluster, embedding) "
            f"SELECT id + 10000, bucket, cluster, embedding FROM {c._table}"
        )
    c._searcher.data_changed()
    explained = await c.explain(vectors[0], k=10, where={"bucket": {"$lt": 50}})
    assert explained.total_rows == await _planner_total(db, c)
    assert explained.total_rows is not None
    assert explained.total_rows > 3000


async def test_a_table_never_analysed_asks_the_planner_for_its_size(db: vecdb.Database) -> None:
    c = await db.collection("fresh", Item, dim=DIM, filterable=("bucket",))
    vectors, _ = clustered(2000)
    async with db.acquire() as conn:
        await conn.execute(f"ALTER TABLE {c._table} SET (autovacuum_enabled = off)")
        await conn.executemany(
            f"INSERT INTO {c._table} (id, bucket, cluster, embedding) VALUES ($1, $2, 0, $3)",
            [(i, i % 100, vectors[i]) for i in range(len(vectors))],
        )
        assert await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", c._table
        ) == -1  # fmt: skip
    explained = await c.explain(vectors[0], k=10, where={"bucket": 3})
    assert explained.total_rows == await _planner_total(db, c)


@pytest.mark.parametrize(
    ("where", "strategy"),
    [({"bucket": 7}, "exact"), ({"bucket": {"$lt": 60}}, "hnsw_iterative")],
    ids=["selective", "broad"],
)
async def test_the_estimates_choose_as_two_explains_would(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch, where: dict[str, Any], strategy: str
) -> None:
    monkeypatch.setattr(_search, "EXACT_MAX_ROWS", 100)
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)
    explained = await c.explain(vectors[0], k=10, where=where)
    compiled = compile_filter(where, c._fields)
    async with db.acquire() as conn:
        matching = await _estimates._plan_rows(
            conn, f"SELECT 1 FROM {c._table} WHERE {compiled.sql}", compiled.params
        )
    total = await _planner_total(db, c)
    assert (explained.estimated_rows, explained.total_rows) == (matching, total)
    expected = _search.choose(
        has_index=True, exact=False, filtered=True, k=10, ef_search=None, iterative=True,
        estimated_rows=matching, total_rows=total, dim=DIM,
    )  # fmt: skip
    assert explained.strategy == expected.strategy == strategy


def count_explains(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the SQL of every planner estimate (``EXPLAIN``) vecdb asks for."""
    explains: list[str] = []
    real = _estimates._plan_rows

    async def counting(conn: Any, sql: str, params: list[Any]) -> float:
        explains.append(sql)
        return await real(conn, sql, params)

    monkeypatch.setattr(_estimates, "_plan_rows", counting)
    return explains


async def test_a_new_filter_value_costs_one_explain_and_a_known_one_none(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, labels = clustered(1000)
    c = await load(db, vectors, labels)
    explains = count_explains(monkeypatch)
    for bucket in (10, 10, 20, 10, 20):
        await c.search(vectors[0], k=5, where={"bucket": {"$lt": bucket}})
    assert len(explains) == 2
    assert all("WHERE" in sql for sql in explains)  # the table's size came from pg_class
    await c.upsert([Item(id=5000, bucket=1, cluster=0, embedding=vectors[0])])
    await c.search(vectors[0], k=5, where={"bucket": {"$lt": 10}})  # writes forget estimates
    assert len(explains) == 3


async def test_equality_on_a_column_of_rare_values_needs_no_explain_per_value(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)  # 100 buckets of 30 rows
    explains = count_explains(monkeypatch)
    for bucket in range(40):
        hits = await c.search(vectors[0], k=5, where={"bucket": {"$eq": bucket}})
        assert {h.record.bucket for h in hits} == {bucket}
    assert explains == []
    # explain() reports the planner's own estimate, and the same strategy:
    explained = await c.explain(vectors[0], k=5, where={"bucket": 3})
    assert (explained.strategy, len(explains)) == ("exact", 1)
    assert explained.estimated_rows is not None
    assert explained.estimated_rows < 100


async def test_equality_on_a_column_of_common_values_still_asks_the_planner(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_search, "EXACT_MAX_ROWS", 100)
    vectors, labels = clustered(3000)
    c = await load(db, vectors, labels)  # 20 clusters of ~150 rows: more than 100
    explains = count_explains(monkeypatch)
    for cluster in (1, 2, 1):
        await c.search(vectors[0], k=5, where={"cluster": cluster})
    assert len(explains) == 2


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"bucket": 3}, "bucket"),
        ({"bucket": {"$eq": 3}}, "bucket"),
        ({"bucket": None}, None),
        ({"bucket": {"$ne": 3}}, None),
        ({"bucket": {"$eq": 3, "$lt": 5}}, None),
        ({"bucket": 3, "cluster": 1}, None),
        ({"$or": [{"bucket": 3}]}, None),
        (None, None),
    ],
    ids=["plain", "eq", "null", "ne", "eq-and-lt", "two-fields", "or", "none"],
)
def test_which_filters_are_one_equality(where: dict[str, Any] | None, field: str | None) -> None:
    fields = {"bucket": ColumnType.BIGINT, "cluster": ColumnType.BIGINT}
    assert _search.equality_field(where, fields) == field
