"""Alembic migrations of the rishub index (SQLite in batch mode, PostgreSQL)."""
