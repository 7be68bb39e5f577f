"""Hybrid search on a known-item task: vector-only, text-only and RRF-fused, on the shared data.

The shared data has real texts and their MiniLM embeddings, and 500 real
held-out queries (a chunk's text and embedding) with their exact top 100 over
the 50k records, but no model to embed new query texts. So the known items
are drawn the way known-item test collections are built, from real parts:

* for each real query, the wanted record (the target) is one of its
  ``--within`` nearest records (default 20), at a uniformly random rank: the
  user's query is about the right topic, but the record they want is not
  necessarily the nearest one;
* the *vector* query is that real query's own embedding;
* the *text* query is ``--words`` words of the target's text (default 2),
  drawn at random, stop words of the ``english`` configuration left out:
  what the user remembers of the record.

Each target is then searched three ways with k=10: ``search(v)``,
``search(None, text=w)`` and ``search(v, text=w)`` (RRF k=60, 40 candidates
a half). Reported: recall@10 (the target is in the top 10), MRR@10, and the
p50 latency of one client. By construction vector-only finds the targets at
ranks 1-10 and misses those at 11-20 (recall about 0.5 for ``--within 20``);
text-only finds a target when its two words are rare enough.

    .venv/bin/python benchmarks/bench_hybrid.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_hybrid.py --data ... --within 10,20,50 --words 1,2,3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
from _common import Server, machine, summary, table

import vecdb

K = 10
_WORD = re.compile(r"[A-Za-z_]{3,}")


class Chunk(vecdb.Record):
    id: int
    category: str
    text: Annotated[str, vecdb.FullText(language="english")]
    embedding: vecdb.Vector


async def content_words(db: vecdb.Database, words: list[str]) -> set[str]:
    """The words the english configuration keeps (not stop words)."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT w FROM unnest($1::text[]) w WHERE numnode(plainto_tsquery('english', w)) > 0",
            words,
        )
    return {r["w"] for r in rows}


def scores(found: list[list[int]], targets: list[int]) -> tuple[float, float]:
    hit, rr = [], []
    for ids, target in zip(found, targets, strict=True):
        rank = ids.index(target) + 1 if target in ids[:K] else None
        hit.append(rank is not None)
        rr.append(1 / rank if rank else 0.0)
    return float(np.mean(hit)), float(np.mean(rr))


async def run(args: argparse.Namespace, server: Server) -> list[tuple[str, ...]]:
    path: Path = args.data
    vectors = np.load(path / "vectors_f16.npy").astype(np.float32)
    queries = np.load(path / "queries.npy").astype(np.float32)[: args.queries]
    gt = np.load(path / "gt.npy")[: args.queries]
    records = [json.loads(line) for line in (path / "records.jsonl").open()]
    dsn = await server.create_database()
    out: list[tuple[str, ...]] = []
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=2)) as db:
        col = await db.collection("chunks", Chunk, dim=vectors.shape[1], index=None)
        started = time.perf_counter()
        await col.upsert(
            Chunk(id=r["id"], category=r["category"], text=r["text"], embedding=vectors[r["id"]])
            for r in records
        )
        await col.create_index(vecdb.HNSW(), concurrently=False)
        await col.analyze()
        print(f"loaded and indexed {len(records)} rows in {time.perf_counter() - started:.1f}s")
        vocabulary = sorted({w for r in records for w in _WORD.findall(r["text"])})
        keep = await content_words(db, vocabulary)
        for within in args.within:
            for n_words in args.words:
                rng = np.random.default_rng(args.seed)
                targets, texts, qs = [], [], []
                for qi in range(len(queries)):
                    target = int(gt[qi][rng.integers(0, within)])
                    words = sorted({w for w in _WORD.findall(records[target]["text"]) if w in keep})
                    if len(words) < n_words:
                        continue  # too few words to remember: not a usable known item
                    targets.append(target)
                    texts.append(" ".join(rng.choice(words, size=n_words, replace=False)))
                    qs.append(queries[qi])
                runs = {"vector only": (True, False), "text only": (False, True),
                        "hybrid (RRF k=60)": (True, True)}  # fmt: skip
                for name, (use_vector, use_text) in runs.items():
                    found, times = [], []
                    for i in range(len(targets)):
                        started = time.perf_counter()
                        hits = await col.search(
                            qs[i] if use_vector else None,
                            k=K,
                            text=texts[i] if use_text else None,
                            fusion=vecdb.RRF(k=60) if use_text and use_vector else None,
                        )
                        times.append(time.perf_counter() - started)
                        found.append([h.record.id for h in hits])
                    hit, mrr = scores(found, targets)
                    out.append(
                        (str(within), str(n_words), str(len(targets)), name, f"{hit:.3f}",
                         f"{mrr:.3f}", f"{summary(times)[0] * 1000:.2f}")
                    )  # fmt: skip
                    print(f"  {out[-1]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared dataset")
    parser.add_argument("--dsn", help="a server (role that may CREATE DATABASE); default embedded")
    parser.add_argument("--queries", type=int, default=500, help="real queries used (500)")
    parser.add_argument("--within", default="20", help="target among the N nearest (20)")
    parser.add_argument("--words", default="2", help="words per text query (2)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    args.within = [int(s) for s in args.within.split(",")]
    args.words = [int(s) for s in args.words.split(",")]
    started = time.perf_counter()
    print(f"bench_hybrid: {machine()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        with Server(args.dsn, settings={"shared_buffers": "512MB"}) as server:
            rows = asyncio.run(run(args, server))
    table(
        f"known-item task on {args.data.name}: target among the real query's N nearest, k={K}",
        ["N", "words", "targets", "search", "recall@10", "MRR@10", "p50 ms"],
        rows,
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
