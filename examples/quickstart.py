"""vecdb in one page: connect to the embedded server, migrate, store and search vectors.

Run it from a fresh clone (see README.md):

    python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/quickstart.py

With no DSN, vecdb starts the embedded PostgreSQL 18 + pgvector in your user
data directory (or ``$VECDB_DATA_DIR``) and keeps the data there: run the
script twice and the second run finds the collection already in place.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

import vecdb

DIM = 64


class Chunk(vecdb.Record):
    """A chunk of a document, with its embedding."""

    id: int
    doc_id: str
    text: str
    year: int
    embedding: vecdb.Vector


def make_chunks(count: int) -> list[Chunk]:
    """Deterministic stand-ins for real embeddings: one cluster per document."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(10, DIM)).astype(np.float32)
    chunks = []
    for i in range(count):
        doc = i % 10
        vector = centres[doc] + 0.3 * rng.normal(size=DIM).astype(np.float32)
        chunks.append(
            Chunk(
                id=i,
                doc_id=f"doc-{doc}",
                text=f"chunk {i} of document {doc}",
                year=2015 + (i // 10) % 10,
                embedding=vector,
            )
        )
    return chunks


async def main() -> None:
    started = time.perf_counter()
    async with vecdb.connect() as db:
        where = f"the embedded server in {db.embedded.data_dir}" if db.embedded else "the DSN"
        print(f"connected to {where} in {time.perf_counter() - started:.2f}s")

        for migration in await db.migrations.status():
            print(f"  migration {migration.source} {migration.version}: {migration.state}")

        chunks = await db.collection(
            "quickstart_chunks", Chunk, dim=DIM, metric="cosine", filterable=("doc_id", "year")
        )
        records = make_chunks(2_000)
        written = await chunks.upsert(records)
        print(f"upserted {written} chunks; the collection holds {await chunks.count()}")

        query = records[42].embedding
        hits = await chunks.search(query, k=3)
        print("nearest to chunk 42:")
        for hit in hits:
            print(f"  #{hit.record.id} {hit.record.doc_id} distance={hit.distance:.4f}")

        recent = {"$and": [{"year": {"$gte": 2022}}, {"doc_id": {"$in": ["doc-2", "doc-5"]}}]}
        hits = await chunks.search(query, k=3, where=recent)
        print(f"nearest with {recent}:")
        for hit in hits:
            print(f"  #{hit.record.id} {hit.record.doc_id} {hit.record.year} d={hit.distance:.4f}")

        plan = await chunks.explain(query, k=3)
        print(f"unfiltered search uses the HNSW index: {plan.uses_vector_index}")
        print(f"pool: {db.pool_stats()}")
    print(f"done in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
