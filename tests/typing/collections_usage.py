"""User-style code for collections and search: must pass ``mypy --strict`` (not run by pytest)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import numpy as np
import numpy.typing as npt
import pydantic

import vecdb


class Meta(pydantic.BaseModel):
    source: str


class Chunk(vecdb.Record):
    id: int
    doc_id: str
    text: str
    year: int
    tags: list[str] = pydantic.Field(default_factory=list)
    meta: Meta | None = None
    created: dt.datetime | None = None
    embedding: vecdb.Vector


class Document(vecdb.Record):
    id: str
    title: str
    title_vec: Annotated[vecdb.Vector, vecdb.Dim(8)]


class Event(vecdb.Record):
    id: uuid.UUID
    embedding: vecdb.Vector


async def main(db: vecdb.Database, q: npt.NDArray[np.float32]) -> None:
    seen: list[object] = []
    documents: vecdb.Collection[Document] = await db.collection(
        "documents", Document, metric="l2", index=vecdb.HNSW(m=16, ef_construction=64)
    )
    chunks = await db.collection(
        "chunks",
        Chunk,
        dim=384,
        metric="cosine",
        storage="halfvec",
        filterable=("doc_id", "year"),
        foreign_keys={"doc_id": vecdb.ForeignKey("documents", on_delete="cascade")},
    )
    written: int = await chunks.upsert(
        [Chunk(id=1, doc_id="a", text="hello", year=2024, embedding=[0.1] * 384)]
    )
    written += await chunks.upsert([{"id": 2, "doc_id": "a", "text": "x", "year": 1}])
    written += await chunks.upsert([{"id": 2, "doc_id": "a"}], rebuild_index="auto")
    written += await chunks.upsert([{"id": 2, "doc_id": "a"}], rebuild_index=True)
    await chunks.insert([Chunk(id=3, doc_id="a", text="y", year=2, embedding=q)], batch_size=100)

    one: Chunk | None = await chunks.get(1)
    if one is not None:
        vector: npt.NDArray[np.float32] = one.embedding
        shape: tuple[int, ...] = vector.shape
        text: str = one.text
        seen.append((shape, text))
    many: list[Chunk] = await chunks.get_many([1, 2])
    deleted: int = await chunks.delete([1, 2])
    deleted += await chunks.delete(where={"year": {"$lt": 2000}})
    total: int = await chunks.count(where={"year": {"$gte": 2020}})

    hits = await chunks.search(q, k=10, where={"doc_id": "a"}, ef_search=100)
    best: Chunk = hits[0].record
    distance: float = hits[0].distance
    exact: list[vecdb.Hit[Chunk]] = await chunks.search([0.0] * 384, exact=True)
    batches: list[list[vecdb.Hit[Chunk]]] = await chunks.search_many([q, q], k=5)

    plan: vecdb.Explain = await chunks.explain(q, k=10, where={"doc_id": "a"})
    uses: bool = plan.uses_vector_index

    def report(progress: vecdb.IndexProgress) -> None:
        fraction: float | None = progress.fraction
        seen.append((progress.phase, fraction))

    await chunks.create_index(vecdb.HNSW(m=32, ef_construction=128), progress=report)

    infos: list[vecdb.CollectionInfo] = await db.collections()
    await db.drop_collection("chunks")
    metric: vecdb.Metric = "inner_product"
    storage: vecdb.Storage = "vector"
    seen.extend(
        [written, many, deleted, total, best, distance, exact, batches, uses, infos, metric,
         storage, documents]
    )  # fmt: skip


class Visit(vecdb.Record):
    id: int
    at: dt.datetime
    site: str
    embedding: vecdb.Vector


async def partitioned(db: vecdb.Database) -> tuple[list[int], list[object], int]:
    visits = await db.collection(
        "visits",
        Visit,
        dim=3,
        partition=vecdb.TimePartitions("at", interval="week", premake=2),
    )
    by_site = await db.collection("by_site", Visit, dim=3, partition=vecdb.ValuePartitions("site"))
    infos: list[vecdb.PartitionInfo] = await visits.partitions()
    sizes: list[int] = [p.rows + p.total_bytes for p in infos]
    values = [p.value for p in await by_site.partitions()]
    now = dt.datetime.now(dt.UTC)
    moved: int = await visits.upsert([Visit(id=1, at=now, site="a", embedding=[1.0, 0.0, 0.0])])
    return sizes, values, moved


class Passage(vecdb.Record):
    id: int
    text: Annotated[str, vecdb.FullText(language="english")]
    embedding: vecdb.Vector


async def hybrid(db: vecdb.Database, q: npt.NDArray[np.float32]) -> list[float]:
    index = vecdb.HNSW(m=16, ef_construction=64, quantization="binary", rerank=4)
    passages = await db.collection("passages", Passage, dim=3, index=index)
    await passages.create_index(vecdb.HNSW(quantization="halfvec"))
    hits = await passages.search(q, k=10, text="pool timeout", fusion=vecdb.RRF(k=60))
    keyword: list[vecdb.Hit[Passage]] = await passages.search(None, k=10, text="pool timeout")
    ranks: list[int | None] = [h.vector_rank for h in hits] + [h.text_rank for h in keyword]
    scores: list[float | None] = [h.score for h in hits]
    return [h.distance for h in hits] + [float(r or 0) for r in ranks] + [s or 0 for s in scores]
