"""The curation jobs: classify a series and measure its quality, then record the result.

Handlers for :class:`biobank.jobs.JobRunner` (kinds ``classify-series`` and ``qc-series``,
queued by ingest for every series that received new instances). Each opens the catalogue
and the blob store named by its :class:`~biobank.jobs.JobContext` — so it runs the same on a
local worker process or on a Dask worker — and records its result with
:class:`~biobank.catalog.curation.CurationRecords` (the decision of the rules; a curator's
decision is never overwritten).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom

from biobank.catalog import Catalog
from biobank.catalog.curation import CurationRecords
from biobank.curation.classify import classify_series
from biobank.curation.qc import QcRules, measure
from biobank.curation.series import MAX_INSTANCES, load_series_from_node
from biobank.errors import NotFound
from biobank.jobs import JobContext
from biobank.store.blobs import FileBlobStore

MEASURED_MODALITIES = frozenset({"CT", "MR"})
"""Modalities whose series are measured (the metrics of :mod:`biobank.curation.qc`)."""


def _open(context: JobContext) -> tuple[Catalog, FileBlobStore]:
    # The node migrated its catalogue: no Alembic in a worker.
    return Catalog(context.catalog_url), FileBlobStore(Path(context.blob_root), fsync=False)


def classify_series_job(context: JobContext, series_instance_uid: str) -> dict[str, Any]:
    """Job ``classify-series``: label the series from its stored headers; record it.

    Raises
    ------
    NotFound
        If the series is not catalogued.
    """
    catalog, store = _open(context)
    try:
        instances = catalog.find_instances(
            series_instance_uid=series_instance_uid, limit=MAX_INSTANCES
        )
        if not instances:
            raise NotFound(f"no series {series_instance_uid} in the catalogue")
        headers = [
            pydicom.dcmread(io.BytesIO(store.get(i.blob_digest)), stop_before_pixels=True)
            for i in instances
        ]
        result = classify_series(headers).to_json()
        CurationRecords(catalog).record_classification(series_instance_uid, result)
        return result
    finally:
        catalog.close()


def qc_series_job(context: JobContext, series_instance_uid: str) -> dict[str, Any]:
    """Job ``qc-series``: measure the series' image quality; record the rules' decision.

    Raises
    ------
    NotFound
        If the series is not catalogued.
    """
    catalog, store = _open(context)
    try:
        volume = load_series_from_node(catalog, store, series_instance_uid)
        if volume.modality not in MEASURED_MODALITIES:
            # The metrics are defined for CT and MR volumes; other series wait for a curator.
            return {"measured": False, "reason": f"no QC metrics for modality {volume.modality}"}
        report = measure(volume, QcRules.from_config(context.curation, "node.yaml"))
        result = report.to_json()
        CurationRecords(catalog).record_qc(
            series_instance_uid,
            result,
            report.decision,
            list(report.reasons),
        )
        return {"decision": report.decision.value, "reasons": list(report.reasons)}
    finally:
        catalog.close()


__all__ = ["MEASURED_MODALITIES", "classify_series_job", "qc_series_job"]
