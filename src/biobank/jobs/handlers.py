"""Job handlers that ship with the node: module-level functions, picklable by name.

A handler takes a :class:`JobContext` (where the catalogue and the blobs are; plain values,
so that it travels to a Dask worker) and the job's subject, and returns a JSON-ready dict.
It raises :class:`biobank.errors.BiobankError` with a PHI-free message when it cannot do
its work; the runner records the message and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biobank.catalog import Catalog
from biobank.errors import NotFound
from biobank.store.blobs import FileBlobStore

#: Instances verified per series at most (a larger series is verified in full all the same:
#: this is the page size of the catalogue reads).
PAGE = 10_000


@dataclass(frozen=True)
class JobContext:
    """Where a job finds the node's data (the workers may be on other machines)."""

    catalog_url: str
    blob_root: str
    curation: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The node's ``curation:`` settings (plain data, so the context pickles to Dask workers):
    the QC thresholds a ``qc-series`` job applies."""


def verify_series(context: JobContext, series_instance_uid: str) -> dict[str, Any]:
    """Re-hash every blob of a series (fixity): the job ``verify-series``.

    Returns the counts and the SOP Instance UIDs whose blob is missing or corrupt.

    Raises
    ------
    NotFound
        If the series is not catalogued.
    """
    catalog = Catalog(context.catalog_url)  # already migrated by the node: no Alembic here
    try:
        store = FileBlobStore(Path(context.blob_root), fsync=False)
        missing: list[str] = []
        corrupt: list[str] = []
        offset = checked = 0
        while True:
            page = catalog.find_instances(
                series_instance_uid=series_instance_uid, limit=PAGE, offset=offset
            )
            for instance in page:
                checked += 1
                if not store.exists(instance.blob_digest):
                    missing.append(instance.sop_instance_uid)
                elif not store.verify(instance.blob_digest):
                    corrupt.append(instance.sop_instance_uid)
            if len(page) < PAGE:
                break
            offset += PAGE
        if checked == 0:
            raise NotFound(f"no series {series_instance_uid} in the catalogue")
        return {
            "instances": checked,
            "intact": checked - len(missing) - len(corrupt),
            "missing": missing,
            "corrupt": corrupt,
        }
    finally:
        catalog.close()


__all__ = ["PAGE", "JobContext", "verify_series"]
