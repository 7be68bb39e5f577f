"""Output of the ``vecdb`` command: plain-text tables, JSON, exit codes; the command type."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .._server.database import Database

__all__ = [
    "BAR_WIDTH",
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_OK",
    "AddCommand",
    "Command",
    "Outcome",
    "bar",
    "duration",
    "short",
    "table",
    "to_json",
    "when",
]

EXIT_OK, EXIT_ERROR, EXIT_CHECK_FAILED = 0, 1, 3
_ERROR_WIDTH = 60


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a command produced: data for ``--json``, text for humans, and the exit code."""

    data: Any
    text: str
    code: int = EXIT_OK


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Plain-text columns, padded to the widest cell; columns in ``right`` are right-aligned."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    if not text:
        return ""
    first = text.strip().splitlines()[0]
    return first if len(first) <= width else first[: width - 3] + "..."


def _json_default(value: object) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def to_json(data: Any) -> str:
    if isinstance(data, list):
        data = [
            dataclasses.asdict(d) if dataclasses.is_dataclass(d) and not isinstance(d, type) else d
            for d in data
        ]
    return json.dumps(data, default=_json_default, indent=2)


Command: TypeAlias = Callable[["Database", argparse.Namespace], Awaitable[Outcome]]
"""A command: runs against a connected database, returns its `Outcome`."""
AddCommand: TypeAlias = Callable[[str, Command, str], argparse.ArgumentParser]
"""Registers a command on the parser: ``(name, function, help) -> its subparser``."""


BAR_WIDTH = 30


def bar(fraction: float | None, message: str) -> str:
    """A progress line: ``[#####.....]  50% message`` (``?%`` when the total is unknown)."""
    filled = round(BAR_WIDTH * (fraction or 0.0))
    percent = "  ?%" if fraction is None else f"{fraction:4.0%}"
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent} {message}"
