"""Ingest: sources, the file-level de-identification runner, and (next) the node pipeline."""

from biobank.ingest.deid_run import (
    DeidRunReport,
    ItemResult,
    iter_source_files,
    run_deid,
    write_report,
)

__all__ = ["DeidRunReport", "ItemResult", "iter_source_files", "run_deid", "write_report"]
