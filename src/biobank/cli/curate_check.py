"""``biobank curate check``: DICOM conformance of series (dciodvfy and built-in checks)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from biobank.cli.common import (
    HomeOption,
    JsonOption,
    SeriesOption,
    SeriesPathArgument,
    fail,
    files_under,
    load_node,
    out,
)
from biobank.curation.conformance import ConformanceReport, check_instance_files, check_series
from biobank.errors import BiobankError


def register(curate_app: typer.Typer) -> None:
    """Add ``check`` to the ``curate`` group."""
    curate_app.command("check")(check_command)


def check_command(
    path: SeriesPathArgument = None,
    series: SeriesOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check DICOM conformance: dciodvfy per instance, geometry, slices, duplicates.

    Prints one JSON object per series with --json: series_instance_uid, findings (severity,
    check, instance, message), decision (approve or quarantine) and reasons. From files,
    instances are named by rank ("instance 3 of 20"); on the node, by SOP Instance UID.
    """
    try:
        if series is not None and path is None:
            node = load_node(home)
            with node.open_catalog() as catalog:
                reports = [check_series(catalog, node.open_store(), series)]
        elif path is not None and series is None:
            if not path.exists():
                raise fail("the path does not exist; give a DICOM file or a folder of DICOM files")
            reports = check_instance_files(files_under(path))
        else:
            raise fail("give either PATH or --series UID")
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        for report in reports:
            typer.echo(json.dumps(report.to_json(), ensure_ascii=False))  # one line each
        return
    for report in reports:
        out.print(_table(report))


def _table(report: ConformanceReport) -> Table:
    table = Table(
        title=f"{report.instances} instance(s): {report.decision.value}",
        caption=report.series_instance_uid or None,
    )
    table.add_column("severity")
    table.add_column("check")
    table.add_column("instance")
    table.add_column("message")
    for finding in report.findings:
        table.add_row(
            finding.severity.value, finding.check, finding.instance or "—", finding.message
        )
    for reason in report.reasons:
        table.add_row("", "decision", "", reason)
    return table


__all__ = ["check_command", "register"]
