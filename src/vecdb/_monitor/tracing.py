"""OpenTelemetry: a span per public operation and per migration step, and the duration histogram.

Follows the stable database semantic conventions: span name
``{db.operation.name} {db.collection.name}``, kind CLIENT, ``db.system.name =
postgresql``, ``db.namespace``, ``db.query.text`` (parameterised: vecdb binds
every value), ``db.response.returned_rows``, ``server.address`` and
``server.port``; on failure ``error.type`` and ``db.response.status_code``
(the SQLSTATE). The ``db.client.operation.duration`` histogram is in seconds.

The span of an operation is made when the operation ends, with all its
attributes and its true start and end times, and recorded at the event loop's
next turn rather than on the caller's path: a search returns first, and its
span and duration histogram are recorded while the caller's next query is on
the wire. Only when an asyncpg instrumentation is installed is the span opened
at the start and made current, so that the driver's spans nest under it.

``opentelemetry`` is imported here only, and only when `make` is called with
it installed; without it `make` returns ``None`` and the recorder never
calls into this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from asyncpg import Connection as _Connection

from .._errors import ConfigError
from .._version import __version__
from .recorder import Operation

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram as OtelHistogram
    from opentelemetry.trace import Span, Tracer

__all__ = ["DURATION_BUCKETS", "Tracing", "make", "server_attributes"]

_log = logging.getLogger("vecdb.tracing")

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
        # The global tracer provider is a proxy until the application sets one
        # (it may do so after connect): until then no span is made at all.
        self._proxied = tracer_provider is None
        self._pending: list[_Late] = []
        self._scheduled = False
        # The histogram's attributes: the conventions leave out the high-cardinality ones.
        self._metric_attributes = {
            k: v
            for k, v in attributes.items()
            if k in {"db.system.name", "db.namespace", "server.address", "server.port"}
        }

    def start(self, op: Operation) -> _Late | _Eager | None:
        """Begin ``op``'s span: note its parent and start time, or open it now if spans nest.

        The span is made when the operation ends (`end`), with every attribute
        at once and its real start time, unless a driver instrumentation is
        installed: then it is opened now and made current, so the driver's
        spans nest under it. ``None``: no tracer provider is configured (the
        global one left unset), so only the duration is recorded.
        """
        if self._proxied and isinstance(
            self._trace.get_tracer_provider(), self._trace.ProxyTracerProvider
        ):
            return None
        if _driver_instrumented():
            span = self._tracer.start_span(
                f"{op.name} {op.collection}",
                kind=self._kind,
                attributes={
                    **self._attributes,
                    "db.collection.name": op.collection,
                    "db.operation.name": op.name,
                },
            )
            return _Eager(span, self._context.attach(self._trace.set_span_in_context(span)))
        return _Late(op, self._context.get_current(), time.time_ns())

    def end(
        self,
        op: Operation,
        started: _Late | _Eager | None,
        elapsed: float,
        exc: BaseException | None,
    ) -> None:
        """Finish ``op``'s span and record its duration: eagerly, or at the loop's next turn.

        A late span is finished off the caller's path: the call returns first,
        and the span and histogram are recorded at the event loop's next turn
        (typically while the caller's next query is on the wire). `flush`
        records whatever is still pending.
        """
        if started is None:  # no tracer: the duration alone (a no-op without a meter)
            self._duration.record(elapsed, self._metric(op, exc))
            return
        if isinstance(started, _Eager):
            self._context.detach(started.token)  # type: ignore[arg-type]
            self._finish(op, started.span, started, elapsed, exc)
            return
        started.elapsed, started.error = elapsed, exc
        self._pending.append(started)
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (cannot happen for async calls): record now
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Record every pending span and duration now (at the loop's turn, and at close)."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        for late in pending:
            try:
                self._finish_late(late)
            except Exception:  # noqa: BLE001 - telemetry must never break the loop
                _log.debug("recording a span failed", exc_info=True)

    def _finish_late(self, late: _Late) -> None:
        op = late.op
        attributes: dict[str, str | int] = {
            **self._attributes,
            "db.collection.name": op.collection,
            "db.operation.name": op.name,
        }
        # Given at start, the attributes are cleaned once and seen by the sampler.
        attributes.update(_learned(op, late.error))
        span = self._tracer.start_span(
            f"{op.name} {op.collection}",
            context=late.parent,  # type: ignore[arg-type]
            kind=self._kind,
            attributes=attributes,
            start_time=late.started_ns,
        )
        self._finish(op, span, late, late.elapsed, late.error, attributes_set=True)

    def _finish(
        self,
        op: Operation,
        span: Span,
        started: _Late | _Eager,
        elapsed: float,
        exc: BaseException | None,
        *,
        attributes_set: bool = False,
    ) -> None:
        end_ns = started.started_ns + int(elapsed * 1e9) if isinstance(started, _Late) else None
        if span.is_recording():  # not a no-op span (global providers left unconfigured)
            if not attributes_set:
                # One set_attributes: the SDK takes its lock once, not once per attribute.
                span.set_attributes(_learned(op, exc))
            if exc is not None:
                span.record_exception(exc, timestamp=end_ns)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)))
        span.end(end_time=end_ns)
        self._duration.record(elapsed, self._metric(op, exc))

    def _metric(self, op: Operation, exc: BaseException | None) -> dict[str, str | int]:
        """The duration histogram's attributes (the conventions' low-cardinality ones)."""
        metric = {
            **self._metric_attributes,
            "db.collection.name": op.collection,
            "db.operation.name": op.name,
        }
        if exc is not None:
            metric["error.type"] = _qualified_name(exc)
            sqlstate = getattr(exc, "sqlstate", None)
            if isinstance(sqlstate, str):
                metric["db.response.status_code"] = sqlstate
        return metric

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


class _Late:
    """A span to be made when its operation ends: its parent context and start time."""

    __slots__ = ("elapsed", "error", "op", "parent", "started_ns")

    def __init__(self, op: Operation, parent: object, started_ns: int) -> None:
        self.op = op
        self.parent = parent
        self.started_ns = started_ns
        self.elapsed = 0.0
        self.error: BaseException | None = None


class _Eager:
    """A span opened at the operation's start and made current (a driver's spans nest)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


def _driver_instrumented() -> bool:
    """Whether an asyncpg instrumentation (wrapt wrappers on its methods) is installed."""
    return hasattr(_Connection.fetch, "__wrapped__") or hasattr(_Connection.execute, "__wrapped__")


def _learned(op: Operation, exc: BaseException | None) -> dict[str, str | int]:
    """What the operation learned on the way, as span attributes."""
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
    if exc is not None:
        learned["error.type"] = _qualified_name(exc)
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str):
            learned["db.response.status_code"] = sqlstate
    return learned


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
