"""Collections and search: vecdb against the raw asyncpg + pgvector way, on one server.

Run from the repository root:

    .venv/bin/python benchmarks/bench_search.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_search.py --synthetic 50000       # anyone can run this
    .venv/bin/python benchmarks/bench_search.py --data PATH --quick     # 10k rows, 100 queries
    .venv/bin/python benchmarks/bench_search.py --synthetic 20000 --dsn postgresql://me@host/db

``--data`` takes the shared dataset format (``vectors_f16.npy``, ``queries.npy``,
``gt.npy``, ``records.jsonl``, ``gt_bucket_<value>.npy``; see its README).
``--synthetic N`` makes clustered unit vectors with the same bucket fractions
and computes the exact ground truth with numpy. With ``--rows``/``--quick``
on a dataset, the ground truth is recomputed for the subset. Without
``--dsn`` the benchmark starts an embedded server in a temporary directory;
with ``--dsn`` (a role that may CREATE DATABASE) it makes a database there.
Either way the database is dropped at the end.

Both sides get the same table: ``id bigint primary key, bucket text, category
text, embedding vector(dim)``, a B-tree on ``bucket`` (vecdb makes it when the
collection is created, so the raw table has it before loading too), and after
the load an HNSW index ``vector_cosine_ops`` (m=16, ef_construction=64).

Parts (each prints a Markdown table):

1. Bulk load: raw binary COPY (``copy_records_to_table``, codecs from
   ``pgvector.asyncpg.register_vector``) against ``collection.upsert(records)``
   of prebuilt ``Item`` models, ``--load-reps`` times each (tables emptied in
   between, order alternating; the first load into a new database also pays
   for creating WAL segments); then each builds its HNSW index (raw:
   ``CREATE INDEX`` with ``maintenance_work_mem`` and parallel workers set as
   pgvector's README advises; vecdb: ``create_index()`` with its defaults).
2. Unfiltered search, k=10, ef_search 40: p50/p95 latency and QPS with 1 and
   8 concurrent clients (asyncio tasks over one pool of 8 connections each),
   the systems taking turns every fifth of the queries, ``--rounds`` times.
3. Recall@10, p50 latency and mean results per query at ef_search 40 and 100,
   unfiltered and with ``bucket = p50 / p10 / p1 / p05 / p01``: raw pgvector,
   raw with ``SET LOCAL hnsw.iterative_scan = relaxed_order``, and vecdb
   (with the strategy it chose), taking turns query by query.
4. halfvec against vector storage: table and index size, load and build time,
   recall@10, for raw tables and vecdb collections.
5. ``--parts many``: ``search_many(queries)`` in one call (concurrency 8, 4, 2,
   1) against raw's one SELECT per query over 8 clients, QPS and recall.
6. ``--parts profile``: vecdb's own Python per search, each step timed in a
   loop apart from the driver (see docs/search.md, "The hot path").

Parts 2-4 take turns so that background load on the machine weighs on every
system alike; the machine's load average is printed at the start and end.

recall@k = |returned ids ∩ gt[:, :k]| / min(k, matching rows), averaged over queries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import pgvector.asyncpg
from _common import Server, machine, summary, table

import vecdb
from vecdb._schema.rows import query_vector
from vecdb._search import session as _session
from vecdb._search.filters import compile_filter
from vecdb._search.statements import DISTANCE

K = 10
GT_K = 100
BUCKETS = {"p50": 0.5, "p10": 0.1, "p1": 0.01, "p05": 0.005, "p01": 0.001}
M, EF_CONSTRUCTION = 16, 64
RAW_WORK_MEM = "512MB"  # pgvector's README: let the graph fit in maintenance_work_mem

Floats = npt.NDArray[np.float32]


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Dataset:
    name: str
    vectors: Floats  # [rows, dim], unit norm
    queries: Floats  # [queries, dim]
    bucket: list[str]
    category: list[str]
    gt: npt.NDArray[np.int64]  # [queries, GT_K] exact top ids by cosine
    gt_bucket: dict[str, npt.NDArray[np.int64]]  # per bucket value, -1 padded
    bucket_rows: dict[str, int]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def exact_topk(
    vectors: Floats, queries: Floats, mask: npt.NDArray[np.bool_] | None = None, k: int = GT_K
) -> npt.NDArray[np.int64]:
    """Exact top-``k`` ids by cosine (unit vectors: inner product), -1 padded."""
    ids = np.arange(len(vectors)) if mask is None else np.flatnonzero(mask)
    candidates = vectors[ids]
    out = np.full((len(queries), k), -1, dtype=np.int64)
    top = min(k, len(ids))
    if top == 0:
        return out
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ candidates.T
        part = np.argpartition(-sims, top - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start : start + 64, :top] = ids[np.take_along_axis(part, order, axis=1)]
    return out


def _filtered_gt(
    vectors: Floats, queries: Floats, bucket: list[str]
) -> tuple[dict[str, npt.NDArray[np.int64]], dict[str, int]]:
    values = np.asarray(bucket)
    gts, rows = {}, {}
    for name in BUCKETS:
        mask = values == name
        gts[name] = exact_topk(vectors, queries, mask)
        rows[name] = int(mask.sum())
    return gts, rows


def load_shared(path: Path, rows: int | None, queries: int | None) -> Dataset:
    vectors = np.load(path / "vectors_f16.npy").astype(np.float32)
    query_vectors = np.load(path / "queries.npy").astype(np.float32)
    bucket, category = [], []
    with (path / "records.jsonl").open() as lines:
        for i, line in enumerate(lines):
            record = json.loads(line)
            if record["id"] != i:
                raise ValueError(f"records.jsonl line {i} has id {record['id']}; expected {i}")
            bucket.append(record["bucket"])
            category.append(record["category"])
    n_queries = min(queries or len(query_vectors), len(query_vectors))
    query_vectors = query_vectors[:n_queries]
    if rows is not None and rows < len(vectors):
        vectors, bucket, category = vectors[:rows], bucket[:rows], category[:rows]
        gt = exact_topk(vectors, query_vectors)
        gt_bucket, bucket_rows = _filtered_gt(vectors, query_vectors, bucket)
        name = f"{path.name} (first {rows} rows; ground truth recomputed)"
    else:
        gt = np.load(path / "gt.npy")[:n_queries].astype(np.int64)
        manifest = json.loads((path / "manifest.json").read_text())
        gt_bucket, bucket_rows = {}, {}
        for value in BUCKETS:
            gt_bucket[value] = np.load(path / f"gt_bucket_{value}.npy")[:n_queries].astype(np.int64)
            bucket_rows[value] = int(manifest["filters"][f"bucket={value}"]["rows"])
        # Sanity: the shipped ground truth agrees with numpy on these vectors.
        check = exact_topk(vectors, query_vectors[:50], k=K)
        agree = np.mean([len(set(a) & set(b)) / K for a, b in zip(check, gt[:50, :K], strict=True)])
        if agree < 0.99:
            raise ValueError(f"{path}/gt.npy agrees with numpy on only {agree:.1%} of top-{K}")
        name = path.name
    return Dataset(name, vectors, query_vectors, bucket, category, gt, gt_bucket, bucket_rows)


def make_synthetic(rows: int, queries: int, dim: int, seed: int = 7) -> Dataset:
    """Clustered unit vectors (like text embeddings: many topics, uneven sizes)."""
    rng = np.random.default_rng(seed)
    clusters = max(16, rows // 500)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    weights = rng.pareto(1.5, size=clusters) + 1
    weights /= weights.sum()

    def sample(n: int) -> Floats:
        which = rng.choice(clusters, size=n, p=weights)
        points = centers[which] + rng.normal(scale=0.9, size=(n, dim)).astype(np.float32)
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    vectors, query_vectors = sample(rows), sample(queries)
    bucket = np.full(rows, "rest", dtype=object)
    order = rng.permutation(rows)
    start = 0
    for name, fraction in BUCKETS.items():
        count = round(rows * fraction)
        bucket[order[start : start + count]] = name
        start += count
    names = [f"mod{i:02d}" for i in range(30)]
    popularity = 1 / np.arange(1, 31) ** 1.2
    category = rng.choice(names, size=rows, p=popularity / popularity.sum()).tolist()
    gt = exact_topk(vectors, query_vectors)
    gt_bucket, bucket_rows = _filtered_gt(vectors, query_vectors, bucket.tolist())
    return Dataset(
        f"synthetic ({rows} rows, {dim} dims, {clusters} clusters, seed {seed})",
        vectors,
        query_vectors,
        bucket.tolist(),
        category,
        gt,
        gt_bucket,
        bucket_rows,
    )


def recall(found: Sequence[Sequence[int]], gt: npt.NDArray[np.int64], k: int = K) -> float:
    scores = []
    for ids, truth in zip(found, gt, strict=True):
        expected = {int(i) for i in truth[:k] if i >= 0}
        if not expected:
            continue
        scores.append(len(expected & set(ids[:k])) / min(k, len(expected)))
    return float(np.mean(scores)) if scores else float("nan")


# --------------------------------------------------------------------------------------
# the raw way: asyncpg + pgvector-python
# --------------------------------------------------------------------------------------


class RawTable:
    """A hand-made table searched with hand-written SQL."""

    def __init__(self, pool: asyncpg.Pool, name: str, storage: str, dim: int) -> None:
        self.pool, self.name, self.storage, self.dim = pool, name, storage, dim
        cast = f"$1::{storage}({dim})"
        select = f"SELECT id, bucket, category, embedding <=> {cast} AS distance FROM {name}"
        self.sql = f"{select} ORDER BY distance LIMIT $2"
        # k written in: PostgreSQL then keeps a generic plan (a bound LIMIT is
        # planned again at every execution), as vecdb's unfiltered statement does.
        self.sql_k = f"{select} ORDER BY distance LIMIT {K}"
        self.sql_where = f"{select} WHERE bucket = $3 ORDER BY distance LIMIT $2"

    async def create(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"CREATE TABLE {self.name} (id bigint PRIMARY KEY, bucket text, category text, "
                f"embedding {self.storage}({self.dim}))"
            )
            await conn.execute(f"CREATE INDEX {self.name}_bucket_idx ON {self.name} (bucket)")

    async def load(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                self.name, records=rows, columns=["id", "bucket", "category", "embedding"]
            )

    async def analyze(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(f"ANALYZE {self.name}")

    async def index(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(f"SET maintenance_work_mem = '{RAW_WORK_MEM}'")
            await conn.execute(
                f"SET max_parallel_maintenance_workers = {max(1, (os.cpu_count() or 2) - 1)}"
            )
            await conn.execute(
                f"CREATE INDEX {self.name}_hnsw ON {self.name} USING hnsw "
                f"(embedding {self.storage}_cosine_ops) "
                f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})",
                timeout=3600,
            )

    async def search(self, query: Floats, k: int = K) -> list[int]:
        """One statement, the server's ef_search (40): the least a raw caller can do."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.sql, query, k)
        return [r["id"] for r in rows]

    async def search_k(self, query: Floats) -> list[int]:
        """As `search`, with k written into the statement: one plan per connection."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.sql_k, query)
        return [r["id"] for r in rows]

    async def search_tx(
        self,
        query: Floats,
        k: int = K,
        *,
        ef_search: int = 40,
        bucket: str | None = None,
        iterative: bool = False,
    ) -> list[int]:
        """pgvector-python's advice: ``SET LOCAL`` in the query's transaction."""
        settings = f"SET LOCAL hnsw.ef_search = {int(ef_search)}"
        if iterative:
            settings += "; SET LOCAL hnsw.iterative_scan = relaxed_order"
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(settings)
            if bucket is None:
                rows = await conn.fetch(self.sql, query, k)
            else:
                rows = await conn.fetch(self.sql_where, query, k, bucket)
        return [r["id"] for r in rows]


# --------------------------------------------------------------------------------------
# vecdb
# --------------------------------------------------------------------------------------


class Item(vecdb.Record):
    id: int
    bucket: str
    category: str
    embedding: vecdb.Vector


async def open_items(
    db: vecdb.Database, name: str, storage: str, dim: int
) -> vecdb.Collection[Item]:
    return await db.collection(
        name,
        Item,
        dim=dim,
        metric="cosine",
        storage=storage,  # type: ignore[arg-type]
        index=None,  # load, then create_index(): the order the raw side uses
        filterable=("bucket",),
    )


def vecdb_search(
    items: vecdb.Collection[Item], *, ef_search: int | None = None, bucket: str | None = None
) -> Callable[[Floats], Awaitable[list[int]]]:
    where = None if bucket is None else {"bucket": bucket}

    async def search(query: Floats) -> list[int]:
        hits = await items.search(query, k=K, where=where, ef_search=ef_search)
        return [h.record.id for h in hits]

    return search


# --------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------


Search = Callable[[Floats], Awaitable[list[int]]]


async def run_queries(
    search: Search, queries: Floats, clients: int = 1
) -> tuple[list[list[int]], list[float], float]:
    """Run every query once over ``clients`` tasks: (ids per query, latencies, wall seconds)."""
    results: list[list[int]] = [[] for _ in range(len(queries))]
    latencies: list[float] = []
    todo = iter(range(len(queries)))

    async def client() -> None:
        for i in todo:  # one shared iterator: each query is taken by one client
            started = time.perf_counter()
            results[i] = await search(queries[i])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return results, latencies, time.perf_counter() - started


async def run_interleaved(
    searches: Sequence[Search], queries: Floats
) -> list[tuple[list[list[int]], list[float]]]:
    """Every search runs every query once, one client, the searches taking turns query by query.

    Background load then weighs on all of them alike. At each turn the searches
    work on queries far apart (search j is ``j * n / len(searches)`` queries
    ahead), so that none runs a query right after another search ran the same
    one on the same table, with that query's index pages still in the CPU caches.
    """
    n = len(queries)
    found: list[list[list[int]]] = [[[] for _ in range(n)] for _ in searches]
    latencies: list[list[float]] = [[] for _ in searches]
    for i in range(n):
        for step in range(len(searches)):
            j = (i + step) % len(searches)
            q = (i + j * n // len(searches)) % n
            started = time.perf_counter()
            found[j][q] = await searches[j](queries[q])
            latencies[j].append(time.perf_counter() - started)
    return list(zip(found, latencies, strict=True))


async def checkpoint(pool: asyncpg.Pool) -> None:
    """Flush dirty buffers so that one load's writes do not slow the next one down."""
    async with pool.acquire() as conn:
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")


async def sizes(pool: asyncpg.Pool, table_name: str) -> tuple[int, int, int]:
    """(total relation size, heap size, HNSW index size) in bytes."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT pg_total_relation_size($1::regclass) AS total,
                   pg_relation_size($1::regclass) AS heap,
                   coalesce((SELECT sum(pg_relation_size(i.indexrelid))
                             FROM pg_index i
                             JOIN pg_class c ON c.oid = i.indexrelid
                             JOIN pg_am a ON a.oid = c.relam
                             WHERE i.indrelid = $1::regclass AND a.amname = 'hnsw'), 0) AS hnsw
            """,
            table_name,
        )
    assert row is not None  # noqa: S101
    return int(row["total"]), int(row["heap"]), int(row["hnsw"])


def mb(size: int) -> str:
    return f"{size / 2**20:.1f}"


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def raw_rows(data: Dataset) -> list[tuple[Any, ...]]:
    return [
        (i, data.bucket[i], data.category[i], data.vectors[i]) for i in range(len(data.vectors))
    ]


def build_items(data: Dataset) -> list[Item]:
    return [
        Item(id=i, bucket=data.bucket[i], category=data.category[i], embedding=data.vectors[i])
        for i in range(len(data.vectors))
    ]


@dataclasses.dataclass
class Loaded:
    """A raw table and a vecdb collection holding the same data, and what loading them took."""

    storage: str
    raw: RawTable
    items: vecdb.Collection[Item]
    raw_load_s: list[float]
    vecdb_load_s: list[float]
    raw_analyze_s: float
    models_s: float
    raw_index_s: float
    vecdb_index_s: float


async def load_both(
    db: vecdb.Database, pool: asyncpg.Pool, data: Dataset, storage: str, reps: int
) -> Loaded:
    """Load both sides ``reps`` times (emptied in between, order alternating), then index."""
    suffix = "" if storage == "vector" else f"_{storage}"
    raw = RawTable(pool, f"raw_items{suffix}", storage, data.dim)
    await raw.create()
    items = await open_items(db, f"items{suffix}", storage, data.dim)
    rows = raw_rows(data)
    started = time.perf_counter()
    records = build_items(data)
    models_s = time.perf_counter() - started

    async def load_raw() -> None:
        await raw.load(rows)

    async def load_vecdb() -> None:
        written = await items.upsert(records)
        if written != len(records):
            raise RuntimeError(f"upsert wrote {written} rows, expected {len(records)}")

    times: dict[str, list[float]] = {"raw": [], "vecdb": []}
    sides = [("raw", raw.name, load_raw), ("vecdb", items.name, load_vecdb)]
    for rep in range(reps):
        for side, table_name, load in sides if rep % 2 == 0 else sides[::-1]:
            async with pool.acquire() as conn:
                await conn.execute(f"TRUNCATE {table_name}")
            await checkpoint(pool)
            started = time.perf_counter()
            await load()
            times[side].append(time.perf_counter() - started)
    started = time.perf_counter()
    await raw.analyze()  # vecdb's upsert() runs ANALYZE itself after a large load
    raw_analyze_s = time.perf_counter() - started
    await checkpoint(pool)
    started = time.perf_counter()
    await raw.index()
    raw_index_s = time.perf_counter() - started
    await checkpoint(pool)
    started = time.perf_counter()
    await items.create_index(vecdb.HNSW(m=M, ef_construction=EF_CONSTRUCTION))
    vecdb_index_s = time.perf_counter() - started
    return Loaded(
        storage,
        raw,
        items,
        times["raw"],
        times["vecdb"],
        raw_analyze_s,
        models_s,
        raw_index_s,
        vecdb_index_s,
    )


# --------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------


def part_load(loaded: Loaded, rows: int) -> None:
    raw_s, vec_s = min(loaded.raw_load_s), min(loaded.vecdb_load_s)
    raw_med, vec_med = float(np.median(loaded.raw_load_s)), float(np.median(loaded.vecdb_load_s))
    ratio = vec_s / raw_s
    reps = len(loaded.raw_load_s)
    table(
        f"Part 1 - bulk load of {rows} rows ({loaded.storage}), then the HNSW build "
        f"(s; best of {reps} loads each, emptied between, order alternating)",
        ["step", "raw asyncpg + pgvector", "vecdb", "vecdb / raw"],
        [
            [
                "load: raw COPY vs vecdb upsert(models), best",
                fmt(raw_s, 2),
                fmt(vec_s, 2),
                fmt(ratio, 2),
            ],
            ["load, median", fmt(raw_med, 2), fmt(vec_med, 2), fmt(vec_med / raw_med, 2)],
            [
                "load + ANALYZE (vecdb's upsert runs it itself), best",
                fmt(raw_s + loaded.raw_analyze_s, 2),
                fmt(vec_s, 2),
                fmt(vec_s / (raw_s + loaded.raw_analyze_s), 2),
            ],
            ["rows/s (best load)", f"{rows / raw_s:,.0f}", f"{rows / vec_s:,.0f}", ""],
            ["build the Item models first (not in the load)", "-", fmt(loaded.models_s, 2), "-"],
            [
                "HNSW build (raw: CREATE INDEX; vecdb: create_index())",
                fmt(loaded.raw_index_s, 1),
                fmt(loaded.vecdb_index_s, 1),
                fmt(loaded.vecdb_index_s / loaded.raw_index_s, 2),
            ],
        ],
    )
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    print(f"upsert / COPY = {ratio:.2f} ({verdict} the <= 1.5 target)")


async def part_latency(loaded: Loaded, data: Dataset, rounds: int, dsn: str) -> None:
    raw = loaded.raw
    # Raw's best case at ef_search 100: set once in its pool's server_settings.
    pool100 = await asyncpg.create_pool(
        dsn,
        min_size=8,
        max_size=8,
        init=pgvector.asyncpg.register_vector,
        server_settings={"hnsw.ef_search": "100"},
    )
    raw100 = RawTable(pool100, raw.name, raw.storage, raw.dim)
    # Raw SQL on vecdb's own table: the same HNSW graph, so only the client and
    # the protocol differ (two graphs of the same rows differ in search cost).
    same = RawTable(raw.pool, loaded.items.table, raw.storage, raw.dim)
    same100 = RawTable(pool100, loaded.items.table, raw.storage, raw.dim)
    systems: list[tuple[str, Search]] = [
        ("raw: one SELECT (server ef_search 40)", raw.search),
        ("raw: BEGIN; SET LOCAL ef_search 40; SELECT; COMMIT", raw.search_tx),
        ("vecdb: search(q, k=10)", vecdb_search(loaded.items)),
        ("vecdb: search(q, k=10, ef_search=40)", vecdb_search(loaded.items, ef_search=40)),
        ("raw: one SELECT (pool server_settings ef_search 100)", raw100.search),
        ("vecdb: search(q, k=10, ef_search=100)", vecdb_search(loaded.items, ef_search=100)),
        (f"raw: one SELECT, LIMIT {K} written in (server ef_search 40)", raw.search_k),
        (f"raw: one SELECT, LIMIT {K} written in (server_settings 100)", raw100.search_k),
        (f"raw on vecdb's table: LIMIT {K} written in (server ef_search 40)", same.search_k),
        (f"raw on vecdb's table: LIMIT {K} written in (server_settings 100)", same100.search_k),
    ]
    # (vecdb row, its raw best case): raw's LIMIT $2, raw with k written in, and
    # raw on vecdb's own table and index
    pairs = [(2, 0), (3, 0), (5, 4), (2, 6), (3, 6), (5, 7), (2, 8), (3, 8), (5, 9)]
    block = max(20, len(data.queries) // 5)
    blocks = [data.queries[i : i + block] for i in range(0, len(data.queries), block)]
    rows = []
    verdicts = []
    try:
        for clients in (1, 8):
            lat: dict[str, list[float]] = {name: [] for name, _ in systems}
            wall: dict[str, float] = dict.fromkeys(lat, 0.0)
            recalls: dict[str, float] = {}
            for name, search in systems:  # warm-up: caches, prepared statements
                found, _, _ = await run_queries(search, data.queries, clients)
                recalls[name] = recall(found, data.gt)
            turn = 0
            for _ in range(rounds):
                for _ in blocks:
                    # The systems take turns, first in rotation, each on another block
                    # of queries (see run_interleaved); every system runs every block.
                    for step in range(len(systems)):
                        j = (turn + step) % len(systems)
                        name, search = systems[j]
                        queries = blocks[(turn + j) % len(blocks)]
                        _, latencies, seconds = await run_queries(search, queries, clients)
                        lat[name] += latencies
                        wall[name] += seconds
                    turn += 1
            base_name = systems[0][0]
            base = summary(lat[base_name])
            base_qps = len(lat[base_name]) / wall[base_name]
            for name, _ in systems:
                p50, p95, _, _ = summary(lat[name])
                qps = len(lat[name]) / wall[name]
                rows.append(
                    [
                        clients,
                        name,
                        fmt(p50 * 1000, 2),
                        fmt(p95 * 1000, 2),
                        f"{qps:,.0f}",
                        fmt(p50 / base[0], 2),
                        fmt(p95 / base[1], 2),
                        fmt(qps / base_qps, 2),
                        fmt(recalls[name], 3),
                    ]
                )
            for vec, ref in pairs:
                vec_name, ref_name = systems[vec][0], systems[ref][0]
                p50_ratio = summary(lat[vec_name])[0] / summary(lat[ref_name])[0]
                qps_ratio = (len(lat[vec_name]) / wall[vec_name]) / (
                    len(lat[ref_name]) / wall[ref_name]
                )
                verdicts.append(
                    f"{vec_name} vs {ref_name}, {clients} client(s): "
                    f"p50 ratio {p50_ratio:.2f} ({'meets' if p50_ratio <= 1.05 else 'MISSES'} "
                    f"<= 1.05), QPS ratio {qps_ratio:.2f} "
                    f"({'meets' if qps_ratio >= 0.95 else 'MISSES'} >= 0.95)"
                )
    finally:
        await pool100.close()
    table(
        f"Part 2 - unfiltered search, k={K}: {len(data.queries)} queries x {rounds} rounds per "
        f"system, alternating every {block} queries (ms; ratios against the first raw row)",
        ["clients", "system", "p50", "p95", "QPS", "p50 ratio", "p95 ratio", "QPS ratio", "recall"],
        rows,
    )
    for line in verdicts:
        print(line)


async def part_many(loaded: Loaded, data: Dataset, rounds: int) -> None:
    """search_many(all queries) in one call against raw's best: one SELECT each, 8 clients."""
    items, queries = loaded.items, data.queries
    n = len(queries)

    async def many(concurrency: int) -> tuple[list[list[int]], float]:
        started = time.perf_counter()
        hits = await items.search_many(queries, k=K, concurrency=concurrency)
        return [[h.record.id for h in found] for found in hits], time.perf_counter() - started

    async def raw8() -> tuple[list[list[int]], float]:
        found, _, seconds = await run_queries(loaded.raw.search, queries, 8)
        return found, seconds

    sides: list[tuple[str, Callable[[], Awaitable[tuple[list[list[int]], float]]]]] = [
        ("raw: one SELECT per query, 8 clients", raw8),
        ("vecdb: search_many(queries), concurrency=8", lambda: many(8)),
        ("vecdb: search_many(queries), concurrency=4", lambda: many(4)),
        ("vecdb: search_many(queries), concurrency=2", lambda: many(2)),
        ("vecdb: search_many(queries), concurrency=1", lambda: many(1)),
    ]
    for _, run_side in sides:  # warm-up
        await run_side()
    walls: dict[str, list[float]] = {name: [] for name, _ in sides}
    recalls: dict[str, float] = {}
    for r in range(rounds):
        for step in range(len(sides)):
            name, run_side = sides[(r + step) % len(sides)]
            found, seconds = await run_side()
            walls[name].append(seconds)
            recalls[name] = recall(found, data.gt)
    base = n * len(walls[sides[0][0]]) / sum(walls[sides[0][0]])
    out = []
    for name, _ in sides:
        qps = n * len(walls[name]) / sum(walls[name])
        out.append([name, f"{qps:,.0f}", fmt(qps / base, 2), fmt(recalls[name], 3)])
    table(
        f"Part 5 - {n} queries in one call, k={K}, server ef_search 40; {rounds} rounds, "
        "the sides taking turns (QPS over all rounds)",
        ["system", "QPS", "QPS / raw 8 clients", "recall"],
        out,
    )
    best = max(n * len(w) / sum(w) for name, w in walls.items() if name != sides[0][0])
    print(
        f"search_many best / raw 8 clients = {best / base:.2f} "
        f"({'meets' if best / base >= 2 else 'MISSES'} >= 2)"
    )


async def part_profile(  # noqa: PLR0915 - one step after another, each timed
    loaded: Loaded, data: Dataset, reps: int = 3000
) -> None:
    """vecdb's own Python per search, k=10 without vectors, each step timed apart from the driver.

    Each step runs ``reps`` times in a loop on the same query, timed in CPU
    time of this process (``time.process_time``), not wall time: on a loaded
    machine wall time counts the time other processes ran. The driver's fetch
    is in none of the vecdb steps; it is timed alone for scale.
    """
    items = loaded.items
    searcher = items._searcher
    pool = searcher._pool
    spec = searcher._spec
    q = data.queries[0]

    async def timed(step: Callable[[], Awaitable[Any]]) -> float:
        await step()
        started = time.process_time()
        for _ in range(reps):
            await step()
        return (time.process_time() - started) / reps * 1e6

    await items.search(q, k=10, ef_search=40)  # plans it: later calls find the plan cached
    cache = searcher._unfiltered
    key = (None, 10, 40, False, False, None, None)
    spec_v, prepared, _strategy = cache[key]

    async def validate() -> Any:
        # What a search with a known plan checks: the cache key, the query vector.
        cache.get(key)
        return query_vector(q, spec, spec_v)

    async def first_plan() -> Any:
        v = searcher._vector_field(None)
        searcher._check_search(10, 40)
        compiled = compile_filter(None, searcher._fields, first_param=3)
        plan = await searcher._plan(
            None,  # type: ignore[arg-type]  # unfiltered: no I/O, no connection used
            None,
            compiled,
            k=10,
            ef_search=40,
            exact=False,
            dim=v.dim,
        )
        return searcher._prepare(v, compiled, plan, 10, False, None)

    async with _session.acquire(pool) as conn:
        rows = await conn.fetch(prepared.sql, q, *prepared.params)
        session = _session.session_of(conn) or _session.Session()

        async def settings_step() -> Any:
            await _session.apply(conn, session, prepared.settings)
            session.clean_search = True

        async def driver() -> Any:
            return await conn.fetch(prepared.sql, q, *prepared.params)

        steps = {
            "argument check: cached plan lookup, query vector": await timed(validate),
            "settings check (session.apply, unchanged)": await timed(settings_step),
        }
        first_us = await timed(first_plan)
        driver_us = await timed(driver)
    decode = searcher._codec.from_row

    async def decode_step() -> Any:
        return [vecdb.Hit(decode(row, with_vectors=False), float(row[DISTANCE])) for row in rows]

    async def pool_step() -> Any:
        async with _session.acquire(pool) as c:
            s = _session.session_of(c)
            if s is not None:
                s.clean_search = True  # as after a search: no reset on release

    async def raw_pool_step() -> Any:
        async with loaded.raw.pool.acquire():
            pass

    steps["row decode (10 rows into records and Hits)"] = await timed(decode_step)
    pool_us, raw_pool_us = await timed(pool_step), await timed(raw_pool_step)

    async def whole() -> Any:
        return await items.search(q, k=10, ef_search=40)

    async def raw_whole() -> Any:
        return await loaded.raw.search(q)

    whole_us, raw_us = await timed(whole), await timed(raw_whole)
    ours = sum(steps.values())
    rows_out = [[name, fmt(us, 1)] for name, us in steps.items()]
    rows_out += [
        ["**vecdb's own Python per search (the steps above)**", fmt(ours, 1)],
        ["pool wrapper: vecdb acquire + release (no reset after a search)", fmt(pool_us, 1)],
        [
            "pool: raw asyncpg acquire + release (its reset round trip included)",
            fmt(raw_pool_us, 1),
        ],
        ["once per argument set: field, k, filter, planner.choose, SQL", fmt(first_us, 1)],
        ["driver: asyncpg fetch alone", fmt(driver_us, 1)],
        ["whole vecdb search(q, k=10, ef_search=40)", fmt(whole_us, 1)],
        ["whole raw search (pool acquire, one SELECT, release)", fmt(raw_us, 1)],
    ]
    table(
        f"Part 6 - CPU time per search in this process (µs, mean of {reps}; k={K}, no vectors)",
        ["step", "µs"],
        rows_out,
    )
    verdict = "meets" if ours <= 30 else "MISSES"
    print(f"vecdb's own Python per search: {ours:.1f} µs ({verdict} <= 30)")
    print(f"whole search CPU, vecdb - raw: {whole_us - raw_us:+.1f} µs")


async def part_recall(loaded: Loaded, data: Dataset) -> None:
    raw, items = loaded.raw, loaded.items
    rows = []
    filters: list[str | None] = [None, *BUCKETS]
    for ef in (40, 100):
        for bucket in filters:
            gt = data.gt if bucket is None else data.gt_bucket[bucket]
            matching = len(data.vectors) if bucket is None else data.bucket_rows[bucket]

            def raw_plain(q: Floats, ef: int = ef, bucket: str | None = bucket) -> Any:
                return raw.search_tx(q, ef_search=ef, bucket=bucket)

            def raw_iter(q: Floats, ef: int = ef, bucket: str | None = bucket) -> Any:
                return raw.search_tx(q, ef_search=ef, bucket=bucket, iterative=True)

            searches = [raw_plain, raw_iter, vecdb_search(items, ef_search=ef, bucket=bucket)]
            await run_interleaved(searches, data.queries[:20])  # warm-up
            cells: list[str] = []
            for found, latencies in await run_interleaved(searches, data.queries):
                cells += [
                    fmt(recall(found, gt), 3),
                    fmt(summary(latencies)[0] * 1000, 2),
                    fmt(float(np.mean([len(f) for f in found])), 1),
                ]
            where = None if bucket is None else {"bucket": bucket}
            plan = await items.explain(data.queries[0], k=K, where=where, ef_search=ef)
            label = "none" if bucket is None else f"bucket={bucket}"
            rows.append([ef, label, matching, *cells, plan.strategy])
    table(
        f"Part 3 - recall@{K}, p50 latency (ms) and mean results per query; "
        f"{len(data.queries)} queries, one client, the three run query by query in turn",
        [
            "ef_search",
            "filter",
            "matching rows",
            "raw recall",
            "raw p50",
            "raw n",
            "raw iterative recall",
            "iter p50",
            "iter n",
            "vecdb recall",
            "vecdb p50",
            "vecdb n",
            "vecdb strategy",
        ],
        rows,
    )


async def part_defaults(loaded: Loaded, data: Dataset) -> None:
    """vecdb as a user gets it: no ef_search, the strategy and settings it picks itself."""
    rows = []
    for bucket in [None, *BUCKETS]:
        gt = data.gt if bucket is None else data.gt_bucket[bucket]
        search = vecdb_search(loaded.items, bucket=bucket)
        await run_queries(search, data.queries[:20])
        found, latencies, _ = await run_queries(search, data.queries)
        where = None if bucket is None else {"bucket": bucket}
        plan = await loaded.items.explain(data.queries[0], k=K, where=where)
        rows.append(
            [
                "none" if bucket is None else f"bucket={bucket}",
                fmt(recall(found, gt), 3),
                fmt(summary(latencies)[0] * 1000, 2),
                fmt(summary(latencies)[1] * 1000, 2),
                fmt(float(np.mean([len(f) for f in found])), 1),
                plan.strategy,
                ", ".join(f"{k}={v}" for k, v in plan.settings.items()),
            ]
        )
    table(
        f"Part 3b - vecdb with its defaults: search(q, k={K}, where=...) without ef_search",
        ["filter", "recall", "p50 ms", "p95 ms", "mean n", "strategy", "settings (SET LOCAL)"],
        rows,
    )


async def part_halfvec(
    pool: asyncpg.Pool, vector: Loaded, half: Loaded, data: Dataset, rows: int
) -> None:
    sides: list[tuple[str, Loaded, str]] = [
        ("raw vector", vector, "raw"),
        ("raw halfvec", half, "raw"),
        ("vecdb vector", vector, "vecdb"),
        ("vecdb halfvec", half, "vecdb"),
    ]

    def search(loaded: Loaded, side: str, ef: int) -> Search:
        if side == "raw":
            return lambda q: loaded.raw.search_tx(q, ef_search=ef)
        return vecdb_search(loaded.items, ef_search=ef)

    measured: dict[int, list[tuple[list[list[int]], list[float]]]] = {}
    for ef in (40, 100):
        searches = [search(loaded, side, ef) for _, loaded, side in sides]
        await run_interleaved(searches, data.queries[:20])
        measured[ef] = await run_interleaved(searches, data.queries)
    out = []
    for j, (label, loaded, side) in enumerate(sides):
        name = loaded.raw.name if side == "raw" else loaded.items.name
        total, heap, hnsw = await sizes(pool, name)
        load_s = min(loaded.raw_load_s if side == "raw" else loaded.vecdb_load_s)
        index_s = loaded.raw_index_s if side == "raw" else loaded.vecdb_index_s
        cells = []
        for ef in (40, 100):
            found, latencies = measured[ef][j]
            cells += [fmt(recall(found, data.gt), 3), fmt(summary(latencies)[0] * 1000, 2)]
        out.append([label, mb(total), mb(heap), mb(hnsw), fmt(load_s, 2), fmt(index_s, 1), *cells])
    table(
        f"Part 4 - halfvec vs vector storage, {rows} rows (sizes in MB; load = best, s; "
        "index build s; p50 ms; unfiltered, the four run query by query in turn)",
        [
            "table",
            "total size",
            "heap",
            "HNSW index",
            "load s",
            "index s",
            "recall ef40",
            "p50 ef40",
            "recall ef100",
            "p50 ef100",
        ],
        out,
    )


# --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, data: Dataset, server: Server) -> None:
    dsn = await server.create_database()
    pool_config = vecdb.PoolConfig(min_size=8, max_size=8)
    async with vecdb.connect(dsn, pool=pool_config) as db:  # migrates: the extension exists
        pool = await asyncpg.create_pool(
            dsn, min_size=8, max_size=8, init=pgvector.asyncpg.register_vector
        )
        try:
            rows = len(data.vectors)
            print(f"loading {rows} rows into each side, {args.load_reps} times ...", flush=True)
            vector = await load_both(db, pool, data, "vector", args.load_reps)
            part_load(vector, rows)
            if "latency" in args.parts:
                await part_latency(vector, data, rounds=args.rounds, dsn=dsn)
            if "many" in args.parts:
                await part_many(vector, data, rounds=args.rounds)
            if "profile" in args.parts:
                await part_profile(vector, data)
            if "recall" in args.parts:
                await part_recall(vector, data)
                await part_defaults(vector, data)
            if "halfvec" in args.parts:
                print("loading the halfvec tables ...", flush=True)
                half = await load_both(db, pool, data, "halfvec", args.load_reps)
                await part_halfvec(pool, vector, half, data, rows)
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a dataset in the shared format")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N clustered vectors")
    parser.add_argument("--dsn", help="a server (role that may CREATE DATABASE); default embedded")
    parser.add_argument("--quick", action="store_true", help="10k rows, 100 queries, 1 load")
    parser.add_argument("--rows", type=int, help="use the first N rows of --data")
    parser.add_argument("--queries", type=int, help="number of queries (default 500)")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic dimension")
    parser.add_argument("--rounds", type=int, help="part 2 rounds per system (default 3)")
    parser.add_argument("--load-reps", type=int, help="loads per side in part 1 (default 3)")
    parser.add_argument(
        "--shared-buffers",
        default="1GB",
        help="the embedded server's shared_buffers (default 1GB: every table and index "
        "fits, so searches compare CPU, not cache misses); 'default' keeps 128MB",
    )
    parser.add_argument(
        "--parts",
        default="latency,recall,halfvec",
        help="which of latency,many,profile,recall,halfvec to run after the load "
        "(default latency,recall,halfvec)",
    )
    args = parser.parse_args()
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    rows = args.rows or (10_000 if args.quick else None)
    queries = args.queries or (100 if args.quick else 500)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.load_reps = args.load_reps or (1 if args.quick else 3)

    started = time.perf_counter()
    if args.data is not None:
        data = load_shared(args.data, rows, queries)
    else:
        data = make_synthetic(min(rows or args.synthetic, args.synthetic), queries, args.dim)
    print(f"bench_search: {machine()}")
    print(
        f"data: {data.name}: {len(data.vectors)} rows, {len(data.queries)} queries, "
        f"dim {data.dim}; bucket rows {data.bucket_rows} "
        f"(prepared in {time.perf_counter() - started:.1f}s)",
        flush=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        settings = (
            {} if args.shared_buffers == "default" else {"shared_buffers": args.shared_buffers}
        )
        with Server(args.dsn, settings=settings) as server:
            shown = asyncio.run(server.show("server_version", "shared_buffers"))
            where = "embedded (temporary)" if server.embedded else "the given --dsn"
            print(
                f"server: {where}, PostgreSQL {shown['server_version']}, "
                f"shared_buffers {shown['shared_buffers']}",
                flush=True,
            )
            asyncio.run(run(args, data, server))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
