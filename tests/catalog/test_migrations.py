"""Schema migrations, engines and URLs of the catalogue, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from biobank.catalog import (
    Catalog,
    create_catalog_engine,
    current_revision,
    head_revision,
    migrate,
    sqlite_url,
)
from biobank.catalog.database import HEAD_REVISION, MIGRATIONS, _alembic_config, normalise_url
from biobank.catalog.schema import Base
from biobank.errors import InvalidInput, StorageError
from tests.catalog.factories import record, stored, uid

TABLES = {"patient", "study", "series", "instance", "ingest_batch", "ingest_item"}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_catalog_engine(database_url)
    yield engine
    engine.dispose()


def test_the_constructor_does_not_migrate_and_open_does(database_url: str) -> None:
    with Catalog(database_url) as catalog:
        assert catalog.schema_revision() is None
    with Catalog.open(database_url) as catalog:
        assert catalog.schema_revision() == head_revision()


def test_migrate_is_idempotent_and_keeps_the_data(engine: Engine) -> None:
    assert current_revision(engine) is None

    migrate(engine)
    assert current_revision(engine) == head_revision() == HEAD_REVISION
    assert set(inspect(engine).get_table_names()) >= TABLES
    with Catalog(str(engine.url.render_as_string(hide_password=False))) as catalog:
        batch_id = catalog.start_batch(role="site", sources=[], profile=None, key_id=None)
        catalog.record_items(batch_id, [stored(record(uid(1, 1, 1)))])

    migrate(engine)
    migrate(engine)

    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instance")).scalar_one() == 1


def test_the_migrated_schema_equals_the_models(engine: Engine) -> None:
    migrate(engine)

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_the_comparison_sees_a_difference(engine: Engine) -> None:
    # Guard for the test above: a schema that lacks an index is reported.
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_study_study_date"))

    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    assert [d[0] for d in differences] == ["add_index"]


def test_downgrade_removes_everything_and_upgrade_restores_it(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert current_revision(engine) is None

    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_the_migrations_are_package_data() -> None:
    package = resources.files("biobank.catalog")
    assert package.joinpath("migrations", "script.py.mako").is_file()
    assert package.joinpath("migrations", "env.py").is_file()
    assert package.joinpath("migrations", "versions", "0001_initial.py").is_file()
    assert Path(str(package.joinpath("migrations"))) == MIGRATIONS


def test_sqlite_connections_are_tuned(tmp_path: Path) -> None:
    engine = create_catalog_engine(sqlite_url(tmp_path / "c.sqlite"))
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()

    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }


def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    engine = create_catalog_engine(sqlite_url(tmp_path / "c.sqlite"))
    try:
        migrate(engine)
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO study (study_instance_uid, patient_id, modalities_in_study, "
                    "created_at, updated_at) VALUES ('1.2', 99, '', '2020-01-01', '2020-01-01')"
                )
            )
    finally:
        engine.dispose()


def test_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url(Path("home/catalog.sqlite")) == f"sqlite:///{tmp_path}/home/catalog.sqlite"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:pw@h/db"),
        ("sqlite:////tmp/c.sqlite", "sqlite:////tmp/c.sqlite"),
    ],
)
def test_urls_are_normalised_to_psycopg(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@h/db", "postgresql+asyncpg://u:secret@h/db", "not a url secret"]
)
def test_unsupported_urls_are_refused_without_their_password(url: str) -> None:
    with pytest.raises(InvalidInput, match="sqlite:///") as raised:
        create_catalog_engine(url)
    assert "secret" not in str(raised.value)


def test_postgresql_urls_use_psycopg() -> None:
    with Catalog("postgresql://postgres@127.0.0.1:5432/test") as catalog:
        assert catalog.backend == "postgresql"
        assert catalog.url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_an_unreachable_database_is_a_storage_error() -> None:
    catalog = Catalog("postgresql://someone:secret@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(StorageError, match="schema upgrade failed") as raised:
            catalog.migrate()
        assert "secret" not in str(raised.value)
        assert "127.0.0.1:1/nowhere" in str(raised.value)
        with pytest.raises(StorageError, match="finding studies"):
            catalog.find_studies()
    finally:
        catalog.close()


def test_an_unmigrated_database_is_a_storage_error(tmp_path: Path) -> None:
    with (
        Catalog(sqlite_url(tmp_path / "c.sqlite")) as catalog,
        pytest.raises(StorageError, match="schema migrated"),
    ):
        catalog.stats()


def test_the_ingest_item_uid_and_digest_indexes_are_partial(engine: Engine) -> None:
    # compare_metadata does not compare index conditions, so check them here.
    migrate(engine)
    names = ("ix_ingest_item_sop_instance_uid", "ix_ingest_item_blob_digest")
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE name = :name"
        else:
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
        definitions = [conn.execute(text(query), {"name": name}).scalar_one() for name in names]

    for definition in definitions:
        assert "outcome" in definition and "stored" in definition
        assert "WHERE" in definition.upper()


def test_a_catalogue_at_head_opens_without_importing_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = sqlite_url(tmp_path / "catalog.sqlite")
    Catalog.open(url).close()
    code = (
        "import sys; from biobank.catalog import Catalog; "
        f"Catalog.open({url!r}).close(); "
        "print(any(m.startswith('alembic') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
