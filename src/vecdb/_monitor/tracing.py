"""OpenTelemetry: a span per public operation and per migration step, and the duration histogram.

Follows the stable database semantic conventions: span name
``{db.operation.name} {db.collection.name}``, kind CLIENT, ``db.system.name =
postgresql``, ``db.namespace``, ``db.query.text`` (parameterised: vecdb binds
every value), ``db.response.returned_rows``, ``server.address`` and
``server.port``; on failure ``error.type`` and ``db.response.status_code``
(the SQLSTATE). The ``db.client.operation.duration`` histogram is in seconds.

``opentelemetry`` is imported here only, and only when `make` is called with
it installed; without it `make` returns ``None`` and the recorder never
calls into this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .._errors import ConfigError
from .._version import __version__
from .recorder import Operation

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram as OtelHistogram
    from opentelemetry.trace import Span, Tracer

__all__ = ["DURATION_BUCKETS", "Tracing", "make", "server_attributes"]

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""The conventions' advice for ``db.client.operation.duration``."""

_SCHEMA_URL = "https://opentelemetry.io/schemas/1.28.0"


def server_attributes(dsn: str) -> dict[str, str | int]:
    """``db.namespace``, ``server.address`` (a socket's directory) and ``server.port`` of a DSN."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    address = query.get("host") or parts.hostname or "localhost"
    port = query.get("port") or (str(parts.port) if parts.port else "5432")
    database = (
        unquote(parts.path.lstrip("/")) or query.get("dbname") or unquote(parts.username or "")
    )
    attributes: dict[str, str | int] = {"db.system.name": "postgresql", "server.address": address}
    if port.isdigit():
        attributes["server.port"] = int(port)
    if database:
        attributes["db.namespace"] = database
    return attributes


def make(tracer_provider: Any, meter_provider: Any, *, dsn: str) -> Tracing | None:
    """Tracing through these providers (``None``: the global ones); ``None`` without OpenTelemetry.

    Raises:
        ConfigError: A provider was given but ``opentelemetry`` is not installed.
    """
    try:
        import opentelemetry.trace  # noqa: F401, PLC0415 - the optional extra, only when installed
    except ImportError:
        if tracer_provider is not None or meter_provider is not None:
            raise ConfigError(
                "tracer_provider= / meter_provider= need OpenTelemetry: pip install 'vecdb[otel]'",
                setting="tracer_provider" if tracer_provider is not None else "meter_provider",
            ) from None
        return None
    return Tracing(tracer_provider, meter_provider, server_attributes(dsn))


class Tracing:
    """Spans and the duration histogram, through one tracer and one meter."""

    def __init__(
        self, tracer_provider: Any, meter_provider: Any, attributes: dict[str, str | int]
    ) -> None:
        from opentelemetry import context, metrics, trace  # noqa: PLC0415 - the optional extra

        self._trace = trace
        self._context = context
        self._kind = trace.SpanKind.CLIENT
        self._tracer: Tracer = trace.get_tracer(
            "vecdb", __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(
            "vecdb", __version__, meter_provider=meter_provider, schema_url=_SCHEMA_URL
        )
        self._duration: OtelHistogram = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._attributes = attributes
        # The histogram's attributes: the conventions leave out the high-cardinality ones.
        self._metric_attributes = {
            k: v
            for k, v in attributes.items()
            if k in {"db.system.name", "db.namespace", "server.address", "server.port"}
        }

    def start(self, op: Operation) -> tuple[Span, object]:
        """Open ``op``'s span and make it current (a driver's spans nest under it)."""
        span = self._tracer.start_span(
            f"{op.name} {op.collection}",
            kind=self._kind,
            attributes={
                **self._attributes,
                "db.collection.name": op.collection,
                "db.operation.name": op.name,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def end(
        self, op: Operation, started: tuple[Span, object], elapsed: float, exc: BaseException | None
    ) -> None:
        """Close ``op``'s span with what it learned, and record its duration."""
        span, token = started
        self._context.detach(token)  # type: ignore[arg-type]
        # One set_attributes: the SDK takes its lock once, not once per attribute.
        learned: dict[str, str | int] = {}
        if op.query is not None:
            learned["db.query.text"] = op.query
        if op.rows is not None:
            learned["db.response.returned_rows"] = op.rows
        if op.strategy is not None:
            learned["vecdb.search.strategy"] = op.strategy
        if op.k is not None:
            learned["vecdb.search.k"] = op.k
        if op.ef_search is not None:
            learned["vecdb.search.ef_search"] = op.ef_search
        metric = {
            **self._metric_attributes,
            "db.collection.name": op.collection,
            "db.operation.name": op.name,
        }
        if exc is not None:
            kind = _qualified_name(exc)
            metric["error.type"] = learned["error.type"] = kind
            sqlstate = getattr(exc, "sqlstate", None)
            if isinstance(sqlstate, str):
                metric["db.response.status_code"] = learned["db.response.status_code"] = sqlstate
            span.record_exception(exc)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)))
        if span.is_recording():  # not a no-op span (global providers left unconfigured)
            span.set_attributes(learned)
        span.end()
        self._duration.record(elapsed, metric)

    @contextlib.contextmanager
    def migration_step(self, source: str, version: int, direction: str) -> Iterator[None]:
        """One applied (or reverted) migration step's span."""
        verb = "migrate" if direction == "up" else "rollback"
        attributes = {
            **self._attributes,
            "db.operation.name": verb,
            "vecdb.migration.source": source,
            "vecdb.migration.version": version,
            "vecdb.migration.direction": direction,
        }
        with self._tracer.start_as_current_span(
            f"{verb} {source}", kind=self._kind, attributes=attributes
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.set_attribute("error.type", _qualified_name(exc))
                sqlstate = getattr(exc, "sqlstate", None)
                if isinstance(sqlstate, str):
                    span.set_attribute("db.response.status_code", sqlstate)
                raise


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
