"""Alembic migrations of the catalogue schema (package data; run by ``database.migrate``)."""
