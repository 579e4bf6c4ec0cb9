"""Postgres: where the database is, the connection pool, migrations and named queries."""
