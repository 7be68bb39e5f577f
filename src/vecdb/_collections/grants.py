"""The GRANTs that make a least-privilege runtime role for vecdb (``vecdb grant ROLE``).

A runtime role reads vecdb's catalog and migration state, and reads and writes
the rows of every collection; it changes no schema. With these grants it can
``connect(migrate="check")``, open collections, search, upsert, insert, delete
and count (also over archived rows); creating or dropping collections, index
builds, archive, restore, repartition and migrations stay with the owner role
(the one that runs this), and give the runtime role a clear permission error.

The statements are built from the catalog as it is now: the schemas of the
collections, their tables and id registries. ``ALTER DEFAULT PRIVILEGES`` covers
tables the owner creates later in those schemas (new collections, partitions,
archived partitions), so the grants need not be run again for each.
"""

from __future__ import annotations

from .._errors import ConfigError
from .._identifiers import qualified, quote_ident, validate_identifier
from .._schema.ddl import registry_name
from .._typing import AnyConnection
from . import catalog as _catalog
from .archive_records import ARCHIVE_SCHEMA

__all__ = ["CATALOG_SCHEMA", "runtime_grants"]

CATALOG_SCHEMA = "vecdb"
_DML = "SELECT, INSERT, UPDATE, DELETE"
_MAINTAIN_SINCE = 170000  # PostgreSQL 17: the MAINTAIN privilege (ANALYZE without owning)

_FACTS = """
SELECT current_database() AS database, current_user AS owner,
       current_setting('server_version_num')::int AS version,
       EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AS role_exists,
       EXISTS (SELECT FROM pg_namespace WHERE nspname = $2) AS archive_exists
"""


async def runtime_grants(conn: AnyConnection, role: str) -> list[str]:
    """The statements that give ``role`` what a runtime role needs, in the order to run them.

    Raises:
        ConfigError: The role name breaks the identifier rule, or no such role exists.
        MigrationError: The database was never migrated (no catalog).
    """
    validate_identifier(role, what="role name")
    facts = await conn.fetchrow(_FACTS, role, ARCHIVE_SCHEMA)
    assert facts is not None  # noqa: S101 - a SELECT without FROM returns one row
    if not facts["role_exists"]:
        raise ConfigError(
            f"role {role!r} does not exist; create it first (CREATE ROLE {role} LOGIN "
            f"PASSWORD '...'), then run `vecdb grant {role}` again",
            setting="role",
        )
    grantee, owner = quote_ident(role), quote_ident(facts["owner"])
    specs = [_catalog.stored_spec(info) for info in await _catalog.list_all(conn)]
    schemas = sorted({spec.schema for spec in specs} | {"public"})
    tables = [
        qualified(spec.schema, name)
        for spec in specs
        for name in (spec.table, *([registry_name(spec)] if spec.partitioning else []))
    ]
    dml = _DML + (", MAINTAIN" if facts["version"] >= _MAINTAIN_SINCE else "")
    # TEMPORARY: upserts stage their rows in a temporary table (ON COMMIT DROP).
    statements = [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {quote_ident(facts['database'])} TO {grantee}",
        f"GRANT USAGE ON SCHEMA {quote_ident(CATALOG_SCHEMA)} TO {grantee}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {quote_ident(CATALOG_SCHEMA)} TO {grantee}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {quote_ident(CATALOG_SCHEMA)} "
        f"GRANT SELECT ON TABLES TO {grantee}",
    ]
    for schema in schemas:
        statements += [
            f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {grantee}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {quote_ident(schema)} "
            f"GRANT {dml} ON TABLES TO {grantee}",
        ]
    statements += [f"GRANT {dml} ON TABLE {table} TO {grantee}" for table in tables]
    if facts["archive_exists"]:
        # Archived rows are read (include_archived=True), never written by the runtime.
        archive = quote_ident(ARCHIVE_SCHEMA)
        statements += [
            f"GRANT USAGE ON SCHEMA {archive} TO {grantee}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {archive} TO {grantee}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {archive} "
            f"GRANT SELECT ON TABLES TO {grantee}",
        ]
    return statements
