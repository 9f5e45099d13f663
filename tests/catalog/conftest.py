"""Fixtures: an empty catalogue per test, on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL databases are named ``bb_test_<uuid hex>`` (unique under pytest-xdist), created
through an AUTOCOMMIT connection to the ``test`` database and dropped (``WITH (FORCE)``)
afterwards. :func:`catalog` uses one migrated database per test module and empties its
tables before each test; :func:`database_url` gives each test a new, unmigrated database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from biobank.catalog import Catalog, sqlite_url

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_ADMIN_URL = f"{PG_SERVER}/test"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _admin_execute(sql: str) -> None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at 127.0.0.1:5432 is unreachable ({type(exc.orig).__name__}); start it "
            "with `pg_ctlcluster 15 main start` (user postgres, trust auth on 127.0.0.1, "
            "database test) and run the tests again",
            pytrace=False,
        )
    finally:
        engine.dispose()


def new_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty catalogue database; the database is removed afterwards."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "catalog.sqlite")
        return
    name = f"bb_test_{uuid.uuid4().hex}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend (not migrated)."""
    yield from new_database_url(request.param, tmp_path)


@pytest.fixture(scope="module")
def postgres_module_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL catalogue database shared by the tests of one module."""
    for url in new_database_url("postgresql", tmp_path_factory.mktemp("unused")):
        Catalog.open(url).close()
        yield url


def _empty(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    # access_log is append-only (a trigger refuses TRUNCATE): tests of it
                    # take a database of their own (database_url).
                    "TRUNCATE cohort_series, data_query_event, data_query, clinical_record_row, "
                    "clinical_record_version, clinical_record, clinical_import, image_feature, "
                    "image_occurrence, episode_event, episode, death, specimen, drug_exposure, "
                    "observation, measurement, procedure_occurrence, condition_occurrence, "
                    "visit_occurrence, observation_period, person, care_site, cdm_source, "
                    "curation_event, series_curation, job, study_owner, api_token, "
                    "app_user, ingest_item, instance, series, study, patient, ingest_batch "
                    "RESTART IDENTITY"
                )
            )
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated, empty catalogue on each backend."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "catalog.sqlite")
    else:
        url = request.getfixturevalue("postgres_module_url")
        _empty(url)
    with Catalog.open(url) as opened:
        yield opened
