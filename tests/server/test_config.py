"""Configuration objects: frozen, validated, and readable from the environment."""

from __future__ import annotations

import pydantic
import pytest

import vecdb


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param("VECDB_POOL_MIN_SIZE", "-1", ">= 0", id="min-size-negative"),
        pytest.param("VECDB_POOL_MAX_SIZE", "0", ">= 1", id="max-size-zero"),
        pytest.param("VECDB_POOL_MAX_SIZE", "many", "an integer", id="max-size-not-a-number"),
        pytest.param("VECDB_POOL_ACQUIRE_TIMEOUT", "-5", "> 0", id="acquire-timeout-negative"),
        pytest.param("VECDB_POOL_COMMAND_TIMEOUT", "soon", "seconds", id="command-timeout-word"),
        pytest.param("VECDB_POOL_STATEMENT_TIMEOUT", "-1", "> 0", id="statement-timeout"),
        pytest.param("VECDB_POOL_MAX_LIFETIME", "-1", "> 0", id="max-lifetime"),
        pytest.param("VECDB_POOL_MAX_IDLE", "-1", ">= 0", id="max-idle"),
        pytest.param("VECDB_POOL_STATEMENT_CACHE_SIZE", "-3", ">= 0", id="statement-cache"),
        pytest.param("VECDB_POOL_SERVER_SETTINGS", "{not json", "JSON object", id="settings-json"),
        pytest.param("VECDB_POOL_SERVER_SETTINGS", "work_mem", "name=value", id="settings-pairs"),
        pytest.param("VECDB_MIGRATION_LOCK_WAIT", "0", "> 0", id="lock-wait"),
        pytest.param("VECDB_MIGRATION_DDL_RETRIES", "1000", "<= 100", id="ddl-retries"),
    ],
)
def test_invalid_environment_value_names_the_variable_and_the_range(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    config_type = vecdb.MigrationConfig if "MIGRATION" in variable else vecdb.PoolConfig
    with pytest.raises(vecdb.ConfigError) as caught:
        config_type.from_env()
    assert caught.value.setting == variable
    assert variable in str(caught.value)
    assert expected in str(caught.value)


async def test_connect_reports_a_bad_pool_variable_before_doing_anything(
    monkeypatch: pytest.MonkeyPatch, dsn: str
) -> None:
    monkeypatch.setenv("VECDB_POOL_MAX_SIZE", "zero")
    with pytest.raises(vecdb.ConfigError, match="VECDB_POOL_MAX_SIZE"):
        await vecdb.connect(dsn)


def test_environment_fills_fields_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECDB_POOL_MAX_SIZE", "7")
    monkeypatch.setenv("VECDB_POOL_STATEMENT_TIMEOUT", "2.5")
    monkeypatch.setenv("VECDB_POOL_COMMAND_TIMEOUT", "none")
    monkeypatch.setenv("VECDB_POOL_SERVER_SETTINGS", "work_mem=64MB, jit=off")
    config = vecdb.PoolConfig.from_env(min_size=2)
    assert (config.min_size, config.max_size, config.statement_timeout) == (2, 7, 2.5)
    assert config.command_timeout is None
    assert config.server_settings == {"work_mem": "64MB", "jit": "off"}


def test_min_size_above_max_size_is_refused() -> None:
    with pytest.raises(vecdb.ConfigError, match="must not exceed"):
        vecdb.PoolConfig(min_size=5, max_size=2)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(vecdb.ConfigError, match="max_sise"):
        vecdb.PoolConfig(max_sise=3)  # type: ignore[call-arg]


def test_configs_are_frozen() -> None:
    config = vecdb.PoolConfig()
    with pytest.raises(pydantic.ValidationError):
        config.max_size = 99  # type: ignore[misc]
