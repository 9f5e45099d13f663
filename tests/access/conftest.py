"""Fixtures of the access tests: the catalogue fixtures (SQLite and PostgreSQL) plus a fresh
migrated catalogue per test for the access log, which the shared fixture cannot empty (a
trigger refuses TRUNCATE on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from biobank.catalog import Catalog
from tests.catalog.conftest import (  # noqa: F401 - fixtures, registered by being imported
    catalog,
    database_url,
    postgres_module_url,
)


@pytest.fixture
def log_catalog(database_url: str) -> Iterator[Catalog]:  # noqa: F811 - the fixture above
    """A migrated catalogue of its own, on each backend (for tests writing the access log)."""
    with Catalog.open(database_url) as opened:
        yield opened
