"""The catalogue fixtures (SQLite and PostgreSQL) for the job tests."""

from tests.catalog.conftest import (  # noqa: F401 - fixtures, registered by being imported
    catalog,
    database_url,
    postgres_module_url,
)
