"""Quantized HNSW indexes: none / halfvec / binary (rerank 2, 4, 8, 16) on one table.

For each index kind: its size (pg_relation_size), its build time
(``create_index(concurrently=False)`` on the loaded table), recall@10 against
the exact top 10, and the p50 of one client's searches, at vecdb's default
``ef_search`` (40, raised to ``k * rerank``) and at ``ef_search=100``.

The table keeps full-precision ``vector`` columns throughout; only the index
changes (built, then swapped in by ``create_index``). The binary index is built
once: ``rerank`` changes only the query, so the other factors reuse it.

    .venv/bin/python benchmarks/bench_quantization.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_quantization.py --data ... --rows 20000 --queries 200
    .venv/bin/python benchmarks/bench_quantization.py --synthetic 1000000 --dim 384 --queries 500 \
        --maintenance-work-mem 4GB
    .venv/bin/python benchmarks/bench_quantization.py --synthetic 20000 --dim 1536
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
import warnings
from pathlib import Path

from _common import Server, machine, summary, table
from bench_search import Dataset, K, load_shared, make_synthetic, recall

import vecdb

RERANKS = (2, 4, 8, 16)
EF_SEARCHES: tuple[int | None, ...] = (None, 100)


class Row(vecdb.Record):
    id: int
    embedding: vecdb.Vector


@dataclasses.dataclass
class Result:
    kind: str
    index_bytes: int
    build_s: float
    recall: dict[int | None, float]
    p50_ms: dict[int | None, float]


async def measure(col: vecdb.Collection[Row], data: Dataset, ef: int | None) -> tuple[float, float]:
    found, times = [], []
    for q in data.queries:
        started = time.perf_counter()
        hits = await col.search(q, k=K, ef_search=ef)
        times.append(time.perf_counter() - started)
        found.append([h.record.id for h in hits])
    return recall(found, data.gt), summary(times)[0] * 1000


async def index_bytes(db: vecdb.Database) -> int:
    async with db.acquire() as conn:
        size: int = await conn.fetchval("SELECT pg_relation_size('rows_embedding_hnsw'::regclass)")
    return size


async def run(data: Dataset, server: Server, memory: str | None) -> list[Result]:
    dsn = await server.create_database()
    results: list[Result] = []
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=2)) as db:
        col = await db.collection("rows", Row, dim=data.dim, index=None)
        started = time.perf_counter()
        await col.upsert(Row(id=i, embedding=v) for i, v in enumerate(data.vectors))
        await col.analyze()
        print(f"loaded {len(data.vectors)} rows in {time.perf_counter() - started:.1f}s")
        kinds: list[tuple[str, vecdb.HNSW]] = [
            ("none", vecdb.HNSW()),
            ("halfvec", vecdb.HNSW(quantization="halfvec")),
            *(
                (f"binary, rerank {r}", vecdb.HNSW(quantization="binary", rerank=r))
                for r in RERANKS
            ),
        ]
        built: dict[str, tuple[int, float]] = {}
        for name, index in kinds:
            family = index.quantization or "none"
            if family not in built:
                started = time.perf_counter()
                await col.create_index(index, concurrently=False, maintenance_work_mem=memory)
                built[family] = (await index_bytes(db), time.perf_counter() - started)
            else:
                # Same index expression: only the query's candidate count differs, so
                # the built index is reused (create_index would rebuild it identically).
                col._bind(dataclasses.replace(col._spec, index=index))
            size, seconds = built[family]
            result = Result(name, size, seconds, {}, {})
            for ef in EF_SEARCHES:
                result.recall[ef], result.p50_ms[ef] = await measure(col, data, ef)
            results.append(result)
            print(f"  {name}: {result}", flush=True)
    return results


def report(data: Dataset, results: list[Result]) -> None:
    base = results[0].index_bytes
    rows = [
        (
            r.kind,
            f"{r.index_bytes / 2**20:.1f} MB ({r.index_bytes / base:.2f}x)",
            f"{r.build_s:.1f}",
            *(f"{r.recall[ef]:.3f}" for ef in EF_SEARCHES),
            *(f"{r.p50_ms[ef]:.2f}" for ef in EF_SEARCHES),
        )
        for r in results
    ]
    table(
        f"{data.name}: {len(data.vectors)} rows x {data.dim} dims, {len(data.queries)} queries, "
        f"k={K}, HNSW m=16 ef_construction=64",
        [
            "index",
            "index size",
            "build s",
            "recall@10 ef default",
            "recall@10 ef 100",
            "p50 ms ef default",
            "p50 ms ef 100",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a dataset in the shared format")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N clustered vectors")
    parser.add_argument("--dsn", help="a server (role that may CREATE DATABASE); default embedded")
    parser.add_argument("--rows", type=int, help="use the first N rows of --data")
    parser.add_argument("--queries", type=int, default=200, help="number of queries (200)")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic dimension")
    parser.add_argument(
        "--maintenance-work-mem", help="for the index builds, e.g. 4GB (default: sized by vecdb)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.data is not None:
        data = load_shared(args.data, args.rows, args.queries)
    else:
        data = make_synthetic(args.synthetic, args.queries, args.dim)
    print(f"bench_quantization: {machine()}")
    print(f"data: {data.name}, prepared in {time.perf_counter() - started:.1f}s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        with Server(args.dsn, settings={"shared_buffers": "512MB"}) as server:
            results = asyncio.run(run(data, server, args.maintenance_work_mem))
    report(data, results)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
