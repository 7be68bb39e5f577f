"""The public surface: what `import vecdb` offers, and nothing private leaking."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback

import vecdb


def _isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions and dunders."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_unique() -> None:
    assert list(vecdb.__all__) == sorted(set(vecdb.__all__), key=_isort_style)


def test_every_public_name_exists() -> None:
    missing = [name for name in vecdb.__all__ if not hasattr(vecdb, name)]
    assert missing == []


def test_private_modules_start_with_underscore() -> None:
    modules = [m.name for m in pkgutil.iter_modules(vecdb.__path__)]
    # vecdb.testing is the pytest plugin, imported by name (`-p vecdb.testing`).
    public = [
        name
        for name in modules
        if not name.startswith("_") and name not in {"migrations", "testing"}
    ]
    assert public == []


def test_every_error_derives_from_the_one_base() -> None:
    errors = [getattr(vecdb, n) for n in vecdb.__all__ if n.endswith(("Error", "Timeout"))]
    assert errors
    assert all(issubclass(cls, vecdb.VecdbError) for cls in errors)


def test_version_comes_from_package_metadata() -> None:
    assert vecdb.__version__ == importlib.metadata.version("vecdb")


def test_public_classes_and_functions_read_as_vecdb() -> None:
    own = [
        name
        for name in vecdb.__all__
        if (inspect.isclass(obj := getattr(vecdb, name)) or inspect.isfunction(obj))
        and obj.__module__.split(".")[0] == "vecdb"
    ]
    assert "ConfigError" in own
    assert "connect" in own
    assert [n for n in own if getattr(vecdb, n).__module__ != "vecdb"] == []


def test_a_traceback_names_the_public_class() -> None:
    line = traceback.format_exception_only(vecdb.ConfigError("bad"))[-1]
    assert line.startswith("vecdb.ConfigError: bad")


def test_every_timeout_is_a_vecdb_timeout_error() -> None:
    timeouts = [
        vecdb.PoolTimeoutError,
        vecdb.QueryTimeoutError,
        vecdb.LockTimeoutError,
        vecdb.MigrationLockTimeout,
    ]
    assert all(issubclass(cls, vecdb.TimeoutError) for cls in timeouts)
    # Not Python's TimeoutError (an OSError): cleanup code catching OSError must not eat it.
    assert not issubclass(vecdb.TimeoutError, OSError)
    assert issubclass(vecdb.QueryTimeoutError, vecdb.DatabaseError)
    assert issubclass(vecdb.MigrationLockTimeout, vecdb.MigrationError)
