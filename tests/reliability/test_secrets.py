"""A DSN's password never shows: not in logs, exceptions, reprs nor the CLI's output.

Each test connects with a password in the DSN (in the authority, or as a
``password=`` parameter), goes through the success and the failure paths, and
collects every text vecdb produces: log records at DEBUG, the messages, reprs and
causes of its errors, ``repr(db)``, and what the ``vecdb`` command prints.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import vecdb
from vecdb.prometheus import VecdbCollector

from ._load import DIM, Doc, doc, query

FAKE = "S3cret-Pa55word"  # the test server trusts local sockets, so any password works


def _with_password(dsn: str, *, in_query: bool) -> tuple[str, str]:
    """``dsn`` carrying a password (its own if it has one), and that password."""
    parts = urlsplit(dsn)
    secret = parts.password or FAKE
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    if in_query:
        query_ = "&".join(filter(None, [parts.query, f"password={quote(secret)}"]))
        return urlunsplit(parts._replace(netloc=f"{user}@{host}", query=query_)), secret
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(secret)}@{host}")), secret


def _texts(exc: BaseException) -> list[str]:
    """Everything an error shows: message, repr, traceback, and the same for its chain."""
    found = ["".join(traceback.format_exception(exc))]
    while exc is not None:
        found += [str(exc), repr(exc), repr(getattr(exc, "args", ()))]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return found


@pytest.mark.parametrize("in_query", [False, True], ids=["in-authority", "in-query"])
async def test_the_password_appears_in_no_log_error_or_repr(
    dsn: str, in_query: bool, caplog: pytest.LogCaptureFixture
) -> None:
    secret_dsn, secret = _with_password(dsn, in_query=in_query)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with vecdb.connect(secret_dsn, pool=vecdb.PoolConfig(min_size=1, max_size=2)) as db:
        seen += [repr(db), str(db), repr(db.pool_config), repr(await db.health())]
        docs = await db.collection("docs", Doc, dim=DIM)
        await docs.upsert([doc(1), doc(2)])
        await docs.search(query(1), k=1)
        seen.append(repr(await db.migrations.status()))
        for failing in (
            docs.search([0.0] * DIM, k=1),  # a zero vector under cosine
            docs.count(where={"nope": 1}),  # an unknown field
        ):
            with pytest.raises(vecdb.VecdbError) as caught:
                await failing
            seen += _texts(caught.value)
    seen.append(repr(db))  # closed
    # The failure paths of connect(): a database that does not exist, a server not there.
    missing_db = urlunsplit(urlsplit(secret_dsn)._replace(path="/no_such_database"))
    not_there = secret_dsn.replace(urlsplit(secret_dsn).path, "/x", 1).replace(
        "host=", "host=/nonexistent", 1
    )
    for bad in (missing_db, not_there):
        with pytest.raises(vecdb.VecdbError) as caught:
            await vecdb.connect(bad)
        seen += _texts(caught.value)
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any("connected to" in text for text in seen), "the logs were not collected"
    assert [text for text in seen if secret in text or quote(secret) in text] == []


@pytest.mark.parametrize(
    "args",
    [["status", "--json"], ["collections"], ["doctor"], ["tune"]],
    ids=" ".join,
)
@pytest.mark.parametrize("in_query", [False, True], ids=["in-authority", "in-query"])
def test_the_cli_never_prints_the_password(dsn: str, args: list[str], in_query: bool) -> None:
    secret_dsn, secret = _with_password(dsn, in_query=in_query)
    missing_db = urlunsplit(urlsplit(secret_dsn)._replace(path="/no_such_database"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for target, how in ((secret_dsn, "flag"), (missing_db, "env")):
        argv = [sys.executable, "-m", "vecdb", *args, "--verbose"]
        run_env = dict(env)
        if how == "flag":
            argv += ["--dsn", target]
        else:
            run_env["VECDB_DSN"] = target
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, env=run_env, timeout=120
        )
        output = done.stdout + done.stderr
        assert output, argv
        assert secret not in output, (argv[3:], output)
        assert quote(secret) not in output, (argv[3:], output)


@pytest.mark.parametrize("in_query", [False, True], ids=["in-authority", "in-query"])
async def test_the_password_appears_in_no_stats_metric_or_span(dsn: str, in_query: bool) -> None:
    secret_dsn, secret = _with_password(dsn, in_query=in_query)
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    meter = MeterProvider(metric_readers=[reader])
    seen: list[str] = []
    async with vecdb.connect(secret_dsn, tracer_provider=tracer, meter_provider=meter) as db:
        docs = await db.collection("docs", Doc, dim=DIM)
        await docs.upsert([doc(1), doc(2)])
        await docs.search(query(1), k=1)
        with pytest.raises(vecdb.VecdbError):
            await docs.search([0.0] * DIM, k=1)  # a failed span, with its exception event
        stats = await db.stats()
        seen += [repr(stats), str(stats.to_dict())]
        registry = CollectorRegistry()
        registry.register(VecdbCollector(db))
        seen.append(generate_latest(registry).decode())
    tracer.shutdown()
    finished = spans.get_finished_spans()
    assert finished, "no span was exported"
    for span in finished:
        seen += [span.name, repr(dict(span.attributes or {}))]
        seen += [repr(dict(e.attributes or {})) for e in span.events]
    seen.append(reader.get_metrics_data().to_json())  # type: ignore[union-attr]
    meter.shutdown()
    assert [text for text in seen if secret in text or quote(secret) in text] == []
