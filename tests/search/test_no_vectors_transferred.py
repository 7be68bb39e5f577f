"""``search(include_vectors=False)`` asks the server for no vector column at all.

Checked on the wire's terms: every statement the search sent (caught with
asyncpg's query logger on the pool's only connection) is prepared again on the
server, and the server's own description of its result columns must hold no
``vector`` or ``halfvec``. The same check on ``include_vectors=True`` finds the
vector, so the check can see one when it is there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

import vecdb

DIM = 8
VECTOR_TYPES = {"vector", "halfvec", "sparsevec"}


class Doc(vecdb.Record):
    id: int
    bucket: int
    embedding: vecdb.Vector


@pytest.fixture
async def one_connection(dsn: str) -> AsyncIterator[vecdb.Database]:
    """A database whose pool has one connection: every statement goes through it."""
    database = await vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=1))
    try:
        yield database
    finally:
        await database.close()


async def make_docs(db: vecdb.Database, storage: str, index: vecdb.HNSW | None) -> Any:
    docs = await db.collection(
        f"docs_{storage}", Doc, dim=DIM, storage=storage, index=index, filterable=("bucket",)
    )
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, DIM)).astype(np.float32)
    await docs.upsert(Doc(id=i, bucket=i % 3, embedding=vectors[i]) for i in range(50))
    return docs


async def result_types(
    db: vecdb.Database, docs: Any, *, include_vectors: bool, where: Any
) -> list[list[str]]:
    """The result column types, per statement, of the SELECTs one search sent."""
    sent: list[str] = []

    def log(logged: Any) -> None:
        # Only statements with bound values: the search's own (it binds the query
        # vector), not the pool's reset script on release.
        if logged.args:
            sent.append(logged.query)

    async with db.acquire() as conn:
        conn.add_query_logger(log)
    try:
        hits = await docs.search(
            np.ones(DIM, dtype=np.float32), k=5, where=where, include_vectors=include_vectors
        )
    finally:
        async with db.acquire() as conn:
            conn.remove_query_logger(log)
    assert hits, "the search found nothing, so it proves nothing"
    assert all((hit.record.embedding is None) is (not include_vectors) for hit in hits)
    selects = [sql for sql in sent if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert any("ORDER BY" in sql for sql in selects), f"the search's SELECT not caught: {sent}"
    types = []
    async with db.acquire() as conn:
        for sql in selects:
            statement = await conn.prepare(sql)
            types.append([attribute.type.name for attribute in statement.get_attributes()])
    return types


@pytest.mark.parametrize("storage", ["vector", "halfvec"])
@pytest.mark.parametrize(
    "index", [None, vecdb.HNSW(m=8, ef_construction=32)], ids=["exact", "hnsw"]
)
@pytest.mark.parametrize("where", [None, {"bucket": 1}], ids=["unfiltered", "filtered"])
async def test_search_without_vectors_selects_no_vector_column(
    one_connection: vecdb.Database, storage: str, index: vecdb.HNSW | None, where: Any
) -> None:
    docs = await make_docs(one_connection, storage, index)
    types = await result_types(one_connection, docs, include_vectors=False, where=where)
    for columns in types:
        assert not VECTOR_TYPES & set(columns), columns


@pytest.mark.parametrize("storage", ["vector", "halfvec"])
async def test_search_with_vectors_does_select_the_vector(
    one_connection: vecdb.Database, storage: str
) -> None:
    """The control: the check sees a vector column when one is sent."""
    docs = await make_docs(one_connection, storage, None)
    types = await result_types(one_connection, docs, include_vectors=True, where=None)
    assert any(storage in columns for columns in types), types
