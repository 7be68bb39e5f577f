"""examples/fastapi_app.py, served through httpx's ASGI transport, inside the app's lifespan."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

APP = Path(__file__).parent.parent.parent / "examples" / "fastapi_app.py"


@pytest.fixture
def example(dsn: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("VECDB_DSN", dsn)
    spec = importlib.util.spec_from_file_location("fastapi_app_example", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


async def test_the_app_upserts_searches_and_exports_its_metrics(example: ModuleType) -> None:
    chunks = [
        {"id": i, "text": f"chunk {i}", "embedding": [1.0 if j == i else 0.0 for j in range(8)]}
        for i in range(8)
    ]
    app = example.app
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        written = await client.post("/chunks", json=chunks)
        assert written.status_code == 200, written.text
        assert written.json() == {"written": 8}

        found = await client.post("/search", json={"vector": chunks[3]["embedding"], "k": 2})
        assert found.status_code == 200, found.text
        assert found.json()[0] == {"id": 3, "text": "chunk 3", "distance": 0.0}

        wrong = await client.post("/search", json={"vector": [1.0, 2.0], "k": 2})
        assert wrong.status_code == 422
        assert wrong.json()["error"] == "DimensionMismatchError"

        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
        searches = [
            s.value
            for s in families["vecdb_operation_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels["operation"] == "search"
        ]
        assert searches == [1.0]
        # Sizes are read from the files at once; live rows as statistics flush (about 1 s).
        sizes = families["vecdb_collection_bytes"].samples
        assert {s.labels["collection"] for s in sizes} == {"chunks"}
        assert next(s.value for s in sizes if s.labels["kind"] == "hnsw") > 0

        stats = (await client.get("/stats")).json()
        assert {o["operation"] for o in stats["operations"]} == {"upsert", "search"}
