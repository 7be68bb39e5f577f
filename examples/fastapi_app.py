"""A small FastAPI service on vecdb: upsert and search endpoints, ``/metrics`` and ``/stats``.

Clients send their own embeddings (any model; ``DIM`` numbers each). The app
connects once at startup (``$VECDB_DSN``, else the embedded PostgreSQL),
exports Prometheus metrics with `vecdb.prometheus.VecdbCollector`, and turns
vecdb's input errors into 422 responses that say what was wrong.

Run it with::

    pip install 'vecdb[prometheus]' fastapi uvicorn
    uvicorn fastapi_app:app --app-dir examples

then ``curl -X POST localhost:8000/chunks -H 'content-type: application/json'
-d '[{"id": 1, "text": "hello", "embedding": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}]'``
and ``curl localhost:8000/metrics``. With OpenTelemetry configured globally
(``opentelemetry-instrument uvicorn ...``), every vecdb call is a span too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

import vecdb
from vecdb.prometheus import VecdbCollector

DIM = int(os.environ.get("APP_DIM", "8"))


class Chunk(vecdb.Record):
    id: int
    text: str
    embedding: vecdb.Vector


class SearchRequest(BaseModel):
    vector: list[float]
    k: int = Field(default=5, ge=1, le=100)
    text_contains: str | None = None


class Hit(BaseModel):
    id: int
    text: str
    distance: float


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with vecdb.connect() as db:
        app.state.db = db
        app.state.chunks = await db.collection("chunks", Chunk, dim=DIM)
        app.state.registry = CollectorRegistry()
        app.state.collector = VecdbCollector(db)
        app.state.registry.register(app.state.collector)
        yield


app = FastAPI(title="vecdb example", lifespan=lifespan)


@app.exception_handler(vecdb.DimensionMismatchError)
@app.exception_handler(vecdb.InvalidVectorError)
@app.exception_handler(vecdb.RecordValidationError)
@app.exception_handler(vecdb.ConfigError)
async def bad_input(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": type(exc).__name__, "detail": str(exc)})


@app.post("/chunks")
async def upsert(chunks: list[dict[str, Any]], request: Request) -> dict[str, int]:
    """Insert or replace chunks: ``[{"id": 1, "text": "...", "embedding": [...]}, ...]``."""
    written = await request.app.state.chunks.upsert(chunks)
    return {"written": written}


@app.post("/search")
async def search(query: SearchRequest, request: Request) -> list[Hit]:
    """The ``k`` chunks closest to ``vector``."""
    hits = await request.app.state.chunks.search(query.vector, k=query.k)
    return [Hit(id=h.record.id, text=h.record.text, distance=h.distance) for h in hits]


@app.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format. The database's figures are read first, on this event loop."""
    await request.app.state.collector.refresh()
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """``db.stats()`` as JSON: pool, server, collections, operations, slowest statements."""
    result: vecdb.Stats = await request.app.state.db.stats()
    return result.to_dict()
