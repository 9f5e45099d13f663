"""Engines and migrations of the catalogue database (SQLite by default, PostgreSQL at scale).

- :func:`create_catalog_engine` makes an engine tuned per backend. On SQLite every
  connection runs in WAL mode with ``synchronous=NORMAL`` (and a checkpoint every ~40 MB of
  WAL), foreign keys on, a 30 s busy timeout and case-sensitive ``LIKE`` (as on PostgreSQL
  and as DICOM matching is). The transactions are begun by us: ``BEGIN`` for reads (a
  consistent snapshot) and ``BEGIN IMMEDIATE`` for writes (execution option
  ``biobank_write=True``), so concurrent writers queue on the busy timeout instead of
  failing on a stale snapshot.
- :func:`migrate` upgrades the schema to the newest Alembic revision, programmatically (the
  scripts are package data in ``biobank/catalog/migrations``; no ``alembic.ini``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from biobank.errors import InvalidInput, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

HEAD_REVISION = "0006"
"""The newest migration shipped (a test checks it is Alembic's head). Opening a catalogue
already at this revision skips Alembic altogether: importing it costs a quarter of a second
on every command."""

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory (package data)."""

WRITE = "biobank_write"
"""Execution option: begin the transaction for writing (``BEGIN IMMEDIATE`` on SQLite)."""

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA case_sensitive_like=ON",
    # Checkpoint every ~40 MB of WAL rather than 4 MB: ingest commits ~1 MB per call, and
    # fewer checkpoints copy hot pages (indexes, counters) and sync the file less often.
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA journal_size_limit=67108864",
)
_MIGRATION_LOCK = 0x62696F62616E6B  # PostgreSQL advisory lock key: "biobank"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite catalogue file ``path`` (made absolute)."""
    return f"sqlite:///{path.expanduser().resolve()}"


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` (and ``postgres://``) to the psycopg 3 driver; check the backend.

    Raises
    ------
    InvalidInput
        If the URL cannot be parsed or names a backend other than SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            f"catalogue URL {safe_url(url)}: not a database URL; use sqlite:///path/to/"
            "catalog.sqlite or postgresql://user@host:port/database"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql" and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url
    raise InvalidInput(
        f"catalogue URL {safe_url(url)}: backend {parsed.drivername!r} is not supported; "
        "use sqlite:///path (embedded) or postgresql://... (driver psycopg 3)"
    )


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # We issue BEGIN ourselves (see _sqlite_begin): pysqlite's implicit transactions would
    # begin too late for a consistent read and too weakly for a write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_catalog_engine(url: str) -> Engine:
    """Create the engine for the catalogue at ``url`` (see the module docstring).

    Parameters
    ----------
    url
        ``sqlite:///path`` or ``postgresql[+psycopg]://user[:password]@host:port/database``.

    Raises
    ------
    InvalidInput
        If the URL is not one of the supported backends.
    """
    normalised = normalise_url(url)
    engine = create_engine(normalised, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # only when migrating (see HEAD_REVISION)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the catalogue schema shipped with this version."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StorageError(f"{MIGRATIONS}: no catalogue migrations found; reinstall biobank")
    return head


def migrate(engine: Engine) -> None:
    """Upgrade the catalogue schema to the newest revision (idempotent).

    Concurrent callers are serialised (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
    PostgreSQL), so several processes may open the same new catalogue at once.

    Raises
    ------
    StorageError
        If the database cannot be reached or the upgrade fails.
    """
    if _at_head(engine):
        return
    from alembic import command

    try:
        with (
            engine.connect().execution_options(**{WRITE: True}) as connection,
            connection.begin(),
        ):
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            command.upgrade(_alembic_config(connection), "head")
    except SQLAlchemyError as exc:
        raise StorageError(
            f"catalogue {safe_url(str(engine.url))}: schema upgrade failed "
            f"({type(exc).__name__}); check that the database is reachable and writable, "
            "then run the upgrade again (it resumes where it stopped)"
        ) from exc
    logger.debug("catalogue schema at %s", head_revision())


def _at_head(engine: Engine) -> bool:
    """Whether the database is already at :data:`HEAD_REVISION` (one cheap query)."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return False
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False  # the upgrade reports what is wrong
    return [row[0] for row in rows] == [HEAD_REVISION]


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"catalogue {safe_url(str(engine.url))}: cannot read the schema revision "
            f"({type(exc).__name__}); check that the database is reachable"
        ) from exc


__all__ = [
    "HEAD_REVISION",
    "MIGRATIONS",
    "WRITE",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "migrate",
    "normalise_url",
    "safe_url",
    "sqlite_url",
]
