"""Bundled migration 1: the vector extension and the collection catalog."""

from __future__ import annotations

from vecdb._errors import MigrationError
from vecdb._migrate.base import Migration
from vecdb._typing import Connection


class Catalog(Migration):
    """Create the vector extension and the vecdb.collections catalog."""

    version = 1

    async def up(self, conn: Connection) -> None:
        """Create the extension, the schema and the catalog."""
        # The extension is left in place by down(): other schemas' data may use its types.
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute("CREATE SCHEMA IF NOT EXISTS vecdb")
        # One row per collection. The columns are what every collection has;
        # `spec` holds the full definition (fields, vectors, indexes, foreign
        # keys, partitioning, archive policy) so that later library versions can
        # add to it, and `spec_version` tells a bundled migration which layout
        # a row has when it upgrades every collection.
        await conn.execute(
            """
            CREATE TABLE vecdb.collections (
                name            text PRIMARY KEY
                                CHECK (name ~ '^[a-z_][a-z0-9_]*$' AND length(name) <= 48),
                schema_name     text NOT NULL,
                table_name      text NOT NULL,
                model           text NOT NULL,
                spec            jsonb NOT NULL,
                spec_version    integer NOT NULL DEFAULT 1 CHECK (spec_version >= 1),
                created_at      timestamptz NOT NULL DEFAULT now(),
                updated_at      timestamptz NOT NULL DEFAULT now(),
                library_version text NOT NULL,
                UNIQUE (schema_name, table_name)
            )
            """
        )
        await conn.execute(
            "COMMENT ON TABLE vecdb.collections IS "
            "'vecdb collection catalog: one row per collection; managed by vecdb'"
        )

    async def down(self, conn: Connection) -> None:
        """Drop the catalog (refused while collections exist); the extension stays."""
        count = await conn.fetchval("SELECT count(*) FROM vecdb.collections")
        if count:
            raise MigrationError(
                f"cannot roll back the vecdb catalog while {count} collection(s) exist; "
                "drop them first with db.drop_collection(name)",
                source="vecdb",
                version=1,
            )
        await conn.execute("DROP TABLE vecdb.collections")
