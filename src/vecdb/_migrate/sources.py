"""Migration sources: where migrations come from, loaded and validated at start.

A source is a named, independent version sequence 1..N. The bundled source is
``vecdb`` (``vecdb.migrations``); applications add their own as importable
packages (every `Migration` subclass defined in the package's modules) or as
classes. A malformed source (duplicate versions, gaps, a class without
``up``) is refused before anything touches the database.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._errors import MigrationChainError
from .base import Migration, checksum, describe, is_reversible

__all__ = ["BUNDLED_SOURCE", "MigrationSpec", "Source", "load_package", "load_sources"]

BUNDLED_SOURCE = "vecdb"
_DEFAULT_APP_SOURCE = "app"
_SOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,62}$")

MigrationsArg = Iterable[str | type[Migration]]


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    """One migration as the engine sees it."""

    source: str
    version: int
    description: str
    checksum: str
    transactional: bool
    reversible: bool
    cls: type[Migration]


@dataclass(slots=True)
class Source:
    """A validated sequence of migrations, ``migrations[i].version == i + 1``."""

    name: str
    migrations: list[MigrationSpec] = field(default_factory=list)

    @property
    def head(self) -> int:
        """The newest version this code knows (0 for an empty source)."""
        return len(self.migrations)

    def get(self, version: int) -> MigrationSpec:
        """The migration at ``version`` (1-based)."""
        return self.migrations[version - 1]


def _classes_in(module: types.ModuleType) -> list[type[Migration]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Migration)
        and value is not Migration
        and value.__module__ == module.__name__
    ]


def _load_package(name: str) -> tuple[str, list[type[Migration]]]:
    try:
        package = importlib.import_module(name)
    except ImportError as exc:
        raise MigrationChainError(
            f"cannot import migration package {name!r}: {exc}. Pass an importable package "
            "name (e.g. 'myapp.migrations') or Migration subclasses.",
            source=name,
        ) from exc
    source = getattr(package, "SOURCE", None) or name
    classes = _classes_in(package)
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        module = importlib.import_module(f"{name}.{info.name}")
        classes.extend(_classes_in(module))
    return str(source), classes


def _spec(source: str, cls: type[Migration]) -> MigrationSpec:
    version = getattr(cls, "version", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MigrationChainError(
            f"migration {cls.__module__}.{cls.__qualname__} in source {source!r} has "
            f"version={version!r}; set `version` to an integer >= 1",
            source=source,
        )
    if "up" not in {name for klass in cls.__mro__[:-2] for name in vars(klass)}:
        raise MigrationChainError(
            f"migration {cls.__qualname__} (source {source!r}, version {version}) does not "
            "define `async def up(self, conn)`",
            source=source,
        )
    return MigrationSpec(
        source=source,
        version=version,
        description=describe(cls),
        checksum=checksum(cls),
        transactional=bool(cls.transactional),
        reversible=is_reversible(cls),
        cls=cls,
    )


def _validate(name: str, classes: Sequence[type[Migration]]) -> Source:
    specs = sorted((_spec(name, cls) for cls in classes), key=lambda s: s.version)
    versions = [s.version for s in specs]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    missing = sorted(set(range(1, max(versions, default=0) + 1)) - set(versions))
    if duplicates or missing:
        parts = []
        if duplicates:
            owners = [
                f"{v}: {', '.join(s.cls.__qualname__ for s in specs if s.version == v)}"
                for v in duplicates
            ]
            parts.append(f"duplicate versions ({'; '.join(owners)})")
        if missing:
            parts.append(f"missing versions {missing}")
        raise MigrationChainError(
            f"migration source {name!r} is not a sequence 1..N: {' and '.join(parts)}. "
            "Number migrations 1, 2, 3, ... without gaps or repeats.",
            source=name,
            duplicates=duplicates,
            missing=missing,
        )
    return Source(name=name, migrations=specs)


def load_package(name: str) -> Source:
    """Load and validate one application package, as ``connect(migrations=[name])`` does.

    Raises:
        MigrationChainError: As `load_sources`.
    """
    source, classes = _load_package(name)
    return _validate(source, classes)


def load_sources(
    migrations: MigrationsArg = (), *, bundled: str = "vecdb.migrations"
) -> list[Source]:
    """Load and validate the bundled source and the application's, bundled first.

    Args:
        migrations: Package names and/or `Migration` subclasses.
        bundled: The bundled package (tests may point it elsewhere).

    Raises:
        MigrationChainError: A source has duplicate or missing versions, a class
            without ``up`` or ``version``, or a package cannot be imported.
    """
    grouped: dict[str, list[type[Migration]]] = {}
    _, bundled_classes = _load_package(bundled)
    grouped[BUNDLED_SOURCE] = bundled_classes
    for item in migrations:
        if isinstance(item, str):
            name, classes = _load_package(item)
        elif isinstance(item, type) and issubclass(item, Migration):
            name, classes = (item.source or _DEFAULT_APP_SOURCE), [item]
        else:
            raise MigrationChainError(
                f"migrations= takes package names and Migration subclasses, got {item!r}"
            )
        if name == BUNDLED_SOURCE:
            raise MigrationChainError(
                f"the source name {BUNDLED_SOURCE!r} is reserved for vecdb's bundled "
                "migrations; set SOURCE in your package or `source` on your classes",
                source=name,
            )
        if not _SOURCE_NAME.match(name):
            raise MigrationChainError(
                f"invalid migration source name {name!r}: use letters, digits, '_', '.', '-' "
                "(at most 63 characters, starting with a letter or '_')",
                source=name,
            )
        bucket = grouped.setdefault(name, [])
        bucket.extend(cls for cls in classes if cls not in bucket)
    return [_validate(name, classes) for name, classes in grouped.items()]
