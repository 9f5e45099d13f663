"""Ingest: sources (files, folders, archives), the de-identification runner, the pipeline."""

from biobank.ingest.deid_run import DeidRunReport, ItemResult, run_deid, write_report
from biobank.ingest.sources import Limits, SourceItem, iter_items

__all__ = [
    "DeidRunReport",
    "ItemResult",
    "Limits",
    "SourceItem",
    "iter_items",
    "run_deid",
    "write_report",
]
