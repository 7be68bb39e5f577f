"""Read operations that may be retried once on another server.

Shared by the collection layer (which marks its read methods with
`read_operation`) and the server layer (whose replica router reports, through
`note_failure`, that the server a read ran on failed in a way another server
would not). They meet in a context variable, so neither imports the other.
A read that fails on a standby because the standby went away, or because
replay cancelled it ("conflict with recovery", SQLSTATE 40001), runs once
more with that standby excluded; a second conflict is a `ReplicaConflictError`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from .._errors import ConfigError, ReplicaConflictError

__all__ = ["Attempt", "check_consistent", "current", "note_failure", "read_operation"]

logger = logging.getLogger("vecdb.replicas")

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(slots=True)
class Attempt:
    """One read operation in progress: the replicas to avoid, what failed, where it must read.

    ``position``: for a ``consistent=True`` read, the primary's WAL position when
    it began, which a replica must have replayed (read once: every connection of
    the operation, its retry's too, waits for the same one).
    """

    exclude: set[int] = dataclasses.field(default_factory=set)
    failed: int | None = None
    conflict: bool = False
    position: str | None = None


# Tasks a read starts (search_many's) copy the context: they share this object.
_attempt: ContextVar[Attempt | None] = ContextVar("vecdb_read_attempt", default=None)


def check_consistent(consistent: object) -> bool | None:
    """``consistent=`` of a read method, checked.

    Raises:
        ConfigError: It is not ``True``, ``False`` or ``None``.
    """
    if consistent is None or isinstance(consistent, bool):
        return consistent
    raise ConfigError(
        f"consistent must be True (read what the primary had when the call began), False "
        f"(any replica in rotation) or None (as connect(read_your_writes=...) says), "
        f"got {consistent!r}",
        setting="consistent",
    )


def current() -> Attempt | None:
    """The read operation the running code belongs to, if any."""
    return _attempt.get()


def note_failure(replica: int, *, conflict: bool) -> None:
    """Record that ``replica`` failed the current read in a way worth one retry elsewhere."""
    attempt = _attempt.get()
    if attempt is not None and attempt.failed is None:
        attempt.failed = replica
        attempt.conflict = conflict


def _failed(attempt: Attempt) -> int | None:
    return attempt.failed  # read anew: the retry's own failure, set by note_failure


def read_operation(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run ``fn`` again, once, when a replica it read from failed (see the module docstring)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _attempt.get() is not None:
            return await fn(*args, **kwargs)  # inside another read: that one retries
        attempt = Attempt()
        token = _attempt.set(attempt)
        try:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if attempt.failed is None:
                    raise
                logger.info("retrying a read on another server after: %s", exc)
            attempt.exclude.add(attempt.failed)
            attempt.failed = None
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if _failed(attempt) is not None and attempt.conflict:
                    raise ReplicaConflictError(
                        "a read was cancelled twice by standbys replaying the primary's "
                        f"changes (conflict with recovery, SQLSTATE 40001): {exc}. Retry it, "
                        "or on the standbys raise max_standby_streaming_delay or turn on "
                        "hot_standby_feedback (see docs/replicas.md).",
                        sqlstate="40001",
                    ) from exc
                raise
        finally:
            _attempt.reset(token)

    return wrapper
