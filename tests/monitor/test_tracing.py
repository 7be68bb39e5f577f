"""OpenTelemetry: spans and the duration histogram, checked with the SDK's in-memory exporters.

The attributes are those of the stable database semantic conventions; see
docs/operations.md ("Tracing").
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import vecdb
from tests.conftest import PackageWriter
from vecdb._monitor.tracing import server_attributes


class Doc(vecdb.Record):
    id: int
    lang: str
    embedding: vecdb.Vector


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
async def traced(
    dsn: str, tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> vecdb.Database:
    db = await vecdb.connect(
        dsn,
        pool=vecdb.PoolConfig(min_size=1, max_size=2),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    try:
        yield db  # type: ignore[misc]
    finally:
        await db.close()


async def _settled() -> None:
    """Let the loop turn once: vecdb records an operation's span just after the call returns."""
    await asyncio.sleep(0)


def _spans(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def _vectors(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)


async def test_a_search_span_follows_the_database_conventions(
    traced: vecdb.Database, exporter: InMemorySpanExporter, dsn: str
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    vectors = _vectors(20)
    await docs.upsert(Doc(id=i, lang="en", embedding=vectors[i]) for i in range(20))
    await _settled()
    exporter.clear()
    hits = await docs.search(vectors[0], k=5, ef_search=64)
    await _settled()
    [span] = exporter.get_finished_spans()
    assert span.name == "search docs"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    parts = urlsplit(dsn)
    assert attributes["db.system.name"] == "postgresql"
    assert attributes["db.namespace"] == parts.path.lstrip("/")
    assert attributes["db.collection.name"] == "docs"
    assert attributes["db.operation.name"] == "search"
    assert attributes["db.response.returned_rows"] == len(hits) == 5
    assert attributes["server.address"]
    assert isinstance(attributes["server.port"], int)
    assert attributes["vecdb.search.strategy"] == "hnsw"
    assert attributes["vecdb.search.k"] == 5
    assert attributes["vecdb.search.ef_search"] == 64
    text = str(attributes["db.query.text"])
    assert "$1" in text
    assert "ORDER BY" in text
    assert span.status.status_code is StatusCode.UNSET


async def test_a_failed_operation_carries_error_type_and_the_sqlstate(
    traced: vecdb.Database, exporter: InMemorySpanExporter
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    async with traced.acquire() as conn:
        await conn.execute("DROP TABLE docs")  # behind vecdb's back: the server refuses
    await _settled()
    exporter.clear()
    with pytest.raises(vecdb.DatabaseError) as caught:
        await docs.count()
    assert caught.value.sqlstate == "42P01"
    await _settled()
    [span] = _spans(exporter, "count docs")
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == f"vecdb.{type(caught.value).__name__}"
    assert attributes["db.response.status_code"] == "42P01"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


async def test_an_error_vecdb_raises_itself_has_error_type_and_no_status_code(
    traced: vecdb.Database, exporter: InMemorySpanExporter
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    await _settled()
    exporter.clear()
    with pytest.raises(vecdb.ConfigError):
        await docs.search([0.0] * 8, k=0)
    await _settled()
    [span] = _spans(exporter, "search docs")
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "vecdb.ConfigError"
    assert "db.response.status_code" not in attributes
    assert span.status.status_code is StatusCode.ERROR


async def test_every_public_operation_gets_its_span(
    traced: vecdb.Database, exporter: InMemorySpanExporter
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    vectors = _vectors(4)
    await _settled()
    exporter.clear()
    await docs.upsert(Doc(id=i, lang="en", embedding=vectors[i]) for i in range(4))
    await docs.get(1)
    await docs.get_many([1, 2])
    await docs.count()
    await docs.search_many(vectors[:2], k=2)
    await docs.delete([3])
    await _settled()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == [
        "upsert docs",
        "get docs",
        "get_many docs",
        "count docs",
        "search_many docs",
        "delete docs",
    ]
    rows = {s.name: dict(s.attributes or {}).get("db.response.returned_rows") for s in
            exporter.get_finished_spans()}  # fmt: skip
    assert rows["get docs"] == 1
    assert rows["get_many docs"] == 2
    assert rows["search_many docs"] == 2  # one list of hits per query


async def test_a_span_is_recorded_after_the_call_with_its_true_times_and_parent(
    traced: vecdb.Database, exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    await docs.upsert([Doc(id=1, lang="en", embedding=_vectors(1)[0])])
    await _settled()
    exporter.clear()
    tracer = tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        before = time.time_ns()
        await docs.count()
        after = time.time_ns()
        # Off the caller's path: nothing is recorded until the loop turns.
        assert _spans(exporter, "count docs") == []
        await _settled()
    [span] = _spans(exporter, "count docs")
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= span.end_time <= after
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert dict(span.attributes or {})["db.response.returned_rows"] == 1


async def test_pending_spans_are_recorded_when_the_database_closes(
    dsn: str, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    db = await vecdb.connect(dsn, tracer_provider=tracer_provider)
    docs = await db.collection("docs", Doc, dim=8)
    await docs.count()
    await db.close()  # no loop turn in between
    assert [s.name for s in _spans(exporter, "count docs")] == ["count docs"]


async def test_under_a_driver_instrumentation_the_span_is_current_while_the_call_runs(
    traced: vecdb.Database, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With asyncpg's methods wrapped (as an instrumentation does), the driver's spans nest."""
    seen: list[str] = []

    def instrument(name: str) -> None:
        method = getattr(asyncpg.Connection, name)

        @functools.wraps(method)
        async def wrapper(self: asyncpg.Connection, *args: object, **kwargs: object) -> object:
            span = trace.get_current_span()
            seen.append(getattr(span, "name", ""))
            return await method(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, name, wrapper)

    docs = await traced.collection("docs", Doc, dim=8)
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        instrument(name)
    await _settled()
    exporter.clear()
    assert await docs.count() == 0
    # Recorded at once, not at the loop's next turn.
    assert [s.name for s in _spans(exporter, "count docs")] == ["count docs"]
    assert "count docs" in seen


async def test_the_duration_histogram_is_recorded_per_operation(
    traced: vecdb.Database, reader: InMemoryMetricReader
) -> None:
    docs = await traced.collection("docs", Doc, dim=8)
    vectors = _vectors(3)
    await docs.upsert(Doc(id=i, lang="en", embedding=vectors[i]) for i in range(3))
    for _ in range(4):
        await docs.search(vectors[0], k=2)
    await _settled()
    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == "vecdb"
        for m in sm.metrics
    ]
    assert (metric.name, metric.unit) == ("db.client.operation.duration", "s")
    points: dict[str, HistogramDataPoint] = {
        str(p.attributes["db.operation.name"]): p  # type: ignore[index]
        for p in metric.data.data_points  # type: ignore[union-attr]
    }
    assert points["search"].count == 4
    assert points["upsert"].count == 1
    assert points["search"].attributes["db.system.name"] == "postgresql"
    assert "db.query.text" not in points["search"].attributes  # kept off the metric
    assert tuple(points["search"].explicit_bounds) == (
        0.001,
        0.005,
        0.01,
        0.05,
        0.1,
        0.5,
        1.0,
        5.0,
        10.0,
    )


async def test_each_applied_migration_step_gets_a_span_with_source_and_version(
    dsn: str,
    packages: PackageWriter,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    template = '''
        import vecdb
        class M(vecdb.Migration):
            """NAME."""
            version = VERSION
            async def up(self, conn):
                await conn.execute("CREATE TABLE NAME (id int)")
            async def down(self, conn):
                await conn.execute("DROP TABLE NAME")
    '''
    pkg = packages.write(
        "traced_app",
        {
            f"v000{v}_{name}": template.replace("NAME", name).replace("VERSION", str(v))
            for v, name in ((1, "first"), (2, "second"))
        },
    )
    async with vecdb.connect(dsn, migrations=[pkg], tracer_provider=tracer_provider) as db:
        await db.migrations.rollback(to=0, source=pkg)

    def steps(verb: str) -> list[tuple[object, object, object]]:
        return [
            (a["vecdb.migration.source"], a["vecdb.migration.version"], a["db.system.name"])
            for s in exporter.get_finished_spans()
            if s.name == f"{verb} {pkg}" and (a := dict(s.attributes or {}))
        ]

    assert steps("migrate") == [(pkg, 1, "postgresql"), (pkg, 2, "postgresql")]
    assert steps("rollback") == [(pkg, 2, "postgresql"), (pkg, 1, "postgresql")]
    assert [s for s in exporter.get_finished_spans() if s.name == "migrate vecdb"]


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        pytest.param(
            "postgresql://u@db.example:6543/app",
            {"server.address": "db.example", "server.port": 6543, "db.namespace": "app"},
            id="host-port-database",
        ),
        pytest.param(
            "postgresql://u@/app?host=/run/pg&port=5433",
            {"server.address": "/run/pg", "server.port": 5433, "db.namespace": "app"},
            id="unix-socket",
        ),
        pytest.param(
            "postgresql://u:secret@h/app",
            {"server.address": "h", "server.port": 5432, "db.namespace": "app"},
            id="default-port-no-password",
        ),
    ],
)
def test_server_attributes_come_from_the_dsn_never_its_password(
    dsn: str, expected: dict[str, object]
) -> None:
    attributes = server_attributes(dsn)
    assert attributes == {"db.system.name": "postgresql", **expected}
    assert "secret" not in repr(attributes)


def test_without_opentelemetry_vecdb_imports_and_connects_untraced(dsn: str) -> None:
    """With the opentelemetry package blocked, nothing of it is imported and operations run."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, Block())
        import vecdb
        class Doc(vecdb.Record):
            id: int
            embedding: vecdb.Vector
        async def main():
            async with vecdb.connect({dsn!r}) as db:
                docs = await db.collection("docs", Doc, dim=2)
                await docs.upsert([Doc(id=1, embedding=[1.0, 0.0])])
                assert len(await docs.search([1.0, 0.0], k=1)) == 1
                try:
                    await vecdb.connect({dsn!r}, tracer_provider=object())
                except vecdb.ConfigError as exc:
                    print("refused:", exc)
            print("otel imported:", any(m.startswith("opentelemetry") for m in sys.modules))
        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "otel imported: False" in done.stdout
    assert "refused: tracer_provider= / meter_provider= need OpenTelemetry" in done.stdout
    assert "vecdb[otel]" in done.stdout


def test_global_providers_set_after_connect_are_used_and_none_before(dsn: str) -> None:
    """Unconfigured, the global tracer makes no span; set later, the next operation has one.

    In a process of its own: OpenTelemetry's global providers can be set once per process.
    """
    script = textwrap.dedent(
        f"""
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import vecdb
        from vecdb._server.database import connections

        class Doc(vecdb.Record):
            id: int
            embedding: vecdb.Vector

        def durations(reader):
            data = reader.get_metrics_data()
            return sum(
                p.count
                for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == "db.client.operation.duration"
                for p in m.data.data_points
            ) if data else 0

        async def main():
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            async with vecdb.connect({dsn!r}) as db:  # the global providers
                docs = await db.collection("docs", Doc, dim=2)
                tracing = connections(db).monitor.tracing
                op = connections(db).monitor.operation("count", "docs")
                with op:
                    print("span before:", tracing.start(op))
                before = durations(reader)
                await docs.count()
                await asyncio.sleep(0)
                print("durations recorded without a tracer:", durations(reader) - before)
                exporter = InMemorySpanExporter()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
                await docs.count()
                await asyncio.sleep(0)
                print("spans after:", [s.name for s in exporter.get_finished_spans()])
        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "span before: None" in done.stdout
    assert "durations recorded without a tracer: 1" in done.stdout
    assert "spans after: ['count docs']" in done.stdout
