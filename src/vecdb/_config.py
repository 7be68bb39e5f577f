"""Frozen, validated configuration objects, and the one place environment variables are read.

Environment variables (all optional):

============================  ==============================================
``VECDB_DSN``                 the database; unset: the embedded server
``VECDB_MIGRATION_DSN``       a direct connection for migrations (PgBouncer)
``VECDB_DATA_DIR``            the embedded server's data directory
``VECDB_POOL_<FIELD>``        any `PoolConfig` field, e.g. ``VECDB_POOL_MAX_SIZE=20``
``VECDB_MIGRATION_<FIELD>``   any `MigrationConfig` field
``VECDB_SERVER_<NAME>``       a setting of the embedded server, overriding vecdb's
                              tuned value, e.g. ``VECDB_SERVER_WORK_MEM=64MB``; a
                              double underscore stands for a dot
                              (``VECDB_SERVER_AUTO_EXPLAIN__LOG_MIN_DURATION=5s``)
``VECDB_TUNE``                ``off``: start the embedded server on PostgreSQL's
                              stock settings (plus ``VECDB_SERVER_*``); default ``on``
``VECDB_TUNE_MEMORY``         the memory the embedded server is tuned for, e.g.
                              ``4GB`` (default: the cgroup's limit, else the host's)
``VECDB_TUNE_CORES``          likewise the cores, e.g. ``2`` or ``1.5``
============================  ==============================================
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

import annotated_types
import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._errors import ConfigError, VecdbError

__all__ = [
    "MigrationConfig",
    "PoolConfig",
    "TuningEnv",
    "check_int",
    "env_str",
    "redact_dsn",
    "server_settings_from_env",
    "tuning_from_env",
]

_SERVER_PREFIX = "VECDB_SERVER_"
_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def check_int(
    value: object,
    low: int,
    high: int | None = None,
    *,
    name: str,
    why: str = "",
    setting: str | None = None,
    error: type[VecdbError] = ConfigError,
) -> int:
    """``value`` if it is an int (not a bool) in ``low..high``, else ``error`` naming ``name``.

    Args:
        value: The value to check.
        low: The smallest value allowed.
        high: The largest, or ``None`` for no bound.
        name: What the value is, for the message.
        why: Said after the range, e.g. ``" (pgvector's limit)"``.
        setting: A `ConfigError`'s ``setting``; default ``name``.
        error: The error class to raise.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        message = f"{name} must be an int {span}{why}, got {value!r}"
        if error is ConfigError:
            raise ConfigError(message, setting=setting or name)
        raise error(message)
    return value


def env_str(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return a non-empty environment variable, or ``None``."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def server_settings_from_env(
    environ: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, str]]:
    """The ``VECDB_SERVER_<NAME>`` variables as ``{setting: (value, variable)}``.

    The name is lower-cased, and ``__`` becomes a dot (no PostgreSQL setting has a
    double underscore): ``VECDB_SERVER_PG_STAT_STATEMENTS__MAX`` is
    ``pg_stat_statements.max``. Names are checked against the server later.
    """
    env = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    for variable in sorted(env):
        if variable.upper().startswith(_SERVER_PREFIX) and len(variable) > len(_SERVER_PREFIX):
            value = env_str(variable, env)
            if value is not None:
                name = variable[len(_SERVER_PREFIX) :].lower().replace("__", ".")
                found[name] = (value, variable)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class TuningEnv:
    """The ``VECDB_TUNE*`` variables, as given (sizes are parsed by the tuner, naming them).

    Attributes:
        enabled: ``VECDB_TUNE`` (default on): tune the embedded server when vecdb starts it.
        memory: ``VECDB_TUNE_MEMORY``, e.g. ``"4GB"``.
        cores: ``VECDB_TUNE_CORES``, e.g. ``"2"``.
    """

    enabled: bool = True
    memory: str | None = None
    cores: str | None = None


def tuning_from_env(environ: Mapping[str, str] | None = None) -> TuningEnv:
    """Read ``VECDB_TUNE``, ``VECDB_TUNE_MEMORY`` and ``VECDB_TUNE_CORES``.

    Raises:
        ConfigError: ``VECDB_TUNE`` is neither on nor off.
    """
    enabled = (env_str("VECDB_TUNE", environ) or "on").lower()
    if enabled not in _TRUE + _FALSE:
        raise ConfigError(
            f"invalid VECDB_TUNE={enabled!r}: expected on or off (also true/false, yes/no, 1/0)",
            setting="VECDB_TUNE",
        )
    return TuningEnv(
        enabled=enabled in _TRUE,
        memory=env_str("VECDB_TUNE_MEMORY", environ),
        cores=env_str("VECDB_TUNE_CORES", environ),
    )


# Query parameters of a DSN that hold secrets (libpq's names; asyncpg reads them too).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redact_dsn(dsn: str) -> str:
    """The DSN with its password masked, for messages, logs and repr.

    Both places a DSN may carry one are masked: ``user:password@`` and a
    ``?password=`` (or ``sslpassword=``) parameter.
    """
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    items = parts.query.split("&") if parts.query else []
    query = "&".join(
        f"{item.split('=', 1)[0]}=***"
        if item.split("=", 1)[0].lower() in _SECRET_PARAMETERS
        else item
        for item in items
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return dsn
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _describe(field: pydantic.fields.FieldInfo) -> str:
    """Say in words which values a field accepts ("a number > 0", "an integer >= 1")."""
    annotation = field.annotation
    text = {int: "an integer", float: "a number (seconds)", str: "a string"}.get(
        annotation,  # type: ignore[arg-type]
        "a value",
    )
    if annotation == dict[str, str]:
        text = 'a JSON object or "name=value,name=value"'
    if annotation == (float | None):
        text = "a number (seconds), or 'none' to disable"
    for meta in field.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None and isinstance(meta, annotated_types.BaseMetadata):
                text += f" {symbol} {bound}"
    return text


class _Config(BaseModel):
    """Shared behaviour: frozen, strict about unknown keys, ConfigError on bad values."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    _env_prefix: ClassVar[str]

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise self._config_error(exc) from None

    @classmethod
    def _config_error(cls, exc: pydantic.ValidationError) -> ConfigError:
        lines = []
        setting = None
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            field = cls.model_fields.get(name)
            if error["type"] == "extra_forbidden":
                setting = setting or name
                lines.append(
                    f"{cls.__name__}: unknown setting {name!r}; valid settings: "
                    f"{', '.join(cls.model_fields)}"
                )
                continue
            if field is None:
                lines.append(f"{cls.__name__}: {error['msg'].removeprefix('Value error, ')}")
                continue
            setting = setting or name
            lines.append(
                f"{cls.__name__}: invalid {name}={error.get('input')!r}: {error['msg']}; "
                f"expected {_describe(field)}"
            )
        return ConfigError("\n".join(lines), setting=setting)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build the config from ``<PREFIX><FIELD>`` environment variables, then ``overrides``.

        Raises:
            ConfigError: A variable holds a value outside the field's range; the
                message names the variable and the accepted values.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            variable = f"{cls._env_prefix}{name.upper()}"
            raw = env_str(variable, env)
            if raw is None:
                continue
            annotation: Any = field.annotation
            if field.metadata:
                annotation = Annotated[annotation, *field.metadata]
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
            try:
                values[name] = adapter.validate_python(_parse_env(raw, field))
            except pydantic.ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise ConfigError(
                    f"invalid {variable}={raw!r}: {message}; expected {_describe(field)}",
                    setting=variable,
                ) from None
        return cls(**{**values, **overrides})


def _parse_env(raw: str, field: pydantic.fields.FieldInfo) -> Any:
    if field.annotation == (float | None) and raw.lower() in {"none", "off", "0"}:
        return None if raw.lower() != "0" else 0.0
    if field.annotation == dict[str, str]:
        if raw.startswith("{"):
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw  # let validation report it with the variable's name
        pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            return raw
        return {key.strip(): value.strip() for key, value in pairs}
    return raw


class PoolConfig(_Config):
    """How vecdb's asyncpg pool behaves. Frozen; validated on construction.

    Every field can come from a ``VECDB_POOL_<FIELD>`` environment variable
    (`PoolConfig.from_env()`, which `vecdb.connect()` uses when ``pool=None``).

    Example:
        >>> PoolConfig(max_size=20, statement_timeout=5.0).max_size
        20

    Attributes:
        min_size: Connections opened up front and kept.
        max_size: Upper bound on open connections.
        acquire_timeout: Seconds to wait for a free connection before `PoolTimeoutError`.
        command_timeout: Client-side default timeout (seconds) of each query; ``None``: none.
        statement_timeout: Server-side ``statement_timeout`` in seconds; ``None``: the server's.
        max_lifetime: Seconds after which a connection is replaced when next acquired
            (spreads load after a failover, bounds server-side memory growth); ``None``: never.
        max_idle: Seconds an idle connection is kept before it is closed (0: forever).
        statement_cache_size: asyncpg's prepared statement cache per connection; 0 for
            PgBouncer in transaction mode.
        application_name: Shown in ``pg_stat_activity``.
        server_settings: Extra ``SET`` values for every connection, e.g. ``{"work_mem": "64MB"}``.
        pgbouncer: The DSN goes through PgBouncer in transaction pooling mode: no
            prepared statement cache (``statement_cache_size`` becomes 0), no
            startup settings (PgBouncer refuses them), migrations only through
            ``migration_dsn``, and operations that need a session of their own
            (``create_index``, ``repartition``) refused. See docs/deployment.md.
    """

    _env_prefix: ClassVar[str] = "VECDB_POOL_"

    min_size: int = Field(default=1, ge=0, le=1000)
    max_size: int = Field(default=10, ge=1, le=1000)
    acquire_timeout: float = Field(default=30.0, gt=0)
    command_timeout: float | None = Field(default=60.0, gt=0)
    statement_timeout: float | None = Field(default=None, gt=0)
    max_lifetime: float | None = Field(default=3600.0, gt=0)
    max_idle: float = Field(default=300.0, ge=0)
    statement_cache_size: int = Field(default=100, ge=0)
    application_name: str = Field(default="vecdb", min_length=1, max_length=63)
    server_settings: dict[str, str] = Field(default_factory=dict)
    pgbouncer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_cache_behind_pgbouncer(cls, data: Any) -> Any:
        # Transaction pooling hands each transaction to any server connection, where
        # a statement asyncpg prepared on another one does not exist.
        if isinstance(data, dict) and data.get("pgbouncer") is True:
            data.setdefault("statement_cache_size", 0)
        return data

    @model_validator(mode="after")
    def _check_sizes(self) -> Self:
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})"
            )
        if self.pgbouncer:
            self._check_pgbouncer()
        return self

    def _check_pgbouncer(self) -> None:
        if self.statement_cache_size:
            raise ValueError(
                f"statement_cache_size={self.statement_cache_size} cannot work through "
                "PgBouncer in transaction mode (a prepared statement lives on one server "
                "connection); leave it unset with pgbouncer=True (it becomes 0)"
            )
        startup = sorted(
            [*(["statement_timeout"] if self.statement_timeout is not None else []),
             *self.server_settings]
        )  # fmt: skip
        if startup:
            raise ValueError(
                f"{', '.join(startup)}: PgBouncer refuses session settings sent at "
                "connection start (unsupported startup parameter), and a SET would leak to "
                "other clients in transaction mode; set them on the role instead "
                "(ALTER ROLE app SET statement_timeout = '5s'), then leave them out here"
            )


class MigrationConfig(_Config):
    """How migrations are applied. Frozen; every field also reads ``VECDB_MIGRATION_<FIELD>``.

    Example:
        >>> MigrationConfig(lock_wait=5.0, ddl_lock_timeout=2.0).ddl_retries
        5

    Attributes:
        lock_wait: Seconds to wait for the migration advisory lock before
            `MigrationLockTimeout`.
        ddl_lock_timeout: ``lock_timeout`` for each migration's statements, so DDL
            never queues behind a long transaction (and blocks every reader behind it).
        ddl_retries: How many times a migration that hit ``lock_timeout`` is retried.
        retry_backoff: First retry delay in seconds; doubles each time, with jitter.
    """

    _env_prefix: ClassVar[str] = "VECDB_MIGRATION_"

    lock_wait: float = Field(default=60.0, gt=0)
    ddl_lock_timeout: float = Field(default=5.0, gt=0)
    ddl_retries: int = Field(default=5, ge=0, le=100)
    retry_backoff: float = Field(default=0.5, ge=0)
