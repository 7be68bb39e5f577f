"""``db.adopt()``: tables that vecs and langchain-postgres made, taken over without a copy.

The DDL below is what those libraries run (read from their repositories):

- vecs (supabase/vecs ``collection.py``): schema ``vecs``, one table per
  collection: ``id`` varchar primary key, ``vec vector(dim) NOT NULL``,
  ``metadata jsonb NOT NULL DEFAULT '{}'``; ``create_index(method=hnsw)`` makes
  ``ix_<ops>_hnsw_m<m>_efc<ef>_<hash>`` with those parameters.
- langchain-postgres ``PGVectorStore`` (``v2/engine.py`` ``ainit_vectorstore_table``):
  ``langchain_id uuid PRIMARY KEY, content text NOT NULL, embedding vector(n)
  NOT NULL, langchain_metadata json``; no index until ``aapply_vector_index``.
- langchain-postgres's older ``PGVector`` (``vectorstores.py``):
  ``langchain_pg_embedding`` with ``embedding vector`` of no fixed dimension.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import numpy as np
import pytest

import vecdb

VECS_DDL = [
    "CREATE SCHEMA vecs",
    "CREATE TABLE vecs.docs (id varchar PRIMARY KEY, vec vector(3) NOT NULL, "
    "metadata jsonb NOT NULL DEFAULT '{}'::jsonb)",
    "CREATE INDEX ix_vector_cosine_ops_hnsw_m16_efc64_0d4a3c1 ON vecs.docs "
    "USING hnsw (vec vector_cosine_ops) WITH (m=16, ef_construction=64)",
    "INSERT INTO vecs.docs VALUES ('a', '[1,0,0]', '{\"genre\": \"drama\"}'), "
    "('b', '[0,1,0]', '{}'), ('c', '[0,0,1]', '{\"genre\": \"comedy\"}')",
]

LANGCHAIN_DDL = [
    "CREATE TABLE lc_docs (langchain_id uuid PRIMARY KEY, content text NOT NULL, "
    "embedding vector(3) NOT NULL, langchain_metadata json)",
    "INSERT INTO lc_docs VALUES ('00000000-0000-0000-0000-000000000001', 'pools', "
    "'[1,0,0]', '{\"source\": \"faq\"}'), ('00000000-0000-0000-0000-000000000002', "
    "'timeouts', '[0,1,0]', NULL)",
]

LANGCHAIN_LEGACY_DDL = [
    "CREATE TABLE langchain_pg_collection (uuid uuid PRIMARY KEY, name varchar NOT NULL, "
    "cmetadata json)",
    "CREATE TABLE langchain_pg_embedding (id varchar PRIMARY KEY, collection_id uuid "
    "REFERENCES langchain_pg_collection (uuid) ON DELETE CASCADE, embedding vector, "
    "document varchar, cmetadata jsonb)",
]


class VecsDoc(vecdb.Record):
    id: str
    vec: vecdb.Vector
    metadata: dict[str, Any]


class LangchainDoc(vecdb.Record):
    langchain_id: uuid.UUID
    content: str
    embedding: vecdb.Vector
    langchain_metadata: dict[str, Any] | None = None


class LegacyDoc(vecdb.Record):
    id: str
    embedding: vecdb.Vector
    document: str | None = None
    cmetadata: dict[str, Any] | None = None


async def run(db: vecdb.Database, statements: list[str]) -> None:
    async with db.acquire() as conn:
        for statement in statements:
            await conn.execute(statement)


async def table_state(db: vecdb.Database, table: str) -> tuple[Any, ...]:
    """What adopt must leave alone: the table's storage, its rows, indexes and the catalog."""
    async with db.acquire() as conn:
        return (
            await conn.fetchval("SELECT relfilenode FROM pg_class WHERE oid = $1::regclass", table),
            await conn.fetchval(f"SELECT count(*) FROM {table}"),
            await conn.fetchval(
                "SELECT array_agg(indexrelid::regclass::text ORDER BY 1) FROM pg_index "
                "WHERE indrelid = $1::regclass",
                table,
            ),
            [c.name for c in await db.collections()],
        )


async def test_a_vecs_table_is_adopted_with_its_hnsw_index(db: vecdb.Database) -> None:
    await run(db, VECS_DDL)
    before = await table_state(db, "vecs.docs")
    docs = await db.adopt("docs", VecsDoc, vector_field="vec", schema="vecs")
    after = await table_state(db, "vecs.docs")
    assert after[:3] == before[:3]  # same storage, rows and indexes: nothing copied or built
    assert after[3] == ["docs"]
    assert docs.spec["index"] == {"m": 16, "ef_construction": 64}
    assert docs.spec["metric"] == "cosine"
    hits = await docs.search([0.9, 0.1, 0], k=1)
    assert hits[0].record.id == "a"
    assert hits[0].record.metadata == {"genre": "drama"}
    assert await docs.count(where={"id": {"$in": ["a", "c"]}}) == 2
    assert await docs.count(where={"metadata": {"$contains": {"genre": "drama"}}}) == 1
    await docs.upsert([VecsDoc(id="d", vec=[1, 1, 0], metadata={"genre": "news"})])
    async with db.acquire() as conn:  # written where vecs reads it
        assert await conn.fetchval("SELECT metadata->>'genre' FROM vecs.docs WHERE id = 'd'") == (
            "news"
        )


async def test_a_langchain_table_is_adopted_and_has_no_index_reported(
    db: vecdb.Database, caplog: pytest.LogCaptureFixture
) -> None:
    await run(db, LANGCHAIN_DDL)
    with caplog.at_level(logging.WARNING, logger="vecdb"):
        docs = await db.adopt("lc_docs", LangchainDoc, id_field="langchain_id")
    assert docs.spec["index"] is None
    assert "has no HNSW index on embedding: searches are exact" in caplog.text
    first = uuid.UUID("00000000-0000-0000-0000-000000000001")
    record = await docs.get(first)
    assert record is not None
    assert (record.content, record.langchain_metadata) == ("pools", {"source": "faq"})
    hits = await docs.search(np.array([0, 1, 0], dtype=np.float32), k=1)
    assert hits[0].record.content == "timeouts"
    await docs.upsert([LangchainDoc(langchain_id=uuid.uuid4(), content="new", embedding=[0, 0, 1])])
    assert await docs.count() == 3
    await docs.create_index(vecdb.HNSW())  # what the warning says to do
    assert docs.spec["index"] == {"m": 16, "ef_construction": 64}
    assert (await docs.search([0, 1, 0], k=1))[0].record.content == "timeouts"
    # json (not jsonb): read and written as a dict, but not a filter (docs/coming-from.md)
    with pytest.raises(vecdb.VecdbError):
        await docs.count(where={"langchain_metadata": {"$contains": {"source": "faq"}}})


async def test_a_raw_pgvector_table_is_adopted_with_the_metric_of_its_index(
    db: vecdb.Database,
) -> None:
    """The side-by-side example of docs/coming-from.md."""
    await run(
        db,
        [
            "CREATE TABLE items (id bigserial PRIMARY KEY, category text, "
            "embedding vector(3) NOT NULL)",
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
            "INSERT INTO items (category, embedding) VALUES ('news', '[1,0,0]')",
        ],
    )

    class Item(vecdb.Record):
        id: int
        category: str | None = None
        embedding: vecdb.Vector

    items = await db.adopt("items", Item)
    assert items.spec["metric"] == "l2"
    await items.upsert([Item(id=2, category="news", embedding=[1, 0, 0])])
    hits = await items.search([1, 0, 0], k=5, where={"category": "news"})
    assert sorted(h.record.id for h in hits) == [1, 2]


async def test_adopting_again_opens_the_collection(db: vecdb.Database) -> None:
    await run(db, VECS_DDL)
    await db.adopt("docs", VecsDoc, vector_field="vec", schema="vecs")
    again = await db.adopt("docs", VecsDoc, vector_field="vec", schema="vecs")
    assert await again.count() == 3
    assert [c.name for c in await db.collections()] == ["docs"]


class NoVector(vecdb.Record):
    id: int
    embedding: vecdb.Vector


class OtherDim(vecdb.Record):
    id: str
    vec: Annotated[vecdb.Vector, vecdb.Dim(4)]
    metadata: dict[str, Any]


class WrongTypes(vecdb.Record):
    id: int
    vec: vecdb.Vector
    metadata: dict[str, Any]
    genre: str


@pytest.mark.parametrize(
    ("ddl", "table", "call", "expected"),
    [
        (
            ["CREATE TABLE plain (id int PRIMARY KEY, body text)"],
            "plain",
            {"model": NoVector},
            ["table public.plain has no vector column (its columns: ['id', 'body'])"],
        ),
        (
            VECS_DDL,
            "vecs.docs",
            {"model": OtherDim, "vector_field": "vec", "schema": "vecs"},
            ["vector 'vec': the column is vector(3), the model declares 4 dimensions"],
        ),
        (
            VECS_DDL,
            "vecs.docs",
            {"model": WrongTypes, "vector_field": "vec", "schema": "vecs"},
            [
                "field 'id': the column is character varying, the model's type needs bigint",
                'field \'genre\' (text) has no column in "vecs"."docs"',
            ],
        ),
        (
            LANGCHAIN_LEGACY_DDL,
            "langchain_pg_embedding",
            {"model": LegacyDoc},
            [
                "the column is vector without a dimension, which HNSW cannot index",
                "vector 'embedding': the column allows NULL",
            ],
        ),
    ],
    ids=["no-vector-column", "other-dimension", "other-types", "langchain-legacy-no-dimension"],
)
async def test_a_table_that_does_not_match_is_refused_with_every_difference(
    db: vecdb.Database,
    ddl: list[str],
    table: str,
    call: dict[str, Any],
    expected: list[str],
) -> None:
    await run(db, ddl)
    before = await table_state(db, table)
    name = table.rsplit(".", maxsplit=1)[-1]
    with pytest.raises(vecdb.SchemaMismatchError) as caught:
        await db.adopt(name, **call)
    for line in expected:
        assert any(line in d for d in caught.value.differences), caught.value.differences
        assert line in str(caught.value)
    assert "Nothing was changed" in str(caught.value) or "nothing was changed" in str(caught.value)
    assert await table_state(db, table) == before


async def test_a_missing_table_is_a_clear_error(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.ConfigError, match=r"there is no table public\.nowhere"):
        await db.adopt("nowhere", NoVector)
    assert await db.collections() == []


async def test_a_table_taken_by_a_collection_of_another_name_is_refused(db: vecdb.Database) -> None:
    await run(db, VECS_DDL)
    await db.adopt("docs", VecsDoc, vector_field="vec", schema="vecs")
    with pytest.raises(vecdb.ConfigError, match="already the collection 'docs'"):
        await db.adopt("docs", VecsDoc, vector_field="vec", schema="vecs", name="other")
    assert [c.name for c in await db.collections()] == ["docs"]


async def test_a_halfvec_table_is_adopted_as_halfvec_storage(db: vecdb.Database) -> None:
    await run(
        db,
        [
            "CREATE TABLE half (id bigint PRIMARY KEY, embedding halfvec(3) NOT NULL)",
            "CREATE INDEX half_hnsw ON half USING hnsw (embedding halfvec_ip_ops) "
            "WITH (m = 8, ef_construction = 32)",
            "INSERT INTO half VALUES (1, '[1,0,0]'), (2, '[0,1,0]')",
        ],
    )
    half = await db.adopt("half", NoVector)
    assert (half.spec["storage"], half.spec["metric"]) == ("halfvec", "inner_product")
    assert half.spec["index"] == {"m": 8, "ef_construction": 32}
    assert (await half.search([0, 1, 0], k=1))[0].record.id == 2
