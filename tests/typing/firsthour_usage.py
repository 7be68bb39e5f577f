"""User-style code for adopt() and the pytest plugin: must pass ``mypy --strict`` (never run)."""

from __future__ import annotations

import uuid
from typing import Any

import vecdb
from vecdb.testing import TestServer


class LangchainDoc(vecdb.Record):
    langchain_id: uuid.UUID
    content: str
    embedding: vecdb.Vector
    langchain_metadata: dict[str, Any] | None = None


async def adopt_langchain(db: vecdb.Database) -> str:
    docs: vecdb.Collection[LangchainDoc] = await db.adopt(
        "langchain_docs", LangchainDoc, vector_field="embedding", id_field="langchain_id"
    )
    hits = await docs.search([0.1, 0.2, 0.3], k=3)
    return hits[0].record.content


async def test_uses_the_fixtures(vecdb_db: vecdb.Database, vecdb_server: TestServer) -> None:
    assert vecdb_server.dsn
    await vecdb_db.health()
