"""Alembic revisions of the catalogue schema, oldest first (``0001_initial``, ...)."""
