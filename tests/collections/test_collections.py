"""Collections: creating, opening, evolving, listing and dropping them; names, types, keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import numpy as np
import pydantic
import pytest

import vecdb


class Doc(vecdb.Record):
    id: str
    title: str
    embedding: vecdb.Vector


class Chunk(vecdb.Record):
    id: int
    doc_id: str
    text: str
    year: int
    score: float
    public: bool
    created: dt.datetime
    day: dt.date
    ref: uuid.UUID
    tags: list[str]
    counts: list[int]
    meta: dict[str, Any]
    note: str | None = None
    embedding: vecdb.Vector


async def _columns(db: vecdb.Database, table: str) -> dict[str, tuple[str, str]]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1",
            table,
        )
    return {r["column_name"]: (r["data_type"], r["is_nullable"]) for r in rows}


async def _tables(db: vecdb.Database) -> set[str]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def _indexes(db: vecdb.Database, table: str) -> dict[str, str]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
        )
    return {r["indexname"]: r["indexdef"] for r in rows}


async def test_fields_become_typed_columns(db: vecdb.Database) -> None:
    await db.collection("chunks", Chunk, dim=8)
    assert await _columns(db, "chunks") == {
        "id": ("bigint", "NO"),
        "doc_id": ("text", "NO"),
        "text": ("text", "NO"),
        "year": ("bigint", "NO"),
        "score": ("double precision", "NO"),
        "public": ("boolean", "NO"),
        "created": ("timestamp with time zone", "NO"),
        "day": ("date", "NO"),
        "ref": ("uuid", "NO"),
        "tags": ("ARRAY", "NO"),
        "counts": ("ARRAY", "NO"),
        "meta": ("jsonb", "NO"),
        "note": ("text", "YES"),
        "embedding": ("USER-DEFINED", "NO"),
    }


async def test_vector_column_has_the_dimension_and_storage(db: vecdb.Database) -> None:
    await db.collection("chunks", Doc, dim=12, storage="halfvec")
    async with db.acquire() as conn:
        typ = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
    assert typ == "halfvec(12)"


async def test_filterable_fields_get_btree_and_arrays_gin_indexes(db: vecdb.Database) -> None:
    await db.collection("chunks", Chunk, dim=8, filterable=("year", "tags"))
    indexes = await _indexes(db, "chunks")
    assert "USING btree (year)" in indexes["chunks_year_idx"]
    assert "USING gin (tags)" in indexes["chunks_tags_idx"]
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["chunks_embedding_hnsw"]


@pytest.mark.parametrize(
    ("metric", "storage", "opclass"),
    [
        ("cosine", "vector", "vector_cosine_ops"),
        ("l2", "vector", "vector_l2_ops"),
        ("inner_product", "vector", "vector_ip_ops"),
        ("l1", "vector", "vector_l1_ops"),
        ("cosine", "halfvec", "halfvec_cosine_ops"),
        ("l1", "halfvec", "halfvec_l1_ops"),
    ],
    ids=["cosine", "l2", "ip", "l1", "half-cosine", "half-l1"],
)
async def test_hnsw_index_uses_the_metric_opclass(
    db: vecdb.Database, metric: Any, storage: Any, opclass: str
) -> None:
    await db.collection("docs", Doc, dim=4, metric=metric, storage=storage,
                        index=vecdb.HNSW(m=8, ef_construction=40))  # fmt: skip
    definition = (await _indexes(db, "docs"))["docs_embedding_hnsw"]
    assert f"({opclass})" in definition.replace(f"embedding {opclass}", f"({opclass})")
    assert "m='8'" in definition
    assert "ef_construction='40'" in definition


async def test_index_none_creates_no_vector_index(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4, index=None)
    assert "docs_embedding_hnsw" not in await _indexes(db, "docs")


async def test_opening_with_the_same_definition_returns_the_collection(
    db: vecdb.Database,
) -> None:
    first = await db.collection("docs", Doc, dim=4)
    await first.upsert([Doc(id="a", title="t", embedding=[1, 2, 3, 4])])
    again = await db.collection("docs", Doc, dim=4)
    assert await again.count() == 1


async def test_collections_lists_names_and_specs(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4, metric="l2")
    await db.collection("chunks", Chunk, dim=8, filterable=("year",))
    infos = await db.collections()
    assert [i.name for i in infos] == ["chunks", "docs"]
    assert infos[1].spec["metric"] == "l2"
    assert infos[1].spec["vectors"] == [{"name": "embedding", "dim": 4}]
    assert infos[0].spec["filterable"] == ["year"]
    assert infos[0].model.endswith("Chunk")


class DocV2(vecdb.Record):
    id: str
    title: int  # was str
    embedding: vecdb.Vector


async def test_mismatch_lists_every_difference_with_a_resolution(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4, metric="cosine")
    with pytest.raises(vecdb.SchemaMismatchError) as info:
        await db.collection("docs", DocV2, dim=8, metric="l2")
    differences = info.value.differences
    assert len(differences) == 3
    assert any("field 'title'" in d and "migration" in d for d in differences)
    assert any(
        "vector fields" in d and "embedding(4)" in d and "embedding(8)" in d for d in differences
    )
    assert any("metric: stored 'cosine', given 'l2'" in d for d in differences)
    assert "Nothing was changed" in str(info.value)


class DocWithLang(vecdb.Record):
    id: str
    title: str
    lang: str | None = None
    embedding: vecdb.Vector


async def test_new_optional_field_needs_evolve(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4)
    with pytest.raises(vecdb.SchemaMismatchError, match="evolve=True") as info:
        await db.collection("docs", DocWithLang, dim=4)
    assert info.value.differences == (
        "field 'lang' (text) is new: pass evolve=True to add the column (existing rows get NULL)",
    )
    assert "lang" not in await _columns(db, "docs")


async def test_evolve_adds_a_column_and_keeps_data(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([Doc(id="a", title="kept", embedding=[1, 0, 0, 0])])
    evolved = await db.collection("docs", DocWithLang, dim=4, evolve=True)
    assert (await _columns(db, "docs"))["lang"] == ("text", "YES")
    record = await evolved.get("a")
    assert record is not None
    assert (record.title, record.lang) == ("kept", None)
    await evolved.upsert([DocWithLang(id="b", title="new", lang="fr", embedding=[0, 1, 0, 0])])
    assert await evolved.count(where={"lang": "fr"}) == 1
    reopened = await db.collection("docs", DocWithLang, dim=4)  # the catalog knows the field now
    assert await reopened.count() == 2


async def test_evolve_adds_and_drops_filter_indexes(db: vecdb.Database) -> None:
    await db.collection("chunks", Chunk, dim=8, filterable=("year",))
    await db.collection("chunks", Chunk, dim=8, filterable=("doc_id",), evolve=True)
    indexes = await _indexes(db, "chunks")
    assert "chunks_doc_id_idx" in indexes
    assert "chunks_year_idx" not in indexes


class DocRequiredNew(vecdb.Record):
    id: str
    title: str
    pages: int
    embedding: vecdb.Vector


class DocDropped(vecdb.Record):
    id: str
    embedding: vecdb.Vector


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        (DocRequiredNew, {}, "is new and required"),
        (DocDropped, {}, "dropping a column loses data"),
        (DocV2, {}, "changing a column's type"),
        (Doc, {"metric": "l2"}, "metric: stored 'cosine'"),
        (Doc, {"storage": "halfvec"}, "storage: stored 'vector'"),
        (Doc, {"index": vecdb.HNSW(m=32, ef_construction=64)}, "create_index"),
    ],
    ids=["required-field", "dropped-field", "type-change", "metric", "storage", "index"],
)
async def test_evolve_refuses_destructive_changes(
    db: vecdb.Database, model: Any, kwargs: dict[str, Any], match: str
) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([Doc(id="a", title="t", embedding=[1, 0, 0, 0])])
    before = await _columns(db, "docs")
    with pytest.raises(vecdb.SchemaMismatchError, match=match):
        await db.collection("docs", model, dim=4, evolve=True, **kwargs)
    assert await _columns(db, "docs") == before
    assert await docs.count() == 1


@pytest.mark.parametrize(
    "name",
    [
        'docs"; DROP TABLE victims; --',
        "docs; DROP TABLE victims",
        "Docs",
        "1docs",
        "select",
        "docs-x",
        "d" * 49,
        "",
        "docs\x00",
        "döcs",
    ],
    ids=[
        "quote",
        "semicolon",
        "upper",
        "digit",
        "reserved",
        "dash",
        "too-long",
        "empty",
        "nul",
        "unicode",
    ],
)
async def test_bad_collection_names_are_refused_and_nothing_is_touched(
    db: vecdb.Database, name: str
) -> None:
    async with db.acquire() as conn:
        await conn.execute("CREATE TABLE victims (x int)")
    with pytest.raises(vecdb.ConfigError, match=r"\[a-z_\]\[a-z0-9_\]\*"):
        await db.collection(name, Doc, dim=4)
    assert await _tables(db) == {"victims"}
    assert await db.collections() == []


async def test_bad_field_name_is_refused(db: vecdb.Database) -> None:
    model = pydantic.create_model(
        "Odd", __base__=vecdb.Record, id=(int, ...), Title=(str, ...), e=(vecdb.Vector, ...)
    )
    with pytest.raises(vecdb.ConfigError, match="invalid field name of Odd 'Title'"):
        await db.collection("odd", model, dim=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "dot"}, "metric='dot' is not one of"),
        ({"storage": "bit"}, "storage='bit' is not one of"),
        ({"filterable": ("nope",)}, "filterable names 'nope'"),
        ({"filterable": ("embedding",)}, "vector field"),
        ({"filterable": "title"}, "tuple of field names"),
        ({"dim": 2001}, "more than 2000 dimensions"),
    ],
    ids=[
        "metric",
        "storage",
        "filterable-unknown",
        "filterable-vector",
        "filterable-str",
        "hnsw-dim",
    ],
)
async def test_bad_arguments_are_config_errors(
    db: vecdb.Database, kwargs: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {"dim": 4, **kwargs}
    with pytest.raises(vecdb.ConfigError, match=match):
        await db.collection("docs", Doc, **arguments)
    assert await db.collections() == []


async def test_halfvec_allows_up_to_4000_dimensions_with_hnsw(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=3000, storage="halfvec")
    assert docs.spec["vectors"] == [{"name": "embedding", "dim": 3000}]


async def test_existing_foreign_table_is_not_adopted(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("CREATE TABLE docs (x int)")
    with pytest.raises(vecdb.ConfigError, match="already exists and is not a vecdb collection"):
        await db.collection("docs", Doc, dim=4)


async def test_concurrent_creation_from_several_tasks_all_succeed(db: vecdb.Database) -> None:
    made = await asyncio.gather(*(db.collection("docs", Doc, dim=4) for _ in range(6)))
    assert {c.name for c in made} == {"docs"}
    assert [i.name for i in await db.collections()] == ["docs"]


async def test_concurrent_creation_from_two_databases_all_succeed(dsn: str) -> None:
    # Two Database objects: two pools, as two processes would have.
    pool = vecdb.PoolConfig(min_size=1, max_size=2)
    async with vecdb.connect(dsn, pool=pool) as one, vecdb.connect(dsn, pool=pool) as two:
        await asyncio.gather(*(d.collection("docs", Doc, dim=4) for d in (one, two, one, two)))
        assert [i.name for i in await one.collections()] == ["docs"]


async def test_drop_collection_removes_table_and_catalog_row(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4)
    await db.drop_collection("docs")
    assert await db.collections() == []
    assert "docs" not in await _tables(db)


async def test_drop_missing_collection_raises_not_found(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.CollectionNotFoundError, match="no collection named 'ghost'") as info:
        await db.drop_collection("ghost")
    assert info.value.name == "ghost"


async def test_custom_schema(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4, schema="search")
    await docs.upsert([Doc(id="a", title="t", embedding=[1, 0, 0, 0])])
    assert docs.table == "search.docs"
    assert [i.schema for i in await db.collections()] == ["search"]
    with pytest.raises(vecdb.SchemaMismatchError, match="pass schema='search'"):
        await db.collection("docs", Doc, dim=4)


# -- foreign keys ---------------------------------------------------------------------


class Passage(vecdb.Record):
    id: int
    doc_id: str
    embedding: vecdb.Vector


class LoosePassage(vecdb.Record):
    id: int
    doc_id: str | None = None
    embedding: vecdb.Vector


def _doc(i: str) -> Doc:
    return Doc(id=i, title=i, embedding=[1, 0, 0, 0])


@pytest.mark.parametrize("on_delete", ["cascade", "restrict"], ids=["cascade", "restrict"])
async def test_foreign_key_refuses_unknown_parent(db: vecdb.Database, on_delete: Any) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([_doc("a")])
    passages = await db.collection(
        "passages", Passage, dim=4,
        foreign_keys={"doc_id": vecdb.ForeignKey("docs", on_delete=on_delete)},
    )  # fmt: skip
    with pytest.raises(vecdb.DatabaseError, match="foreign key") as info:
        await passages.upsert([Passage(id=1, doc_id="zzz", embedding=[1, 0, 0, 0])])
    assert info.value.sqlstate == "23503"
    assert await passages.count() == 0


async def test_foreign_key_cascade_deletes_children(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([_doc("a"), _doc("b")])
    passages = await db.collection(
        "passages", Passage, dim=4,
        foreign_keys={"doc_id": vecdb.ForeignKey("docs", on_delete="cascade")},
    )  # fmt: skip
    await passages.upsert(
        [Passage(id=i, doc_id="a" if i < 3 else "b", embedding=[1, 0, 0, 0]) for i in range(5)]
    )
    assert await docs.delete(["a"]) == 1
    assert await passages.count() == 2
    assert await passages.count(where={"doc_id": "a"}) == 0


async def test_foreign_key_restrict_refuses_deleting_a_parent(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([_doc("a")])
    passages = await db.collection(
        "passages", Passage, dim=4, foreign_keys={"doc_id": vecdb.ForeignKey("docs")}
    )
    await passages.upsert([Passage(id=1, doc_id="a", embedding=[1, 0, 0, 0])])
    with pytest.raises(vecdb.DatabaseError, match="foreign key"):
        await docs.delete(["a"])
    assert await docs.count() == 1


async def test_foreign_key_set_null(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    await docs.upsert([_doc("a")])
    passages = await db.collection(
        "passages", LoosePassage, dim=4,
        foreign_keys={"doc_id": vecdb.ForeignKey("docs", on_delete="set_null")},
    )  # fmt: skip
    await passages.upsert([LoosePassage(id=1, doc_id="a", embedding=[1, 0, 0, 0])])
    await docs.delete(["a"])
    record = await passages.get(1)
    assert record is not None
    assert record.doc_id is None


async def test_foreign_key_column_is_indexed(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4)
    await db.collection(
        "passages", Passage, dim=4, foreign_keys={"doc_id": vecdb.ForeignKey("docs")}
    )
    assert "passages_doc_id_idx" in await _indexes(db, "passages")


@pytest.mark.parametrize(
    ("model", "fks", "error", "match"),
    [
        (Passage, {"doc_id": vecdb.ForeignKey("nowhere")}, vecdb.CollectionNotFoundError,
         "references collection 'nowhere'"),
        (Passage, {"nope": vecdb.ForeignKey("docs")}, vecdb.ConfigError, "not a field"),
        (Passage, {"doc_id": vecdb.ForeignKey("docs", on_delete="set_null")}, vecdb.ConfigError,
         "set_null"),
        (Chunk, {"year": vecdb.ForeignKey("docs")}, vecdb.ConfigError, "same type as the id"),
    ],
    ids=["missing-collection", "unknown-field", "set-null-required", "type-mismatch"],
)  # fmt: skip
async def test_bad_foreign_keys_are_refused(
    db: vecdb.Database, model: Any, fks: Any, error: type[Exception], match: str
) -> None:
    await db.collection("docs", Doc, dim=4)
    with pytest.raises(error, match=match):
        await db.collection("children", model, dim=4, foreign_keys=fks)
    assert [i.name for i in await db.collections()] == ["docs"]


async def test_dropping_a_referenced_collection_is_refused(db: vecdb.Database) -> None:
    await db.collection("docs", Doc, dim=4)
    await db.collection(
        "passages", Passage, dim=4, foreign_keys={"doc_id": vecdb.ForeignKey("docs")}
    )
    with pytest.raises(vecdb.ConfigError, match=r"\['passages'\] reference it"):
        await db.drop_collection("docs")
    await db.drop_collection("passages")
    await db.drop_collection("docs")


async def test_halfvec_storage_halves_the_bytes(db: vecdb.Database) -> None:
    full = await db.collection("full_vec", Doc, dim=256, storage="vector")
    half = await db.collection("half_vec", Doc, dim=256, storage="halfvec")
    vector = np.linspace(-1, 1, 256, dtype=np.float32)
    await full.upsert([Doc(id="a", title="t", embedding=vector)])
    await half.upsert([Doc(id="a", title="t", embedding=vector)])
    async with db.acquire() as conn:
        full_bytes = await conn.fetchval("SELECT pg_column_size(embedding) FROM full_vec")
        half_bytes = await conn.fetchval("SELECT pg_column_size(embedding) FROM half_vec")
    assert full_bytes == 4 * 256 + 8
    assert half_bytes == 2 * 256 + 8
