"""The catalogue: the node's index of stored, de-identified DICOM instances.

patient (pseudonym only) → study → series → instance, with the main DICOM attributes as
typed, indexed columns and the full header as DICOM JSON, plus ingest batches and the outcome
of every input item. SQLite (WAL) is the embedded default, PostgreSQL the scale backend; the
schema is migrated with Alembic. This is the only package that imports SQLAlchemy: the other
packages use :class:`Catalog` and the dataclasses below.

Example
-------
>>> catalog = Catalog.open(sqlite_url(home / "catalog.sqlite"))  # doctest: +SKIP
>>> batch_id = catalog.start_batch(role="site", sources=["/exports/a"], profile="research",
...                                key_id=None)  # doctest: +SKIP
>>> results = catalog.record_items(batch_id, items)  # doctest: +SKIP
>>> catalog.find_studies(patient_pseudonym="PSN-4F2A*", modality="CT")  # doctest: +SKIP
"""

from biobank.catalog import omop  # registers the OMOP CDM tables on the metadata
from biobank.catalog.database import (
    create_catalog_engine,
    current_revision,
    head_revision,
    migrate,
    sqlite_url,
)
from biobank.catalog.models import (
    PROBLEM_OUTCOMES,
    BatchState,
    BatchSummary,
    BlobReference,
    CatalogStats,
    InstanceRecord,
    InstanceSummary,
    ItemInput,
    ItemOutcome,
    ItemResult,
    PatientSummary,
    ProblemItem,
    SeriesSummary,
    StudySummary,
)
from biobank.catalog.repository import Catalog

__all__ = [
    "PROBLEM_OUTCOMES",
    "BatchState",
    "BatchSummary",
    "BlobReference",
    "Catalog",
    "CatalogStats",
    "InstanceRecord",
    "InstanceSummary",
    "ItemInput",
    "ItemOutcome",
    "ItemResult",
    "PatientSummary",
    "ProblemItem",
    "SeriesSummary",
    "StudySummary",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "migrate",
    "omop",
    "sqlite_url",
]
