"""`ReplicaConfig`: when a read replica is healthy enough to serve, and what to do without one."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .._config import _Config

__all__ = ["ReplicaConfig"]


class ReplicaConfig(_Config):
    """How reads are spread over replicas. Frozen; validated on construction.

    Every field can come from a ``VECDB_REPLICA_<FIELD>`` environment variable
    (`ReplicaConfig.from_env()`, which `vecdb.connect()` uses when
    ``replica_config=None``). The replicas themselves are ``replicas=`` or
    ``$VECDB_REPLICA_DSNS``.

    Example:
        >>> ReplicaConfig(max_lag_seconds=5.0, fallback="raise").fallback
        'raise'

    Attributes:
        max_lag_bytes: A replica whose replay is more WAL bytes than this behind
            the primary leaves the rotation; ``None``: no bound in bytes.
        max_lag_seconds: A replica with more seconds of replay lag than this
            leaves the rotation (0 when it has replayed all it received); ``None``:
            no bound in seconds.
        fallback: With no replica in rotation, read from the ``"primary"``, or
            ``"raise"`` `ReplicaUnavailableError`.
        choice: ``"least_busy"`` (fewest reads in flight, ties in turn) or
            ``"round_robin"``.
        check_interval: Seconds between health checks of the replicas.
        consistency_wait: With ``read_your_writes``, seconds a read waits for a
            replica to replay the task's last write before it reads from the primary.
    """

    _env_prefix: ClassVar[str] = "VECDB_REPLICA_"

    max_lag_bytes: int | None = Field(default=16 * 1024 * 1024, ge=0)
    max_lag_seconds: float | None = Field(default=30.0, ge=0)
    fallback: Literal["primary", "raise"] = "primary"
    choice: Literal["least_busy", "round_robin"] = "least_busy"
    check_interval: float = Field(default=1.0, gt=0)
    consistency_wait: float = Field(default=1.0, ge=0)
