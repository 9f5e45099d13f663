"""Background jobs: records in the catalogue, execution on a local pool or on Dask.

:class:`JobRunner` claims pending jobs (:class:`biobank.catalog.jobs.JobRecords`), runs each
with the handler registered for its kind on an :class:`Executor` — a local process pool by
default (:class:`LocalExecutor`), a Dask distributed cluster when a scheduler address is
configured (:class:`DaskExecutor`, ``BIOBANK_DASK_SCHEDULER``) — and records the result or
the error; failed jobs are retried up to their ``max_attempts``.
"""

from biobank.jobs.executor import DaskExecutor, Executor, LocalExecutor, executor_for
from biobank.jobs.handlers import JobContext, verify_series
from biobank.jobs.runner import BackgroundJobs, Handler, JobRunner, RunSummary

SERIES_JOBS = ("classify-series", "qc-series", "conformance-series")
"""The jobs queued for every series that received new instances (issue 6's curation)."""

__all__ = [
    "SERIES_JOBS",
    "BackgroundJobs",
    "DaskExecutor",
    "Executor",
    "Handler",
    "JobContext",
    "JobRunner",
    "LocalExecutor",
    "RunSummary",
    "executor_for",
    "verify_series",
]
