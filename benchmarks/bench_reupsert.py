"""Bulk re-upsert into an indexed collection: the plain merge against rebuilding the HNSW index.

Run from the repository root:

    .venv/bin/python benchmarks/bench_reupsert.py --synthetic 20000
    .venv/bin/python benchmarks/bench_reupsert.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_reupsert.py --synthetic 20000 --fractions 0.1 \
        --methods raw-plain,vecdb-rebuild

Re-embedding a corpus upserts rows that exist already. Each measurement starts
from a fresh table of N rows (``id bigint PRIMARY KEY, bucket text, embedding
vector(dim)``, a B-tree on ``bucket``, ``hnsw (embedding vector_cosine_ops)
WITH (m = 16, ef_construction = 64)``) and rewrites the first ``f * N`` rows
with new vectors (each old one plus seeded noise, normalised) and a new bucket.
The ways, all on one server in one run:

- ``raw plain``: raw asyncpg + pgvector, the plain way: in one transaction a
  temporary table, binary COPY into it, ``INSERT ... SELECT ... ON CONFLICT (id)
  DO UPDATE``; the HNSW index stays and takes every new row version.
- ``raw (a) drop+CIC``: ``DROP INDEX CONCURRENTLY``, the same merge, then
  ``CREATE INDEX CONCURRENTLY``; searches meanwhile are exact scans.
- ``raw (c) shadow``: the merged rows copied into a new unindexed table beside
  (``INSERT ... SELECT`` of the table's rows not rewritten plus the staged ones),
  its primary key, B-tree and HNSW built there, then a swap by two renames in
  one short transaction. This is a lower bound for (c): no trigger log (a
  concurrent writer's rows would be lost), no catalog or grants carried over.
- ``vecdb plain`` / ``vecdb rebuild``: ``Collection.upsert(models,
  rebuild_index=False / True)`` on a vecdb collection of the same rows (the
  rebuild path is design (a), see docs/collections.md).

During every write one reader searches without pause (k=10, ``ef_search`` 40,
one connection, query i = row i's old vector) and every search is checked to
return 10 rows; its p50 and max during the write are printed, with the p50 of
the same search on the indexed table before. ``maintenance_work_mem`` is 512 MB
and builds use the server's parallel workers (2 CPUs here). The machine's load
average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).parent))
from _common import Server, machine, summary, table

Floats = npt.NDArray[np.float32]
BUCKETS = ("a", "b", "c", "d")


def load_vectors(args: argparse.Namespace) -> Floats:
    if args.data is not None:
        vectors = np.load(args.data / "vectors_f16.npy").astype(np.float32)
        return vectors[: args.rows] if args.rows else vectors
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(100, args.dim)).astype(np.float32)
    which = rng.integers(0, 100, size=args.synthetic)
    points = centers[which] + rng.normal(scale=0.9, size=(args.synthetic, args.dim)).astype(
        np.float32
    )
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def re_embedded(vectors: Floats, count: int, seed: int) -> Floats:
    rng = np.random.default_rng(seed)
    new = vectors[:count] + rng.normal(scale=0.05, size=(count, vectors.shape[1])).astype(
        np.float32
    )
    return (new / np.linalg.norm(new, axis=1, keepdims=True)).astype(np.float32)


async def _init(conn: asyncpg.Connection) -> None:
    await register_vector(conn)


class Reader:
    """One connection searching without pause until stopped; latencies and failures."""

    def __init__(self, dsn: str, table: str, queries: Floats) -> None:
        self.dsn, self.table, self.queries = dsn, table, queries
        self.latencies: list[float] = []
        self.failures = 0
        self.short = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reader:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None  # noqa: S101
        await self._task

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"hnsw.ef_search": "40"})
        await register_vector(conn)
        sql = f"SELECT id FROM {self.table} ORDER BY embedding <=> $1 LIMIT 10"
        i = 0
        try:
            while not self._stop.is_set():
                q = self.queries[i % len(self.queries)]
                i += 1
                started = time.perf_counter()
                try:
                    rows = await conn.fetch(sql, q)
                except (asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.failures += 1
                    await asyncio.sleep(0.01)
                    continue
                self.latencies.append(time.perf_counter() - started)
                if len(rows) != 10:
                    self.short += 1
                await asyncio.sleep(0)  # let the writer's coroutine run between searches
        finally:
            await conn.close()


async def make_table(conn: asyncpg.Connection, name: str, vectors: Floats, dim: int) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_old")
    await conn.execute(
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, bucket text NOT NULL, "
        f"embedding vector({dim}) NOT NULL)"
    )
    records = [(i, BUCKETS[i % 4], v) for i, v in enumerate(vectors)]
    await conn.copy_records_to_table(name, records=records, columns=["id", "bucket", "embedding"])
    await conn.execute(f"CREATE INDEX {name}_bucket ON {name} (bucket)")
    await conn.execute(
        f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    await conn.execute(f"VACUUM ANALYZE {name}")


def new_rows(new: Floats) -> list[tuple[int, str, Floats]]:
    return [(i, BUCKETS[(i + 1) % 4], v) for i, v in enumerate(new)]


async def stage(conn: asyncpg.Connection, name: str, rows: list[Any]) -> None:
    await conn.execute(f"CREATE TEMP TABLE stage (LIKE {name}) ON COMMIT DROP")
    await conn.copy_records_to_table("stage", records=rows, columns=["id", "bucket", "embedding"])


MERGE = (
    "INSERT INTO {t} (id, bucket, embedding) SELECT id, bucket, embedding FROM stage "
    "ON CONFLICT (id) DO UPDATE SET bucket = EXCLUDED.bucket, embedding = EXCLUDED.embedding"
)


async def raw_plain(conn: asyncpg.Connection, name: str, rows: list[Any]) -> None:
    async with conn.transaction():
        await stage(conn, name, rows)
        await conn.execute(MERGE.format(t=name))


async def raw_drop_cic(conn: asyncpg.Connection, name: str, rows: list[Any]) -> None:
    await conn.execute(f"DROP INDEX CONCURRENTLY {name}_hnsw")
    async with conn.transaction():
        await stage(conn, name, rows)
        await conn.execute(MERGE.format(t=name))
    await conn.execute(
        f"CREATE INDEX CONCURRENTLY {name}_hnsw ON {name} USING hnsw "
        "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )


async def raw_shadow(conn: asyncpg.Connection, name: str, rows: list[Any]) -> None:
    shadow = f"{name}_new"
    await conn.execute(f"DROP TABLE IF EXISTS {shadow}")
    await conn.execute(f"CREATE TABLE {shadow} (LIKE {name} INCLUDING DEFAULTS)")
    async with conn.transaction():
        await stage(conn, name, rows)
        await conn.execute(
            f"INSERT INTO {shadow} SELECT t.* FROM {name} t "
            "WHERE NOT EXISTS (SELECT 1 FROM stage s WHERE s.id = t.id) "
            "UNION ALL SELECT id, bucket, embedding FROM stage"
        )
    await conn.execute(f"ALTER TABLE {shadow} ADD PRIMARY KEY (id)")
    await conn.execute(f"CREATE INDEX {shadow}_bucket ON {shadow} (bucket)")
    await conn.execute(
        f"CREATE INDEX {shadow}_hnsw ON {shadow} USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    async with conn.transaction():
        await conn.execute(f"ALTER TABLE {name} RENAME TO {name}_old")
        await conn.execute(f"ALTER TABLE {shadow} RENAME TO {name}")
    await conn.execute(f"DROP TABLE {name}_old")


async def measure(
    dsn: str, name: str, queries: Floats, write: Callable[[], Awaitable[None]]
) -> tuple[float, Reader]:
    async with Reader(dsn, name, queries) as reader:
        await asyncio.sleep(0.05)  # the reader has connected and searches
        started = time.perf_counter()
        await write()
        elapsed = time.perf_counter() - started
    return elapsed, reader


async def baseline_p50(dsn: str, name: str, queries: Floats) -> float:
    async with Reader(dsn, name, queries) as reader:
        await asyncio.sleep(1.0)
    return summary(reader.latencies)[0]


async def run(args: argparse.Namespace, server: Server) -> None:
    vectors = load_vectors(args)
    n, dim = vectors.shape
    queries = vectors[:200]
    print(f"{n} rows x {dim}; {machine()}", flush=True)
    results: list[list[Any]] = []
    if True:
        dsn = await server.create_database()
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await register_vector(conn)
        import vecdb  # noqa: PLC0415 - after the server is up

        class Doc(vecdb.Record):
            id: int
            bucket: str
            embedding: vecdb.Vector

        db = await vecdb.connect(dsn)
        methods = args.methods.split(",")
        for fraction in args.fractions:
            count = max(1, round(fraction * n))
            new = re_embedded(vectors, count, seed=int(fraction * 1000))
            rows = new_rows(new)
            for method in methods:
                if method.startswith("raw"):
                    await make_table(conn, "t", vectors, dim)
                    target = "t"
                    before = await baseline_p50(dsn, target, queries)
                    fn = {"raw-plain": raw_plain, "raw-a": raw_drop_cic, "raw-c": raw_shadow}[
                        method
                    ]

                    async def write(fn: Any = fn, rows: Any = rows) -> None:
                        await fn(conn, "t", rows)
                else:
                    with contextlib.suppress(vecdb.VecdbError):
                        await db.drop_collection("docs")
                    col = await db.collection(
                        "docs",
                        Doc,
                        dim=dim,
                        filterable=("bucket",),
                        index=vecdb.HNSW(m=16, ef_construction=64),
                    )
                    await col.upsert(
                        Doc(id=i, bucket=BUCKETS[i % 4], embedding=v) for i, v in enumerate(vectors)
                    )
                    await conn.execute("VACUUM ANALYZE docs")
                    target = "docs"
                    before = await baseline_p50(dsn, target, queries)
                    models = [Doc(id=i, bucket=b, embedding=v) for i, b, v in rows]
                    rebuild = method == "vecdb-rebuild"

                    async def write(
                        models: Any = models, rebuild: bool = rebuild, col: Any = col
                    ) -> None:
                        await col.upsert(models, rebuild_index=rebuild)

                elapsed, reader = await measure(dsn, target, queries, write)
                p50, _, _, worst = summary(reader.latencies)
                results.append(
                    [
                        f"{fraction:.0%}",
                        method,
                        f"{elapsed:.2f}",
                        f"{before * 1000:.1f}",
                        f"{p50 * 1000:.1f}",
                        f"{worst * 1000:.0f}",
                        len(reader.latencies),
                        reader.failures + reader.short,
                    ]
                )
                print(" | ".join(map(str, results[-1])), flush=True)
        await db.close()
        await conn.close()
    table(
        f"Re-upsert of a fraction of {n} indexed rows ({dim}-d, m=16, ef_construction=64)",
        [
            "rows rewritten",
            "way",
            "seconds",
            "search p50 before (ms)",
            "search p50 during (ms)",
            "search max during (ms)",
            "searches during",
            "failed/short",
        ],
        results,
    )
    print(machine())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--synthetic", type=int, default=20_000)
    parser.add_argument("--rows", type=int, help="with --data: the first ROWS rows")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dsn")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    parser.add_argument(
        "--methods",
        default="raw-plain,raw-a,raw-c,vecdb-plain,vecdb-rebuild",
        help="comma-separated: raw-plain, raw-a, raw-c, vecdb-plain, vecdb-rebuild",
    )
    args = parser.parse_args()
    settings = {
        "shared_buffers": "1GB",
        "maintenance_work_mem": "512MB",
        "max_parallel_maintenance_workers": "1",
    }
    with Server(args.dsn, settings=settings if args.dsn is None else None) as server:
        asyncio.run(run(args, server))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
