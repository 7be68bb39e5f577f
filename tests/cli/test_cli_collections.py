"""The ``vecdb collections`` and ``vecdb create-index`` commands, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import vecdb


class Doc(vecdb.Record):
    id: int
    title: str
    embedding: vecdb.Vector


def _vecdb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _docs(db: vecdb.Database, rows: int) -> None:
    docs = await db.collection("docs", Doc, dim=8, index=vecdb.HNSW(m=8, ef_construction=32))
    rng = np.random.default_rng(0)
    await docs.upsert(
        Doc(id=i, title=f"t{i}", embedding=rng.normal(size=8).astype(np.float32))
        for i in range(rows)
    )


async def test_collections_lists_the_catalog(db: vecdb.Database, dsn: str) -> None:
    await _docs(db, 10)
    done = _vecdb("collections", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    header, _, row = done.stdout.splitlines()[:3]
    assert header.split() == ["name", "table", "vectors", "metric", "storage", "index"]
    assert row.split()[:5] == ["docs", "public.docs", "embedding(8)", "cosine", "vector"]
    listed = json.loads(_vecdb("collections", "--json", "--dsn", dsn).stdout)
    assert [c["name"] for c in listed] == ["docs"]


async def test_create_index_rebuilds_with_new_parameters_and_reports_progress(
    db: vecdb.Database, dsn: str
) -> None:
    await _docs(db, 2000)
    done = _vecdb("create-index", "docs", "--m", "12", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert "Built the HNSW index of docs (m=12, ef_construction=32)." in done.stdout
    # Not a terminal: one line per phase, ending with "done".
    assert done.stderr.strip().splitlines()[-1].endswith(": done")
    [info] = await db.collections()
    assert info.spec["index"]["m"] == 12
    async with db.acquire() as conn:
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'docs' AND indexdef LIKE '%hnsw%'"
        )
    assert "m='12'" in definition


async def test_create_index_of_an_unknown_collection_fails_clearly(
    db: vecdb.Database, dsn: str
) -> None:
    done = _vecdb("create-index", "nope", "--dsn", dsn)
    assert done.returncode == 1
    assert "no collection named 'nope'" in done.stderr


def test_collections_on_a_database_never_migrated_says_so(dsn: str) -> None:
    done = _vecdb("collections", "--dsn", dsn)
    assert done.returncode == 1
    assert "never applied" in done.stderr
    assert "vecdb migrate" in done.stderr
