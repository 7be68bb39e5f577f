"""The in-process operations recorder: calls, errors and latency per operation.

Every public collection operation runs inside one `Operation` (a ``with``
block): it times the call, counts it under ``(operation, collection,
strategy)``, and, when tracing is on, hands its span to `Tracing`. The cost is a
``perf_counter`` pair, a context variable and a histogram increment; without
OpenTelemetry it is one ``is None`` branch more. Memory is bounded: each series
is a fixed-size `Histogram`, and past `MAX_SERIES` new collections share the
``_other`` series.

The searcher learns the strategy only once it has planned; it tells the
running operation through `note_search`, which finds it in a context variable
(so nothing is passed through the collection's call).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from .histogram import Histogram

if TYPE_CHECKING:
    from .._typing import Connections
    from .tracing import Tracing

__all__ = [
    "MAX_SERIES",
    "OTHER",
    "Monitor",
    "Operation",
    "error_type",
    "note_search",
    "recorded",
]

P = ParamSpec("P")
R = TypeVar("R")


class _Recordable(Protocol):
    """What `recorded` needs of the object whose methods it records (a collection)."""

    @property
    def _pool(self) -> Connections: ...

    @property
    def name(self) -> str: ...


_Self = TypeVar("_Self", bound=_Recordable)

MAX_SERIES = 1000
"""Series (operation, collection, strategy) kept apart; later ones go to ``_other``."""

OTHER = "_other"

_current: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "vecdb_operation", default=None
)


def error_type(exc: BaseException) -> str:
    """A bounded name for an error: vecdb's and Python's own classes by name, else ``_OTHER``."""
    cls = type(exc)
    if isinstance(exc, asyncio.CancelledError):
        return "CancelledError"
    if cls.__module__ in {"vecdb", "builtins"}:
        return cls.__name__
    return "_OTHER"


class Series:
    """One ``(operation, collection, strategy)``: durations of successful calls, errors by type."""

    __slots__ = ("errors", "histogram")

    def __init__(self) -> None:
        self.histogram = Histogram()
        self.errors: dict[str, int] = {}


class Monitor:
    """The recorder of one `Database` (one per pool), and its tracing if any.

    Args:
        tracing: OpenTelemetry spans and metrics, or ``None`` when off.
    """

    def __init__(self, tracing: Tracing | None = None) -> None:
        self.tracing = tracing
        self._series: dict[tuple[str, str, str], Series] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def operation(self, name: str, collection: str) -> Operation:
        """The ``with`` block of one public operation."""
        return Operation(self, name, collection)

    def flush(self) -> None:
        """Record the spans still pending now (before the pool closes)."""
        if self.tracing is not None:
            self.tracing.flush()

    def series(self) -> list[tuple[tuple[str, str, str], Series]]:
        """Every series, ``((operation, collection, strategy), series)``; safe from any thread."""
        # A copy taken in one C call (the GIL held): no "changed size" error.
        items = list(self._series.items())
        return sorted(items, key=lambda item: item[0])

    def _finish(self, op: Operation, elapsed: float, exc: BaseException | None) -> None:
        key = (op.name, op.collection, op.strategy or "")
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                key = (op.name, OTHER, op.strategy or "")
                series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series()
        if exc is None:
            series.histogram.add(elapsed)
        else:
            name = error_type(exc)
            series.errors[name] = series.errors.get(name, 0) + 1


class Operation:
    """One call being recorded; what it learns on the way ends up on its series and span.

    Attributes:
        name: ``search``, ``upsert``, ... (bounded: vecdb's method names).
        collection: The collection's name.
        strategy: A search's strategy, once planned.
        k: A search's ``k``.
        ef_search: A search's ``hnsw.ef_search``, when it sets one.
        query: The parameterised statement (never values).
        rows: Rows returned.
    """

    __slots__ = (
        "_monitor",
        "_span",
        "_started",
        "_token",
        "_tracing",
        "collection",
        "ef_search",
        "k",
        "name",
        "query",
        "rows",
        "strategy",
    )

    def __init__(self, monitor: Monitor, name: str, collection: str) -> None:
        self._monitor = monitor
        self.name = name
        self.collection = collection
        self.strategy: str | None = None
        self.k: int | None = None
        self.ef_search: int | None = None
        self.query: str | None = None
        self.rows: int | None = None
        self._span: Any = None

    def __enter__(self) -> Operation:
        self._token = _current.set(self)
        # The Tracing that starts the span ends it, whatever happens to the monitor's.
        tracing = self._tracing = self._monitor.tracing
        if tracing is not None:
            self._span = tracing.start(self)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        _current.reset(self._token)
        self._monitor._finish(self, elapsed, exc)
        tracing = self._tracing
        if tracing is not None:
            tracing.end(self, self._span, elapsed, exc)

    def returned(self, result: Any) -> Any:
        """Note the rows a read returned (a list, a record or ``None``), and pass it on."""
        if isinstance(result, list):
            self.rows = len(result)
        elif self.name == "get":
            self.rows = 0 if result is None else 1
        elif self.name == "count":
            self.rows = 1
        return result


def note_search(strategy: str, k: int, settings: Mapping[str, str], query: str) -> None:
    """Tell the running operation (if any) how its search runs: strategy, k, ef_search, SQL."""
    op = _current.get()
    if op is not None:
        ef_search = settings.get("hnsw.ef_search", "")
        op.strategy, op.k, op.query = strategy, k, query
        op.ef_search = int(ef_search) if ef_search.isdigit() else None


def recorded(
    name: str,
) -> Callable[
    [Callable[Concatenate[_Self, P], Awaitable[R]]],
    Callable[Concatenate[_Self, P], Coroutine[Any, Any, R]],
]:
    """Record every call of a collection's public method as operation ``name``."""

    def wrap(
        method: Callable[Concatenate[_Self, P], Awaitable[R]],
    ) -> Callable[Concatenate[_Self, P], Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def run(self: _Self, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with self._pool.monitor.operation(name, self.name) as op:
                result = await method(self, *args, **kwargs)
                op.returned(result)
                return result

        return run

    return wrap
