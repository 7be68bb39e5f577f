"""Hybrid and keyword search on partitioned collections: FullText on every partition.

Every partition (premade, made by a write, by repartition, restored from the
archive) carries the generated tsvector column and a GIN index attached to the
parent's. Searches span the partitions with exactly the results an
unpartitioned collection of the same rows gives, and a filter on the partition
key prunes both halves.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pytest

import vecdb

DIM = 8
UTC = dt.UTC
WORDS = [
    "pool", "timeout", "socket", "parser", "thread", "queue", "buffer", "lock",
    "cache", "index", "vacuum", "replica", "backup", "schema", "planner", "commit",
]  # fmt: skip
TEXT = "pool timeout"


class Note(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    text: Annotated[str, vecdb.FullText(language="english")]
    embedding: vecdb.Vector


class PlainNote(vecdb.Record):
    """The same table without the FullText mark: what an existing collection looks like."""

    id: int
    created_at: dt.datetime
    tenant: str
    text: str
    embedding: vecdb.Vector


class SimpleNote(vecdb.Record):
    """The FullText mark in another language: evolve remakes the column."""

    id: int
    created_at: dt.datetime
    tenant: str
    text: Annotated[str, vecdb.FullText(language="simple")]
    embedding: vecdb.Vector


MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=1)
BY_TENANT = vecdb.ValuePartitions("tenant")
TENANTS = ["t0", "t1", "t2", "t3", "t4", "t5"]


def when(i: int) -> dt.datetime:
    """Row ``i``'s time: spread over the twelve months of 2024."""
    return dt.datetime(2024, 1 + i % 12, 1 + i % 27, 12, tzinfo=UTC)


def first_of(month: int) -> dt.datetime:
    return dt.datetime(2024, month, 1, tzinfo=UTC)


def rows(n: int, seed: int = 7) -> list[Note]:
    rng = np.random.default_rng(seed)
    return [
        Note(
            id=i,
            created_at=when(i),
            tenant=TENANTS[i % len(TENANTS)],
            text=" ".join(rng.choice(WORDS, 4)),
            embedding=rng.normal(size=DIM).astype(np.float32),
        )
        for i in range(n)
    ]


def unit(seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def rrf(*ranks: int | None, k: int = 60) -> float:
    return sum(1 / (k + r) for r in ranks if r is not None)


async def make(
    db: vecdb.Database, partition: Any, notes: list[Note], name: str = "notes", **kwargs: Any
) -> vecdb.Collection[Note]:
    col = await db.collection(
        name, Note, dim=DIM, filterable=("tenant",), partition=partition, **kwargs
    )
    await col.upsert(notes)
    await col.analyze()
    return col


_PARTITION_COLUMNS = """
SELECT c.relname AS partition,
       (SELECT a.attgenerated::text FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = '_vecdb_tsv_text') AS generated,
       (SELECT count(*) FROM pg_inherits ii
        JOIN pg_index x ON x.indexrelid = ii.inhrelid
        JOIN pg_class ic ON ic.oid = x.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
        WHERE ii.inhparent = to_regclass($2) AND x.indrelid = c.oid
          AND am.amname = 'gin' AND x.indisvalid) AS attached_gin
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass($1) ORDER BY 1
"""


async def partition_columns(db: vecdb.Database, table: str = "notes") -> dict[str, tuple[str, int]]:
    """Each live partition: its tsvector column's kind ('s': stored generated) and
    how many valid GIN indexes of it are attached to the parent's GIN index."""
    async with db.acquire() as conn:
        found = await conn.fetch(_PARTITION_COLUMNS, table, f"{table}_text_fts")
    return {r["partition"]: (r["generated"], r["attached_gin"]) for r in found}


def scanned(plan: Mapping[str, Any], suffix: str) -> set[str]:
    """The relations a plan scans with an index whose name ends in ``suffix``."""
    found = set()
    if str(plan.get("Index Name", "")).endswith(suffix):
        found.add(str(plan.get("Relation Name") or plan["Index Name"].removesuffix(suffix)))
    for child in plan.get("Plans", ()):
        found |= scanned(child, suffix)
    return found


def nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def relations(plan: Mapping[str, Any]) -> set[str]:
    return {str(n["Relation Name"]) for n in nodes(plan) if "Relation Name" in n}


def fused_side(plan: Mapping[str, Any]) -> Mapping[str, Any]:
    """The fused ids (both halves), below the join that fetches their rows by primary key.

    The fetch is the join's Append over the partitions; the other side is the halves.
    """
    join = next(n for n in nodes(plan) if n["Node Type"] in {"Nested Loop", "Hash Join"})
    return next(c for c in join["Plans"] if c["Node Type"] not in {"Append", "Hash"})


def same_hits(a: list[vecdb.Hit[Note]], b: list[vecdb.Hit[Note]]) -> None:
    """Two searches gave the same records, ranks and fused scores, in the same order."""
    assert [h.record.id for h in a] == [h.record.id for h in b]
    for x, y in zip(a, b, strict=True):
        assert (x.vector_rank, x.text_rank) == (y.vector_rank, y.text_rank)
        assert x.score == pytest.approx(y.score)
        assert x.record == y.record
        if math.isnan(x.distance):
            assert math.isnan(y.distance)
        else:
            assert x.distance == pytest.approx(y.distance, abs=1e-6)


PARTITIONINGS = pytest.mark.parametrize("partition", [MONTHLY, BY_TENANT], ids=["time", "value"])


# -- every partition carries the column and its index ---------------------------------------


@PARTITIONINGS
async def test_every_partition_has_the_generated_column_and_an_attached_gin_index(
    db: vecdb.Database, partition: Any
) -> None:
    """Premade partitions, and the ones the first load and later upserts make."""
    col = await make(db, partition, rows(60))
    await col.upsert([  # a later write (not the first load) into a partition of its own
        Note(id=1000, created_at=dt.datetime(2025, 6, 1, tzinfo=UTC), tenant="t9",
             text="a lone pool timeout", embedding=unit(1)),
    ])  # fmt: skip
    found = await partition_columns(db)
    expected = 12 + 1 + 2 if partition is MONTHLY else len(TENANTS) + 1  # +premade now, next
    assert len(found) == expected
    assert set(found.values()) == {("s", 1)}
    async with db.acquire() as conn:
        parent = await conn.fetchrow(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS d FROM pg_index i "
            "WHERE i.indexrelid = to_regclass('notes_text_fts')"
        )
    assert parent is not None
    assert parent["indisvalid"]  # every partition's index is attached
    assert "USING gin" in parent["d"]
    assert "fastupdate=off" in parent["d"]
    hits = await col.search(None, k=5, text="lone pool timeout")
    assert hits[0].record.id == 1000


async def test_an_update_that_moves_a_record_to_another_partition_keeps_its_text(
    db: vecdb.Database,
) -> None:
    col = await make(db, MONTHLY, rows(24))
    await col.upsert([Note(id=3, created_at=dt.datetime(2025, 3, 3, tzinfo=UTC), tenant="t3",
                           text="moved pool timeout", embedding=unit(3))])  # fmt: skip
    hits = await col.search(None, k=50, text="moved")
    assert [h.record.id for h in hits] == [3]
    assert hits[0].record.created_at.year == 2025
    async with db.acquire() as conn:
        where = await conn.fetch("SELECT tableoid::regclass::text AS t FROM notes WHERE id = 3")
    assert [r["t"] for r in where] == ["notes_p20250301"]


# -- searching across partitions -------------------------------------------------------------


@PARTITIONINGS
@pytest.mark.parametrize(
    "where",
    [None, {"tenant": {"$in": ["t1", "t2"]}}, {"created_at": {"$gte": first_of(3)}}],
    ids=["all", "tenant", "time"],
)
async def test_results_and_fused_scores_equal_an_unpartitioned_twin(
    db: vecdb.Database, partition: Any, where: dict[str, Any] | None
) -> None:
    """The same rows partitioned and not: the same hits, ranks and scores, k exactly."""
    notes = rows(2400)
    parted = await make(db, partition, notes)
    twin = await make(db, None, notes, name="twin")
    q = unit(11)
    for k in (1, 10, 25):
        keyword = await parted.search(None, k=k, text=TEXT, where=where)
        assert len(keyword) == k
        same_hits(keyword, await twin.search(None, k=k, text=TEXT, where=where))
        fused = await parted.search(q, k=k, text=TEXT, where=where, exact=True)
        assert len(fused) == k
        same_hits(fused, await twin.search(q, k=k, text=TEXT, where=where, exact=True))
        for h in fused:
            assert h.score == pytest.approx(rrf(h.vector_rank, h.text_rank))


async def test_vector_ranks_are_by_distance_across_partitions(db: vecdb.Database) -> None:
    """Rank 1 is the nearest record of any partition (a distance is not a similarity)."""
    notes = rows(600)
    col = await make(db, MONTHLY, notes, index=vecdb.HNSW())
    q = unit(5)
    hits = await col.search(q, k=200, text=TEXT, fusion=vecdb.RRF(candidates=200))
    assert len(hits) == 200
    vectors = {n.id: n.embedding for n in notes}
    true_order = sorted(vectors, key=lambda i: (1 - float(vectors[i] @ q) / float(
        np.linalg.norm(vectors[i])), i))  # fmt: skip
    ranked = sorted(
        (h for h in hits if h.vector_rank is not None), key=lambda h: h.vector_rank or 0
    )
    assert ranked[0].record.id == true_order[0]
    distances = [h.distance for h in ranked]
    assert distances == sorted(distances)
    assert len({h.record.created_at.month for h in ranked}) == 12  # from every partition
    # Each hit's distance is the real one, computed on its full vector.
    for h in hits:
        v = vectors[h.record.id]
        assert h.distance == pytest.approx(1 - float(v @ q) / float(np.linalg.norm(v)), abs=1e-5)
        assert h.score == pytest.approx(rrf(h.vector_rank, h.text_rank))


@PARTITIONINGS
async def test_both_halves_apply_the_same_where(db: vecdb.Database, partition: Any) -> None:
    """The nearest record and the best text match are left out: neither half may bring them."""
    notes = rows(300)
    q = unit(2)
    outsider_near = Note(id=9001, created_at=first_of(5), tenant="t0", text="nothing here",
                         embedding=q)  # fmt: skip
    outsider_text = Note(id=9002, created_at=first_of(5), tenant="t0",
                         text="pool timeout pool timeout pool timeout", embedding=-q)  # fmt: skip
    col = await make(db, partition, [*notes, outsider_near, outsider_text])
    where = {"tenant": {"$ne": "t0"}}
    fused = await col.search(q, k=40, text=TEXT, where=where)
    assert len(fused) == 40
    assert all(h.record.tenant != "t0" for h in fused)
    keyword = await col.search(None, k=40, text=TEXT, where=where)
    assert all(h.record.tenant != "t0" for h in keyword)
    assert {9001, 9002} <= {h.record.id for h in await col.search(q, k=40, text=TEXT)}


@pytest.mark.parametrize("quantization", [None, "halfvec", "binary"])
async def test_hnsw_hybrid_search_over_many_partitions_returns_k(
    db: vecdb.Database, quantization: Any
) -> None:
    """Each partition's HNSW scan yields enough candidates (ef_search covers them)."""
    col = await make(db, MONTHLY, rows(1200), index=vecdb.HNSW(quantization=quantization))
    for where in (None, {"tenant": "t1"}):
        for k in (10, 50):
            hits = await col.search(unit(4), k=k, text=TEXT, where=where)
            assert len(hits) == k
            vector_ranks = sorted(h.vector_rank for h in hits if h.vector_rank is not None)
            assert vector_ranks[0] == 1
            if where is not None:
                assert {h.record.tenant for h in hits} == {"t1"}


# -- explain: indexes and pruning ------------------------------------------------------------


@pytest.fixture
async def planned_db(dsn: str) -> Any:
    """A Database whose connections plan without sequential scans: small partitions would
    otherwise be read whole, and the test is about which indexes a plan can use."""
    pool = vecdb.PoolConfig(min_size=1, max_size=2, server_settings={"enable_seqscan": "off"})
    database = await vecdb.connect(dsn, pool=pool)
    try:
        yield database
    finally:
        await database.close()


async def test_each_half_uses_its_index_on_every_partition(planned_db: vecdb.Database) -> None:
    col = await make(planned_db, MONTHLY, rows(1200), index=vecdb.HNSW())
    explained = await col.explain(unit(6), k=10, text=TEXT)
    assert explained.uses_vector_index
    assert explained.uses_text_index
    plan = explained.plan["Plan"]
    months = {f"notes_p2024{m:02d}01" for m in range(1, 13)}
    assert months <= scanned(plan, "_embedding_idx")  # each partition's HNSW index
    assert months <= scanned(plan, "__vecdb_tsv_text_idx")  # and its GIN index
    keyword = await col.explain(None, k=10, text=TEXT)
    assert keyword.uses_text_index
    assert not keyword.uses_vector_index
    assert keyword.strategy == "exact"
    assert "keyword search alone" in keyword.reason
    # The same on one table: the parent's own indexes.
    twin = await make(planned_db, None, rows(1200), name="twin", index=vecdb.HNSW())
    one = await twin.explain(unit(6), k=10, text=TEXT)
    assert one.uses_vector_index
    assert one.uses_text_index
    assert scanned(one.plan["Plan"], "_text_fts") == {"twin"}


async def test_a_filter_on_the_partition_key_prunes_both_halves(
    planned_db: vecdb.Database,
) -> None:
    notes = rows(1200)
    col = await make(planned_db, MONTHLY, notes, index=vecdb.HNSW())
    march = {"created_at": {"$gte": first_of(3), "$lt": first_of(4)}}
    matching = sum(  # the March notes with both words
        1 for n in notes if n.created_at.month == 3 and {"pool", "timeout"} <= set(n.text.split())
    )
    for vector in (unit(8), None):
        explained = await col.explain(vector, k=10, text=TEXT, where=march, analyze=True)
        plan = explained.plan["Plan"]
        # Both halves are pruned when planned, and the rows are fetched by primary
        # key from their own partition only (run-time pruning): no other is read.
        read = {n["Relation Name"] for n in nodes(plan) if n.get("Actual Loops", 0) > 0
                and "Relation Name" in n}  # fmt: skip
        assert read == {"notes_p20240301"}
        assert len(relations(plan)) == 14  # the fetch's Append lists every partition
        planned = await col.explain(vector, k=10, text=TEXT, where=march)
        assert relations(fused_side(planned.plan["Plan"])) == {"notes_p20240301"}
        hits = await col.search(vector, k=10, text=TEXT, where=march)
        assert len(hits) == (10 if vector is not None else min(10, matching))
        assert {h.record.created_at.month for h in hits} == {3}


async def test_explain_bad_arguments(db: vecdb.Database) -> None:
    col = await make(db, MONTHLY, rows(12))
    with pytest.raises(vecdb.ConfigError, match="needs a query vector, or text="):
        await col.explain(None, k=5)
    with pytest.raises(vecdb.ConfigError, match="pass text= too"):
        await col.explain(unit(1), k=5, fusion=vecdb.RRF())
    with pytest.raises(vecdb.ConfigError, match="no words to search for"):
        await col.explain(None, k=5, text="  ")
    with pytest.raises(vecdb.ConfigError, match=r"fusion must be vecdb\.RRF"):
        await col.explain(None, k=5, text=TEXT, fusion="rrf")  # type: ignore[arg-type]


# -- evolve, archive, restore, repartition ---------------------------------------------------


async def test_evolve_adds_fulltext_to_a_partitioned_collection(db: vecdb.Database) -> None:
    plain = await db.collection("notes", PlainNote, dim=DIM, partition=MONTHLY)
    await plain.upsert(PlainNote(**n.model_dump()) for n in rows(120))
    with pytest.raises(vecdb.SchemaMismatchError, match="FullText fields") as caught:
        await db.collection("notes", Note, dim=DIM, partition=MONTHLY)
    assert "Nothing was changed" in str(caught.value)
    assert set((await partition_columns(db)).values()) == {(None, 0)}
    col = await db.collection("notes", Note, dim=DIM, partition=MONTHLY, evolve=True)
    assert set((await partition_columns(db)).values()) == {("s", 1)}
    twin = await make(db, None, rows(120), name="twin")
    same_hits(await col.search(None, k=30, text=TEXT), await twin.search(None, k=30, text=TEXT))
    # And back: dropping the mark drops the column on every partition.
    back = await db.collection("notes", PlainNote, dim=DIM, partition=MONTHLY, evolve=True)
    assert "fulltext" not in back.spec
    assert set((await partition_columns(db)).values()) == {(None, 0)}
    assert await back.count() == 120


async def test_archive_and_restore_keep_the_column_and_index(db: vecdb.Database) -> None:
    col = await make(db, MONTHLY, rows(120))
    before = await col.search(None, k=200, text=TEXT)
    report = await col.archive(older_than=first_of(4))
    assert report.ok
    assert report.partitions == ("notes_p20240101", "notes_p20240201", "notes_p20240301")
    live = await col.search(None, k=200, text=TEXT)
    assert {h.record.created_at.month for h in live} <= set(range(4, 13))
    assert {h.record.id for h in live} == {
        h.record.id for h in before if h.record.created_at.month >= 4
    }
    restored = await col.restore()
    assert restored.ok
    assert restored.rows == report.rows
    assert set((await partition_columns(db)).values()) == {("s", 1)}  # re-attached
    same_hits(await col.search(None, k=200, text=TEXT), before)


async def test_an_exported_archive_comes_back_searchable(
    db: vecdb.Database, tmp_path: Path
) -> None:
    """The file holds the fields only; the tsvector is generated again as the rows return."""
    pytest.importorskip("pyarrow")
    col = await make(db, MONTHLY, rows(120))
    before = await col.search(None, k=200, text=TEXT)
    archived = await col.archive(older_than=first_of(3))
    path = tmp_path / "notes.parquet"
    await col.export_archive(path)
    await col.purge_archive(first_of(3), confirm="notes")
    report = await col.restore(from_file=path)
    assert report.rows == archived.rows
    assert report.checksum_after == archived.checksum_after
    same_hits(await col.search(None, k=200, text=TEXT), before)
    assert set((await partition_columns(db)).values()) == {("s", 1)}


@pytest.mark.parametrize(
    ("now", "then"),
    [(PlainNote, Note), (Note, PlainNote), (Note, SimpleNote)],
    ids=["added", "dropped", "language"],
)
async def test_restore_after_an_evolve_changed_the_fulltext_field(
    db: vecdb.Database, now: type[vecdb.Record], then: type[vecdb.Record]
) -> None:
    """A partition archived before the evolve gets the columns the parent has now."""
    old = await db.collection("notes", now, dim=DIM, partition=MONTHLY)
    notes = rows(120)
    await old.upsert(now(**n.model_dump()) for n in notes)
    archived = await old.archive(older_than=first_of(3))
    assert archived.rows == 20
    col = await db.collection("notes", then, dim=DIM, partition=MONTHLY, evolve=True)
    restored = await col.restore()
    assert restored.ok  # the checksum is of the fields: a derived column changes nothing
    assert restored.rows == 20
    found = await partition_columns(db)
    assert len(found) == 12 + 2
    has_text = bool(col.spec.get("fulltext"))
    assert set(found.values()) == ({("s", 1)} if has_text else {(None, 0)})
    assert await col.count() == 120
    if has_text:
        twin = await db.collection("twin", then, dim=DIM)
        await twin.upsert(then(**n.model_dump()) for n in notes)
        # "simple" keeps stop words: 'the' matches only under it.
        for text in (TEXT, "the pool"):
            same_hits(
                await col.search(None, k=50, text=text),
                await twin.search(None, k=50, text=text),
            )


async def test_repartition_carries_the_column_and_builds_the_gin_index(
    db: vecdb.Database,
) -> None:
    notes = rows(240)
    col = await make(db, None, notes, index=vecdb.HNSW())
    before = await col.search(None, k=60, text=TEXT)
    converted = await col.repartition(vecdb.TimePartitions("created_at", interval="month"))
    assert converted == 240
    found = await partition_columns(db)
    assert {f"notes_p2024{m:02d}01" for m in range(1, 13)} <= set(found)
    assert set(found.values()) == {("s", 1)}
    async with db.acquire() as conn:
        names = {
            r[0]
            for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'notes' OR indexname LIKE "
                "'%vecdb%fts'"
            )
        }
    assert "notes_text_fts" in names
    assert not {n for n in names if n.startswith("_vecdb_")}  # nothing left under a temp name
    same_hits(await col.search(None, k=60, text=TEXT), before)
    assert len(await col.search(unit(3), k=20, text=TEXT)) == 20
    reopened = await db.collection(
        "notes", Note, dim=DIM, filterable=("tenant",), index=vecdb.HNSW(),
        partition=vecdb.TimePartitions("created_at", interval="month"),
    )  # fmt: skip
    same_hits(await reopened.search(None, k=60, text=TEXT), before)


# -- bad inputs ------------------------------------------------------------------------------


async def test_text_on_a_partitioned_collection_without_fulltext_is_refused(
    db: vecdb.Database,
) -> None:
    plain = await db.collection("notes", PlainNote, dim=DIM, partition=MONTHLY)
    await plain.upsert([PlainNote(id=1, created_at=first_of(1), tenant="t0", text=TEXT,
                                  embedding=unit(1))])  # fmt: skip
    for vector in (unit(1), None):
        with pytest.raises(vecdb.ConfigError, match=r"needs a field marked vecdb\.FullText"):
            await plain.search(vector, k=5, text=TEXT)
        with pytest.raises(vecdb.ConfigError, match=r"needs a field marked vecdb\.FullText"):
            await plain.explain(vector, k=5, text=TEXT)
    assert "fulltext" not in plain.spec
    assert set((await partition_columns(db)).values()) == {(None, 0)}


async def test_an_unknown_language_on_a_partitioned_collection_makes_nothing(
    db: vecdb.Database,
) -> None:
    class Klingon(vecdb.Record):
        id: int
        created_at: dt.datetime
        text: Annotated[str, vecdb.FullText(language="klingon")]
        embedding: vecdb.Vector

    with pytest.raises(vecdb.ConfigError, match="no such text search configuration"):
        await db.collection("k", Klingon, dim=DIM, partition=MONTHLY)
    assert await db.collections() == []
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('k')") is None
        assert await conn.fetchval("SELECT to_regclass('_vecdb_ids_k')") is None


@pytest.mark.parametrize(
    "text",
    ["", "  \t", "\x00"],
    ids=["empty", "whitespace", "nul"],
)
async def test_empty_text_is_refused(db: vecdb.Database, text: str) -> None:
    col = await make(db, MONTHLY, rows(24))
    for vector in (unit(1), None):
        with pytest.raises(vecdb.ConfigError, match="no words to search for"):
            await col.search(vector, k=5, text=text)
    assert await col.count() == 24


async def test_a_stop_word_only_query_matches_no_text(db: vecdb.Database) -> None:
    col = await make(db, MONTHLY, rows(120))
    assert await col.search(None, k=5, text="the and of") == []
    hits = await col.search(unit(1), k=5, text="the and of")
    assert [h.record.id for h in hits] == [h.record.id for h in await col.search(unit(1), k=5)]
    assert all(h.text_rank is None and h.vector_rank is not None for h in hits)


@pytest.mark.parametrize(
    "text",
    ["'", '"pool timeout', "pool\\timeout", "\\", "pool\x00timeout",
     "pool & | ! ( ) : * timeout", "'; DROP TABLE notes; --", "é💥 pool"],
    ids=["quote", "open-phrase", "backslash", "lone-backslash", "nul", "operators",
         "injection", "unicode"],
)  # fmt: skip
async def test_any_text_runs_without_error(db: vecdb.Database, text: str) -> None:
    col = await make(db, MONTHLY, rows(120))
    for vector in (unit(1), None):
        hits = await col.search(vector, k=5, text=text)
        assert all(h.score is not None for h in hits)
    if "pool" in text and "timeout" in text:
        assert await col.search(None, k=5, text=text)
    assert await col.count() == 120
    assert len(await partition_columns(db)) == 12 + 2


async def test_text_with_include_archived_is_refused(db: vecdb.Database) -> None:
    col = await make(db, MONTHLY, rows(24))
    await col.archive(older_than=first_of(2))
    with pytest.raises(vecdb.ConfigError, match="does not search archived records"):
        await col.search(unit(1), k=5, text=TEXT, include_archived=True)
    assert await col.count() == 22
