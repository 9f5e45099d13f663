"""``biobank jobs``: list, enqueue, run and retry background jobs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from biobank.catalog.jobs import JobRecords, JobState
from biobank.cli.common import HomeOption, JsonOption, console, fail, load_node, out, print_table
from biobank.config import get_settings
from biobank.curation.conformance import conformance_series_job
from biobank.curation.jobs import classify_series_job, qc_series_job
from biobank.errors import BiobankError
from biobank.jobs import JobContext, JobRunner, executor_for, verify_series
from biobank.jobs.runner import Handler

jobs_app = typer.Typer(
    help="Background jobs (fixity, and classification and QC of series as they come).",
    invoke_without_command=True,
)

#: The job kinds this node runs, by name.
HANDLERS: dict[str, Handler] = {
    "verify-series": verify_series,
    "classify-series": classify_series_job,
    "qc-series": qc_series_job,
    "conformance-series": conformance_series_job,
}


def register(app: typer.Typer) -> None:
    """Add ``jobs`` to ``app``."""
    app.add_typer(jobs_app, name="jobs")


@jobs_app.callback()
def _default(
    ctx: typer.Context,
    home: HomeOption = None,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Without a subcommand: list the newest jobs (as `biobank jobs list`)."""
    if ctx.invoked_subcommand is None:
        list_jobs(home=home, state=state, kind=None, limit=50, as_json=as_json)


@jobs_app.command("list")
def list_jobs(
    home: HomeOption = None,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List jobs with their state, attempts and last error."""
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            records = JobRecords(catalog)
            found = records.find(state=state, kind=kind, limit=limit)
            counts = records.counts()
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps({"counts": counts, "jobs": [j.to_json() for j in found]}))
        return
    table = Table(title="Jobs " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for column in ("id", "kind", "subject", "state", "attempts", "updated", "error"):
        # The subject (a UID) is never cut: it is what a curator copies.
        table.add_column(column, no_wrap=column != "error", overflow="fold")
    for job in found:
        table.add_row(
            str(job.id),
            job.kind,
            job.subject,
            job.state.value,
            f"{job.attempts}/{job.max_attempts}",
            job.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            job.error or "",
        )
    print_table(table)


@jobs_app.command("enqueue")
def enqueue(
    kind: Annotated[str, typer.Argument(help=f"Job kind: {', '.join(HANDLERS)}.")],
    series: Annotated[list[str] | None, typer.Argument(help="Series Instance UIDs.")] = None,
    all_series: Annotated[bool, typer.Option("--all", help="Every catalogued series.")] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue jobs of KIND for series (or --all); run them with `biobank jobs run`."""
    if kind not in HANDLERS:
        raise fail(f"unknown job kind {kind!r}; known: {', '.join(HANDLERS)}")
    if not series and not all_series:
        raise fail("name series UIDs or pass --all")
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            subjects = list(series or [])
            if all_series:
                offset = 0
                while page := catalog.find_series(limit=10_000, offset=offset):
                    subjects += [s.series_instance_uid for s in page]
                    offset += len(page)
            queued = JobRecords(catalog).enqueue(kind, subjects)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps({"kind": kind, "subjects": len(subjects), "queued": queued}))
    else:
        out.print(f"{queued} {kind} job(s) queued for {len(subjects)} series")


@jobs_app.command("run")
def run(
    home: HomeOption = None,
    jobs: Annotated[int, typer.Option(min=0, help="Local worker processes (0: per core).")] = 0,
    dask: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (default: $BIOBANK_DASK_SCHEDULER)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Run at most this many.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the pending jobs on a local process pool, or on Dask when a scheduler is set."""
    node = load_node(home)
    scheduler = dask or get_settings().dask_scheduler
    try:
        executor = executor_for(scheduler, jobs)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    try:
        with node.open_catalog() as catalog:
            context = JobContext(
                catalog.url, str(node.blob_root.resolve()), curation=node.section("curation")
            )
            runner = JobRunner(JobRecords(catalog), executor, HANDLERS, context)
            console.print(f"running jobs on {executor.name}", highlight=False)
            summary = runner.run_pending(limit=limit)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    finally:
        executor.close()
    if as_json:
        out.print_json(json.dumps(summary.to_json()))
    else:
        out.print(
            f"{summary.done} done, {summary.retried} to retry, {summary.failed} failed"
            + (" — see `biobank jobs --state failed`" if summary.failed else "")
        )
    if summary.failed:
        raise typer.Exit(1)


@jobs_app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Job ids (default: every failed)")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put failed jobs back in the queue with fresh attempts."""
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            count = JobRecords(catalog).retry(ids or [])
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps({"retried": count}))
    else:
        out.print(f"{count} failed job(s) queued again; run them with `biobank jobs run`")


__all__ = ["HANDLERS", "jobs_app", "register"]
