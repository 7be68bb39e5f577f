"""The public surface: what `import vecdb` offers, and nothing private leaking."""

from __future__ import annotations

import importlib
import pkgutil

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
    public = [name for name in modules if not name.startswith("_") and name != "migrations"]
    assert public == []


def test_every_error_derives_from_the_one_base() -> None:
    errors = [getattr(vecdb, n) for n in vecdb.__all__ if n.endswith(("Error", "Timeout"))]
    assert errors
    assert all(issubclass(cls, vecdb.VecdbError) for cls in errors)


def test_version_comes_from_package_metadata() -> None:
    assert vecdb.__version__ == importlib.metadata.version("vecdb")
