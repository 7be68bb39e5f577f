"""An archived table's ordinary columns made the live table's again, or the difference refused.

The archive is detached from the collection, so an evolve (a new optional
field) or the application's migration (a dropped field, a changed type) does
not reach it: an archived table keeps the columns of its time. ATTACH refuses
a table whose columns differ ("child table is missing column"), and reads or
moves over both tables need the same columns. `plan` compares the two and
says what it takes, `apply` does it (inside the caller's transaction):

- a column the live table gained is added with the live column's default
  (NULL unless a migration gave it one): what the live rows of that time
  hold. A NOT NULL column without a default is refused: the archived rows
  have no value for it;
- a column the live table lost is dropped when none of the archived rows
  holds a value in it (nothing is lost), else refused;
- a column whose type changed is converted when every archived value comes
  back the same through the new type and back (bigint to double precision,
  text holding numbers to bigint), else refused (1.5 to bigint, 'abc' to
  bigint, a type with no cast);
- a column the live table made NOT NULL is made so when no archived row is
  NULL in it, else refused; one it made nullable is made nullable.

Refusals are found before anything changes (`Conformance.refusals`). FullText
columns are generated from the text, and are `fulltext.conform`'s.

Types and defaults are written into the DDL as the server prints them
(``format_type``, ``pg_get_expr``): the catalog's own rendering of what the
live table already has, never a caller's text. Column names are quoted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .._errors import DatabaseError, translating
from .._identifiers import quote_ident
from .._typing import AnyConnection

__all__ = ["Column", "Conformance", "apply", "columns", "held", "plan", "projection"]


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One ordinary (not generated) column of a table, as the catalog has it."""

    name: str
    type: str  # format_type(): with its modifier, e.g. vector(4), as the server prints it
    notnull: bool
    default: str | None  # pg_get_expr() of its default, or None


_COLUMNS = """
SELECT t.rel, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM unnest($1::text[]) AS t(rel)
JOIN pg_attribute a ON a.attrelid = t.rel::regclass
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY t.rel, a.attnum
"""


async def columns(conn: AnyConnection, tables: Sequence[str]) -> dict[str, dict[str, Column]]:
    """The ordinary columns of each table (qualified names, as given), in table order."""
    found: dict[str, dict[str, Column]] = {table: {} for table in tables}
    for row in await conn.fetch(_COLUMNS, list(tables)):
        found[row["rel"]][row["name"]] = Column(
            row["name"], row["type"], row["notnull"], row["default"]
        )
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Conformance:
    """What makes ``table`` carry the live table's columns, or why it cannot.

    Attributes:
        table: The archived table (qualified).
        add: Live columns it lacks.
        drop: Its columns the live table lacks, holding no value.
        retype: ``(archived, live)`` pairs of columns whose type changed, each
            value surviving the round trip.
        not_null: Columns to make NOT NULL (no archived row is NULL there).
        nullable: Columns to make nullable.
        problems: Why it cannot be done, as ``(kind, line)``: the kind is
            ``"add"``, ``"retype"``, ``"not_null"`` or ``"held"`` (a dropped
            field holding values), the line names the field and what to do.
        archived: The table's columns before any change.
    """

    table: str
    add: tuple[Column, ...] = ()
    drop: tuple[str, ...] = ()
    retype: tuple[tuple[Column, Column], ...] = ()
    not_null: tuple[str, ...] = ()
    nullable: tuple[str, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()
    archived: Mapping[str, Column] = dataclasses.field(default_factory=dict)

    @property
    def refusals(self) -> tuple[str, ...]:
        """Every problem's line: nothing may change while there is one."""
        return tuple(line for _, line in self.problems)

    @property
    def changes(self) -> bool:
        """Whether `apply` would change the table."""
        return bool(self.add or self.drop or self.retype or self.not_null or self.nullable)

    def hashed_as(self) -> dict[str, str]:
        """Column to archived type, for columns whose value `apply` drops or converts.

        The checksum taken when the table was archived covers them in that type:
        after `apply` a dropped one is hashed as a NULL of it, a converted one
        cast back to it (`checksums.checksum`'s ``as_type``).
        """
        kept = {archived.name: archived.type for archived, _ in self.retype}
        return {**kept, **{name: self.archived[name].type for name in self.drop}}


async def _count(conn: AnyConnection, sql: str) -> int | None:
    """``count(*)`` of vecdb's own ``sql``, or ``None`` when the server refuses it (a bad cast).

    In a savepoint: a refused cast must not abort the caller's transaction.
    """
    try:
        with translating():
            async with conn.transaction():
                return int(await conn.fetchval(sql))
    except DatabaseError:
        return None


async def held(conn: AnyConnection, table: str, names: Sequence[str]) -> dict[str, int]:
    """Of ``table``'s columns ``names``, those holding values, with how many rows hold one."""
    found = {}
    for name in names:
        n = await _count(
            conn, f"SELECT count(*) FROM {table} t WHERE t.{quote_ident(name)} IS NOT NULL"
        )
        if n:
            found[name] = n
    return found


async def plan(
    conn: AnyConnection, table: str, live: str, *, keep_extra: bool = False
) -> Conformance:
    """Compare ``table``'s ordinary columns with ``live``'s; changes nothing.

    ``keep_extra``: columns the live table lacks are kept (an unpartitioned
    collection's row archive, never attached), and their values checked by
    the restore that would leave them behind.
    """
    found = await columns(conn, [table, live])
    mine, theirs = found[table], found[live]
    add, drop, retype, not_null, nullable = [], [], [], [], []
    problems: list[tuple[str, str]] = []
    for name, want in theirs.items():
        have = mine.get(name)
        col = quote_ident(name)
        if have is None:
            if want.notnull and want.default is None:
                problems.append(
                    (
                        "add",
                        f"field {name!r} is NOT NULL without a default in the live table, and the "
                        "archived rows have no value for it: give it a default (ALTER TABLE … "
                        f"ALTER COLUMN {name} SET DEFAULT …) or make it optional, then restore "
                        "again",
                    )
                )
            add.append(want)
            continue
        if have.type != want.type:
            changed = await _count(
                conn,
                f"SELECT count(*) FROM {table} t WHERE "
                f"t.{col}::{want.type}::{have.type} IS DISTINCT FROM t.{col}",
            )
            if changed is None or changed:
                why = (
                    f"{changed} archived values would change"
                    if changed
                    else "archived values do not convert"
                )
                problems.append(
                    (
                        "retype",
                        f"field {name!r} is {want.type} in the live table but {have.type} in the "
                        f"archive, and {why} ({have.type} -> {want.type}): convert the archived "
                        f"column yourself (ALTER TABLE {table} ALTER COLUMN {name} TYPE … "
                        "USING …), or export_archive() it and restore(from_file=) after fixing "
                        "the file",
                    )
                )
            retype.append((have, want))
        if want.notnull and not have.notnull:
            nulls = await _count(conn, f"SELECT count(*) FROM {table} t WHERE t.{col} IS NULL")
            if nulls:
                problems.append(
                    (
                        "not_null",
                        f"field {name!r} is NOT NULL in the live table but {nulls} archived rows "
                        f"are NULL there: fill them (UPDATE {table} SET {name} = … WHERE {name} IS "
                        "NULL) or make the field optional again, then restore",
                    )
                )
            not_null.append(name)
        elif have.notnull and not want.notnull:
            nullable.append(name)
    extra = [name for name in mine if name not in theirs]
    for name, rows in (await held(conn, table, extra)).items():
        problems.append((
            "held",
            f"field {name!r} was dropped from the collection since this was archived, and "
            f"{rows} archived rows hold a value in it: restoring would lose them. Add the "
            "field back (optional) with evolve=True and restore (then drop it in a "
            "migration if you mean to)",
        ))  # fmt: skip
    if not keep_extra:
        drop.extend(extra)
    return Conformance(
        table=table,
        add=tuple(add),
        drop=tuple(drop),
        retype=tuple(retype),
        not_null=tuple(not_null),
        nullable=tuple(nullable),
        problems=tuple(problems),
        archived=mine,
    )


async def apply(conn: AnyConnection, planned: Conformance) -> None:
    """Make the table match (see the module docstring); run in the caller's transaction."""
    table = planned.table
    for name in planned.drop:
        await conn.execute(f"ALTER TABLE {table} DROP COLUMN {quote_ident(name)}")
    for have, want in planned.retype:
        col = quote_ident(have.name)
        await conn.execute(
            f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {want.type} USING {col}::{want.type}"
        )
    for name in planned.nullable:
        await conn.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_ident(name)} DROP NOT NULL")
    for name in planned.not_null:
        await conn.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_ident(name)} SET NOT NULL")
    for want in planned.add:
        default = "" if want.default is None else f" DEFAULT {want.default}"
        null = " NOT NULL" if want.notnull else ""
        await conn.execute(
            f"ALTER TABLE {table} ADD COLUMN {quote_ident(want.name)} {want.type}{default}{null}"
        )


def projection(
    names: Sequence[str], live: Mapping[str, Column], table: Mapping[str, Column]
) -> str:
    """A ``SELECT`` list of ``names`` over a table with columns ``table``, in the live types.

    A column the table lacks reads as NULL of the live type (what an evolve
    gave the live rows of that time), one of another type is cast to it.
    """
    items = []
    for name in names:
        col = quote_ident(name)
        have, want = table.get(name), live[name]
        if have is None:
            items.append(f"NULL::{want.type} AS {col}")
        elif have.type != want.type:
            items.append(f"{col}::{want.type} AS {col}")
        else:
            items.append(col)
    return ", ".join(items)
