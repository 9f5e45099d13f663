"""``biobank push``: send de-identified studies to another node over DICOMweb STOW-RS."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from biobank.cli.common import HomeOption, JsonOption, console, fail, load_node, out
from biobank.cli.node import _log_to_node
from biobank.errors import BiobankError
from biobank.federation import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_INSTANCES,
    Destination,
    PushOptions,
    PushProgress,
    PushReport,
    StudyState,
    push,
)

MiB = 1 << 20
#: Exit status when some studies failed (the others were pushed).
EXIT_FAILED = 1
#: Exit status when the push stopped early (token refused, destination unreachable).
EXIT_STOPPED = 2


def register(app: typer.Typer) -> None:
    """Add ``push`` to ``app``."""
    app.command("push")(push_command)


def push_command(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The destination's DICOMweb root, e.g. https://central.example.org/dicomweb.",
            show_default=False,
        ),
    ],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="BIOBANK_PUSH_TOKEN",
            help="A bearer token of an uploader, curator or admin at the destination "
            "(or set BIOBANK_PUSH_TOKEN, which keeps it out of the process list).",
            show_default=False,
        ),
    ] = None,
    study: Annotated[
        list[str] | None,
        typer.Option(
            "--study", help="A Study Instance UID to push (repeatable).", show_default=False
        ),
    ] = None,
    all_studies: Annotated[
        bool, typer.Option("--all", help="Push every study of the node.")
    ] = False,
    home: HomeOption = None,
    batch: Annotated[
        int,
        typer.Option(min=1, max=10_000, help="At most this many instances per STOW-RS request."),
    ] = DEFAULT_BATCH_INSTANCES,
    batch_mb: Annotated[
        int, typer.Option(min=1, max=4096, help="At most this many MiB per STOW-RS request.")
    ] = DEFAULT_BATCH_BYTES // MiB,
    attempts: Annotated[
        int, typer.Option(min=1, max=100, help="Tries per request before the push stops.")
    ] = 5,
    recheck: Annotated[
        bool,
        typer.Option(
            "--recheck", help="Ask the destination about every study, even those journaled."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Push de-identified studies to another node (normally a central node) over STOW-RS.

    Resumable: for each study the destination is asked what it already holds and only the
    missing instances are sent; a study whose counts agree at the end is journaled in
    <home>/push/ and skipped by later runs. Exit status: 0 when every study is at the
    destination, 1 when some failed (listed with the destination's reasons), 2 when the push
    stopped (token refused, destination unreachable).
    """
    if bool(study) == all_studies:
        raise fail("give --study UID (repeatable) or --all, not both and not neither")
    try:
        destination = Destination.from_url(to, token)
        options = PushOptions(
            batch_instances=batch, batch_bytes=batch_mb * MiB, attempts=attempts, recheck=recheck
        )
    except BiobankError as exc:
        raise fail(str(exc)) from None
    node = load_node(home)
    _log_to_node(node)
    bar = Progress(
        TextColumn("[bold]pushing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("instances"),
        DownloadColumn(binary_units=True),
        TextColumn("{task.fields[studies]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json or not console.is_terminal,
    )
    with bar:
        task = bar.add_task("push", total=None, studies="")

        def progress(state: PushProgress) -> None:
            bar.update(
                task,
                completed=state.instances_done,
                total=state.instances_total,
                studies=f"study {min(state.studies_done + 1, state.studies_total)}"
                f"/{state.studies_total}",
            )

        try:
            report = push(
                node,
                destination,
                studies=None if all_studies else study,
                options=options,
                progress=progress,
            )
        except BiobankError as exc:
            raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        _print_report(report)
    if report.stopped is not None:
        raise fail(report.stopped, code=EXIT_STOPPED)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _print_report(report: PushReport) -> None:
    summary = report.summary()
    table = Table(title="Push", show_header=False)
    table.add_row("destination", report.destination)
    for label, key in [
        ("studies", "studies"),
        ("  pushed", "pushed"),
        ("  skipped (journal)", "skipped"),
        ("  failed", "failed"),
        ("  not attempted", "not_attempted"),
        ("instances sent", "instances_sent"),
        ("already present", "already_present"),
        ("instances failed", "instances_failed"),
        ("requests", "requests"),
        ("seconds", "seconds"),
        ("instances/s", "instances_per_second"),
    ]:
        table.add_row(label, str(summary[key]))
    table.add_row("sent", _size(summary["bytes_sent"]))
    out.print(table)
    shown = 0
    for study in report.studies:
        if study.state is not StudyState.FAILED:
            continue
        for problem in study.problems:
            if problem != report.stopped:
                out.print(f"[yellow]failed[/]: {problem}", highlight=False)
        for failed in study.failed:
            if shown < 20:
                out.print(
                    f"[yellow]refused[/]: study {study.study_instance_uid} instance "
                    f"{failed.sop_instance_uid}: {failed.reason}",
                    highlight=False,
                )
            shown += 1
    if shown > 20:
        out.print(f"... and {shown - 20} more refused instances (see --json)")


__all__ = ["push_command", "register"]
