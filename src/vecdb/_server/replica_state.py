"""What the replica router knows of each standby, and how a failed read is classified."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from .._config import env_str, redact_dsn
from .._errors import DRIVER_ERRORS, ConfigError, ConnectError, QueryTimeoutError
from .._typing import PoolConnection
from .pool import ConnectionPool

__all__ = [
    "UNREACHABLE",
    "Replica",
    "ReplicaStatus",
    "at_or_past",
    "failure",
    "is_closed",
    "lsn_value",
    "replica_dsns",
]

UNREACHABLE: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, TimeoutError)
"""What opening or using a connection to a server that went away raises."""
_DOWN_SQLSTATES = ("57P01", "57P02", "57P03")  # shutdown, crash, not accepting yet


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One replica as ``db.replicas()`` reports it.

    Attributes:
        dsn: Its DSN, password redacted.
        healthy: Whether it is in the rotation.
        reason: Why not, when it is not (``""`` when healthy).
        lag_bytes: WAL bytes between the primary's position and its replay; ``None``
            when unknown (down).
        lag_seconds: Seconds of replay lag: 0 when it replayed all it received.
        in_flight: Reads running on it now.
        reads: Reads it served since connect.
        conflicts: Reads on it that replay cancelled since connect ("conflict with
            recovery", SQLSTATE 40001). Each ran once more on another server; one
            that was already that second run raised `ReplicaConflictError`.
    """

    dsn: str
    healthy: bool
    reason: str
    lag_bytes: int | None
    lag_seconds: float | None
    in_flight: int
    reads: int
    conflicts: int = 0


@dataclasses.dataclass(slots=True)
class Replica:
    index: int
    dsn: str
    pool: ConnectionPool
    healthy: bool = False
    reason: str = "not checked yet"
    replay: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    in_flight: int = 0
    reads: int = 0
    conflicts: int = 0

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            dsn=redact_dsn(self.dsn),
            healthy=self.healthy,
            reason=self.reason,
            lag_bytes=self.lag_bytes,
            lag_seconds=self.lag_seconds,
            in_flight=self.in_flight,
            reads=self.reads,
            conflicts=self.conflicts,
        )


def lsn_value(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def at_or_past(lsn: str | None, target: str) -> bool:
    return lsn is not None and lsn_value(lsn) >= lsn_value(target)


def is_closed(conn: PoolConnection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg detached it from the pool: it closed
        return True


def failure(exc: BaseException) -> str | None:
    """``"conflict"``, ``"down"``, or ``None``: how a read failed, if another server might not."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = failure(inner)
            if found is not None:
                return found
        return None
    chain: list[BaseException] = []
    error: BaseException | None = exc
    while error is not None and len(chain) < 8:  # a failed cleanup hides the first error
        chain.append(error)
        error = error.__cause__ or error.__context__
    if any(isinstance(error, QueryTimeoutError) for error in chain):
        # A query that ran past its timeout says nothing of the server (its
        # cause, the builtin TimeoutError, is an OSError: not "down").
        return None
    for error in chain:
        sqlstate = getattr(error, "sqlstate", None) or ""
        if sqlstate == "40001":
            return "conflict"
        if (
            sqlstate.startswith("08")
            or sqlstate in _DOWN_SQLSTATES
            or isinstance(error, OSError | asyncpg.ConnectionDoesNotExistError)
        ):
            return "down"
    return "down" if isinstance(exc, ConnectError) else None


def replica_dsns(given: Sequence[str] | None) -> list[str]:
    """``replicas=`` as given, else ``$VECDB_REPLICA_DSNS`` split at commas.

    Raises:
        ConfigError: A DSN that is empty or not a string.
    """
    if given is None:
        given = (env_str("VECDB_REPLICA_DSNS") or "").split(",")
        given = [dsn.strip() for dsn in given if dsn.strip()]
    dsns = list(given)
    for dsn in dsns:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ConfigError(
                f"replicas= must be DSN strings of standbys, got {dsn!r}; e.g. "
                "replicas=['postgresql://app@standby1/app']",
                setting="replicas",
            )
    return dsns
