"""Hybrid search: FullText fields, keyword search, and RRF fusion with vector search."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pytest

import vecdb
from vecdb._search.filters import compile_filter
from vecdb._search.hybrid import hybrid_sql
from vecdb._search.statements import uses_index

DIM = 8


class Chunk(vecdb.Record):
    id: int
    doc: str
    text: Annotated[str, vecdb.FullText(language="english")]
    embedding: vecdb.Vector


class PlainChunk(vecdb.Record):
    """The same table without the FullText mark: what an existing collection looks like."""

    id: int
    doc: str
    text: str
    embedding: vecdb.Vector


def unit(*values: float) -> npt.NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


Q = unit(1.0)
ROWS: list[tuple[int, str, str, npt.NDArray[np.float32]]] = [
    (1, "a", "the connection pool timeout was reached", unit(1.0, 0.05)),  # near, matches
    (2, "a", "parsing a configuration file", unit(1.0, 0.1)),  # near, no match
    (3, "a", "pool timeout while waiting for a connection", unit(0.0, 1.0)),  # far, matches
    (4, "b", "connection pool timeout in another document", unit(1.0, 0.01)),  # nearest, doc b
    (5, "b", "unrelated words entirely", unit(1.0, 0.02)),  # near, doc b
    (6, "a", "timeout", unit(-1.0, 0.2)),  # farthest, matches one word
    *[(i, "a", f"filler text number {i}", unit(0.3, 1.0, i / 10)) for i in range(7, 30)],
]


async def make(db: vecdb.Database, **kwargs: Any) -> vecdb.Collection[Chunk]:
    col = await db.collection("chunks", Chunk, dim=DIM, filterable=("doc",), **kwargs)
    await col.upsert(Chunk(id=i, doc=d, text=t, embedding=v) for i, d, t, v in ROWS)
    await col.analyze()
    return col


def rrf(*ranks: int | None, k: int = 60) -> float:
    return sum(1 / (k + r) for r in ranks if r is not None)


async def test_fused_score_is_the_sum_of_reciprocal_ranks(db: vecdb.Database) -> None:
    """Each hit's score is 1/(60 + vector rank) + 1/(60 + text rank); ordered by it."""
    col = await make(db)
    hits = await col.search(Q, k=10, text="connection pool timeout")
    assert hits[0].record.id == 4  # nearest vector and a text match
    for h in hits:
        assert h.score == pytest.approx(rrf(h.vector_rank, h.text_rank))
        assert h.vector_rank is not None or h.text_rank is not None
    scores = [h.score or 0.0 for h in hits]
    assert scores == sorted(scores, reverse=True)
    by_id = {h.record.id: h for h in hits}
    assert by_id[1].text_rank is not None
    assert by_id[1].vector_rank is not None
    assert by_id[3].text_rank is not None  # far from the vector, found by its words


async def test_vector_ranks_follow_distance_ascending_not_descending(db: vecdb.Database) -> None:
    """mem0 #6883, langchain-postgres #234: a distance fused as if larger were better."""
    col = await make(db)
    hits = await col.search(Q, k=30, text="connection pool timeout", fusion=vecdb.RRF(k=60))
    ranked = sorted(
        (h for h in hits if h.vector_rank is not None), key=lambda h: h.vector_rank or 0
    )
    distances = [h.distance for h in ranked]
    assert distances == sorted(distances)
    assert ranked[0].record.id == 4  # the nearest record is vector rank 1
    by_id = {h.record.id: h for h in hits}
    # The farthest record matches only one word: it must not outrank a near, matching one.
    assert by_id[6].score is not None
    assert by_id[1].score is not None
    assert by_id[6].score < by_id[1].score
    # The real distances of every hit, computed on the full vectors.
    for h in hits:
        v = next(r[3] for r in ROWS if r[0] == h.record.id)
        assert h.distance == pytest.approx(1 - float(v @ Q), abs=1e-5)


async def test_the_filter_applies_to_both_halves(db: vecdb.Database) -> None:
    """Records of doc 'b' are the nearest (4, 5) and the best text match (4): none may show."""
    col = await make(db)
    hits = await col.search(Q, k=10, text="connection pool timeout", where={"doc": "a"})
    assert hits
    assert {h.record.doc for h in hits} == {"a"}
    ids = {h.record.id for h in hits}
    assert {1, 3} <= ids  # the text matches of doc 'a' are there
    assert all(h.vector_rank != 1 or h.record.id == 1 for h in hits)
    only_text = await col.search(None, k=10, text="connection pool timeout", where={"doc": "b"})
    assert {h.record.id for h in only_text} == {4}


async def test_keyword_only_search(db: vecdb.Database) -> None:
    """search(None, text=...) ranks the text matches alone; no distance, no vector rank."""
    col = await make(db)
    hits = await col.search(None, k=10, text="pool timeout")
    assert {h.record.id for h in hits} == {1, 3, 4}
    assert [h.text_rank for h in hits] == [1, 2, 3]
    for h in hits:
        assert math.isnan(h.distance)
        assert h.vector_rank is None
        assert h.score == pytest.approx(rrf(h.text_rank))
    assert [h.record.id for h in await col.search(None, k=1, text="timeout")] != []
    assert len(await col.search(None, k=2, text="timeout")) == 2


async def test_web_search_syntax_phrases_and_negation(db: vecdb.Database) -> None:
    col = await make(db)
    phrase = await col.search(None, k=10, text='"pool timeout"')
    assert {h.record.id for h in phrase} == {1, 3, 4}
    negated = await col.search(None, k=10, text="pool timeout -document")
    assert {h.record.id for h in negated} == {1, 3}


async def test_writes_keep_the_text_column_current(db: vecdb.Database) -> None:
    """The tsvector is generated by PostgreSQL: an upsert that changes the text re-indexes it."""
    col = await make(db)
    await col.upsert([Chunk(id=2, doc="a", text="a pool timeout after all", embedding=ROWS[1][3])])
    hits = await col.search(None, k=10, text="pool timeout")
    assert 2 in {h.record.id for h in hits}
    assert (await col.get(2)) == Chunk(id=2, doc="a", text="a pool timeout after all",
                                       embedding=ROWS[1][3])  # fmt: skip


async def test_each_half_uses_its_index(db: vecdb.Database) -> None:
    """Ranks are taken inside each half's LIMIT: the HNSW and the GIN index both serve."""
    col = await db.collection("chunks", Chunk, dim=DIM, filterable=("doc",))
    rng = np.random.default_rng(3)
    words = ["pool", "timeout", "socket", "parser", "thread", "queue", "buffer", "lock"]
    await col.upsert(
        Chunk(
            id=i,
            doc="a" if i % 2 else "b",
            text=" ".join(rng.choice(words, 4)),
            embedding=rng.normal(size=DIM).astype(np.float32),
        )
        for i in range(3_000)
    )
    await col.analyze()
    spec = col._spec
    where = compile_filter(None, spec.layout.filterable, first_param=3)
    sql = hybrid_sql(
        spec, spec.layout.vectors[0], spec.layout.fulltext[0], ("id",), where, strategy="hnsw"
    )
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        raw = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {sql}", Q, 40, "pool timeout", "english", 60, 10
        )
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    assert uses_index(plan, {"chunks_embedding_hnsw"})
    assert uses_index(plan, {"chunks_text_fts"})
    hits = await col.search(Q, k=10, text="pool timeout", where={"doc": "a"})
    assert len(hits) == 10
    assert all(h.record.doc == "a" for h in hits)


async def test_hybrid_over_a_binary_quantized_index(db: vecdb.Database) -> None:
    col = await make(db, index=vecdb.HNSW(quantization="binary", rerank=8))
    hits = await col.search(Q, k=5, text="connection pool timeout")
    assert hits[0].record.id in {1, 4}
    assert all(h.score is not None for h in hits)


# -- declaring FullText, and evolving an existing collection ------------------------------


async def test_fulltext_adds_a_generated_tsvector_column_and_a_gin_index(
    db: vecdb.Database,
) -> None:
    col = await make(db)
    async with db.acquire() as conn:
        generated = await conn.fetchval(
            "SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'chunks'::regclass "
            "AND attname = '_vecdb_tsv_text'"
        )
        index = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                                    "chunks_text_fts")  # fmt: skip
    assert generated == "s"
    assert "USING gin" in index
    assert "fastupdate=off" in index  # no pending list for searches to scan
    assert col.spec["fulltext"] == [{"field": "text", "language": "english"}]
    hit = (await col.search(Q, k=1))[0]
    assert hit.score is None
    assert hit.text_rank is None


async def test_adding_fulltext_to_an_existing_collection_needs_evolve(db: vecdb.Database) -> None:
    plain = await db.collection("chunks", PlainChunk, dim=DIM, filterable=("doc",))
    await plain.upsert(PlainChunk(id=i, doc=d, text=t, embedding=v) for i, d, t, v in ROWS)
    with pytest.raises(vecdb.SchemaMismatchError, match="FullText fields") as caught:
        await db.collection("chunks", Chunk, dim=DIM, filterable=("doc",))
    assert "Nothing was changed" in str(caught.value)
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'chunks'::regclass "
            "AND attname = '_vecdb_tsv_text'"
        ) == 0  # fmt: skip
    col = await db.collection("chunks", Chunk, dim=DIM, filterable=("doc",), evolve=True)
    hits = await col.search(None, k=10, text="pool timeout")
    assert {h.record.id for h in hits} == {1, 3, 4}  # rows written before are searchable
    # And back: dropping the mark drops the column (no data is lost: it is derived).
    back = await db.collection("chunks", PlainChunk, dim=DIM, filterable=("doc",), evolve=True)
    assert "fulltext" not in back.spec
    assert await back.count() == len(ROWS)


# -- bad inputs ----------------------------------------------------------------------------


async def test_text_on_a_collection_without_fulltext_is_refused(db: vecdb.Database) -> None:
    plain = await db.collection("chunks", PlainChunk, dim=DIM)
    await plain.upsert([PlainChunk(id=1, doc="a", text="pool timeout", embedding=Q)])
    for vector in (Q, None):
        with pytest.raises(vecdb.ConfigError, match=r"needs a field marked vecdb\.FullText"):
            await plain.search(vector, k=5, text="pool timeout")
    assert "fulltext" not in plain.spec
    assert len(await plain.search(Q, k=5)) == 1


@pytest.mark.parametrize("text", ["", "   ", "\x00", "\t\n"], ids=["empty", "spaces", "nul", "ws"])
async def test_empty_text_is_refused(db: vecdb.Database, text: str) -> None:
    col = await make(db)
    with pytest.raises(vecdb.ConfigError, match="no words to search for"):
        await col.search(Q, k=5, text=text)
    assert await col.count() == len(ROWS)


async def test_a_stop_word_only_query_matches_no_text(db: vecdb.Database) -> None:
    """'the and of' has no lexemes: the text half is empty, not an error."""
    col = await make(db)
    assert await col.search(None, k=5, text="the and of") == []
    hits = await col.search(Q, k=5, text="the and of")
    assert [h.record.id for h in hits] == [h.record.id for h in await col.search(Q, k=5)]
    assert all(h.text_rank is None and h.vector_rank is not None for h in hits)


@pytest.mark.parametrize(
    "text",
    [
        "'",
        '"',
        '"pool timeout',
        "pool\\timeout",
        "\\",
        "pool\x00timeout",
        "pool & | ! ( ) : * <-> timeout",
        "'; DROP TABLE chunks; --",
        "-",
        "or",
        "é💥 pool",
    ],
    ids=[
        "quote",
        "dquote",
        "open-phrase",
        "backslash",
        "lone-backslash",
        "nul",
        "operators",
        "injection",
        "dash",
        "or",
        "unicode",
    ],
)
async def test_any_text_runs_without_error(db: vecdb.Database, text: str) -> None:
    col = await make(db)
    for vector in (Q, None):
        hits = await col.search(vector, k=5, text=text)
        assert all(h.score is not None for h in hits)
    if "pool" in text and "timeout" in text and "<->" not in text:
        assert {1, 3, 4} <= {h.record.id for h in await col.search(None, k=10, text=text)}
    assert await col.count() == len(ROWS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fusion": vecdb.RRF()}, "pass text= too"),
        ({"text": 42}, "text= must be a string"),
        ({"text": "pool", "fusion": "rrf"}, "fusion must be vecdb.RRF"),
        ({"text": "pool", "include_archived": True}, "does not search archived records"),
        ({"text": "pool", "k": 0}, "k must be an int"),
    ],
    ids=["fusion-without-text", "text-not-str", "fusion-not-rrf", "archived", "k"],
)
async def test_bad_search_arguments(
    db: vecdb.Database, kwargs: dict[str, Any], message: str
) -> None:
    col = await make(db)
    with pytest.raises(vecdb.ConfigError, match=message):
        await col.search(Q, **{"k": 5, **kwargs})


async def test_no_vector_and_no_text_is_refused(db: vecdb.Database) -> None:
    col = await make(db)
    with pytest.raises(vecdb.ConfigError, match="needs a query vector, or text="):
        await col.search(None, k=5)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"k": -1}, "RRF.k"), ({"candidates": 0}, "RRF.candidates")]
)
def test_bad_rrf_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(vecdb.ConfigError, match=message):
        vecdb.RRF(**kwargs)


def test_bad_fulltext_declarations() -> None:
    with pytest.raises(vecdb.ConfigError, match="not a text search configuration name"):
        vecdb.FullText(language="english; drop")

    class NotText(vecdb.Record):
        id: int
        year: Annotated[int, vecdb.FullText()]
        embedding: vecdb.Vector

    class TwoTexts(vecdb.Record):
        id: int
        title: Annotated[str, vecdb.FullText()]
        body: Annotated[str, vecdb.FullText()]
        embedding: vecdb.Vector

    from vecdb._schema.record import layout  # noqa: PLC0415

    with pytest.raises(vecdb.ConfigError, match="is not a text field"):
        layout(NotText, dim=DIM)
    with pytest.raises(vecdb.ConfigError, match="one field per collection"):
        layout(TwoTexts, dim=DIM)


async def test_an_unknown_language_is_refused_and_nothing_is_made(db: vecdb.Database) -> None:
    class Klingon(vecdb.Record):
        id: int
        text: Annotated[str, vecdb.FullText(language="klingon")]
        embedding: vecdb.Vector

    with pytest.raises(vecdb.ConfigError, match="no such text search configuration"):
        await db.collection("k", Klingon, dim=DIM)
    assert await db.collections() == []


class Note(vecdb.Record):
    id: int
    created_at: dt.datetime
    text: Annotated[str, vecdb.FullText()]
    embedding: vecdb.Vector


async def test_archive_and_restore_keep_the_text_searchable(db: vecdb.Database) -> None:
    """Rows move by named columns: the generated column is recomputed, never copied."""
    notes = await db.collection("notes", Note, dim=DIM)
    old = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    new = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    await notes.upsert([
        Note(id=1, created_at=old, text="pool timeout long ago", embedding=Q),
        Note(id=2, created_at=new, text="pool timeout today", embedding=Q),
    ])  # fmt: skip
    report = await notes.archive(older_than=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                                 field="created_at")  # fmt: skip
    assert report.rows == 1
    assert report.ok
    assert [h.record.id for h in await notes.search(None, k=5, text="pool timeout")] == [2]
    restored = await notes.restore()
    assert restored.rows == 1
    assert restored.ok
    hits = await notes.search(None, k=5, text="pool timeout")
    assert {h.record.id for h in hits} == {1, 2}


@pytest.mark.parametrize("strategy", ["hnsw", "hnsw_iterative", "exact"])
@pytest.mark.parametrize("quantization", [None, "binary"], ids=["plain", "binary"])
async def test_the_statement_runs_under_every_strategy(
    db: vecdb.Database, strategy: str, quantization: str | None
) -> None:
    """The vector half is the strategy's own statement, nested in the fused one."""
    col = await make(db, index=vecdb.HNSW(quantization=quantization))  # type: ignore[arg-type]
    spec = col._spec
    where = compile_filter({"doc": "a"}, spec.layout.filterable, first_param=3)
    sql = hybrid_sql(
        spec,
        spec.layout.vectors[0],
        spec.layout.fulltext[0],
        ("id", "doc"),
        where,
        strategy=strategy,  # type: ignore[arg-type]
    )
    async with db.acquire() as conn:
        rows = await conn.fetch(sql, Q, 40, "a", "pool timeout", "english", 60, 10)
    assert len(rows) == 10
    assert {r["doc"] for r in rows} == {"a"}
    assert rows[0]["id"] == 1  # near and matching, once doc 'b' is filtered out


async def test_exact_hybrid_search(db: vecdb.Database) -> None:
    """exact=True turns index scans off; the GIN index still serves (bitmap scans)."""
    col = await make(db)
    hits = await col.search(Q, k=5, text="pool timeout", exact=True, where={"doc": "a"})
    assert hits[0].record.id == 1
    assert {h.record.doc for h in hits} == {"a"}


class LaterChunk(vecdb.Record):
    id: int
    doc: str
    summary: Annotated[str | None, vecdb.FullText(language="simple")] = None
    embedding: vecdb.Vector


async def test_evolve_adds_a_new_optional_fulltext_field(db: vecdb.Database) -> None:
    """The new column first, then its generated tsvector: one evolve, one transaction."""
    plain = await db.collection("chunks", PlainChunk, dim=DIM)
    await plain.upsert([PlainChunk(id=1, doc="a", text="x", embedding=Q)])

    class Evolved(LaterChunk):
        text: str

    col = await db.collection("chunks", Evolved, dim=DIM, evolve=True)
    assert await col.search(None, k=5, text="anything") == []  # NULL summaries match nothing
    await col.upsert([Evolved(id=2, doc="a", text="y", summary="the pool timeout", embedding=Q)])
    hits = await col.search(None, k=5, text="the pool")
    assert [h.record.id for h in hits] == [2]  # 'simple' keeps 'the'


async def test_include_vectors_with_text(db: vecdb.Database) -> None:
    col = await make(db)
    hits = await col.search(Q, k=3, text="pool timeout", include_vectors=True)
    for h in hits:
        expected = next(r[3] for r in ROWS if r[0] == h.record.id)
        assert np.array_equal(h.record.embedding, expected)
    keyword = await col.search(None, k=3, text="pool timeout")
    assert all(h.record.embedding is None for h in keyword)
