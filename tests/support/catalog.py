"""A comparable description of a database schema, read from the Postgres catalog."""

from __future__ import annotations

from typing import Any

import psycopg

# Everything that makes up the schema, minus the migration bookkeeping table.
_QUERIES = {
    "schemas": """
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')
        ORDER BY 1""",
    "columns": """
        SELECT table_schema, table_name, column_name, data_type, udt_name, is_nullable, column_default,
               is_identity, identity_generation, character_maximum_length, numeric_precision
        FROM information_schema.columns
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_name <> 'schema_migrations'
        ORDER BY 1, 2, 3""",
    "constraints": """
        SELECT n.nspname, t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid, true), c.condeferrable,
               c.condeferred
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.relname <> 'schema_migrations'
        ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'schema_migrations'
        ORDER BY 1, 2, 3""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind IN ('f', 'p')
        ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal ORDER BY 1, 2""",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""",
    "types": """
        SELECT n.nspname, t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND t.typtype IN ('e', 'd', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
        ORDER BY 1, 2""",
}


def describe_schema(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {name: [tuple(row) for row in conn.execute(query).fetchall()] for name, query in _QUERIES.items()}
