"""``biobank curate qc`` and ``biobank curate sheet``: image quality and contact sheets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
from biobank.curation.qc import QcReport, QcRules, measure
from biobank.curation.series import SeriesVolume, load_series_files, load_series_from_node
from biobank.curation.sheet import contact_sheet
from biobank.errors import BiobankError

_METRICS = ("snr", "snr_dietrich", "cnr", "cjv", "var", "fber", "efc")


def register(curate_app: typer.Typer) -> None:
    """Add ``qc`` and ``sheet`` to the ``curate`` group."""
    curate_app.command("qc")(qc_command)
    curate_app.command("sheet")(sheet_command)


def _from_path(path: Path) -> list[SeriesVolume]:
    if not path.exists():
        raise fail("the path does not exist; give a DICOM file or a folder of DICOM files")
    try:
        return load_series_files(files_under(path))
    except BiobankError as exc:
        raise fail(str(exc)) from None


def _from_node(home: Path | None, series_instance_uid: str) -> SeriesVolume:
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            return load_series_from_node(catalog, node.open_store(), series_instance_uid)
    except BiobankError as exc:
        raise fail(str(exc)) from None


def _node_rules(home: Path | None) -> QcRules:
    """The thresholds of the node's ``curation:`` section (docs/curation.md)."""
    node = load_node(home)
    try:
        return QcRules.from_config(node.section("curation"), str(node.config_path))
    except BiobankError as exc:
        raise fail(str(exc)) from None


def qc_command(
    path: SeriesPathArgument = None,
    series: SeriesOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure image quality (SNR, Dietrich SNR, CNR, CJV, VAR, FBER, EFC; CT checks).

    Prints one JSON object per series with --json: the metrics by name, the masks' voxel
    counts and the decision (approve, quarantine, exclude) with its reasons. With --series,
    the thresholds are those of the node's ``curation:`` section; for PATH, the defaults.
    """
    rules = QcRules()
    if series is not None and path is None:
        rules = _node_rules(home)
        volumes = [_from_node(home, series)]
    elif path is not None and series is None:
        volumes = _from_path(path)
    else:
        raise fail("give either PATH or --series UID")
    reports: list[QcReport] = []
    for volume in volumes:
        try:
            reports.append(measure(volume, rules))
        except BiobankError as exc:
            raise fail(str(exc)) from None
    if as_json:
        for report in reports:
            typer.echo(json.dumps(report.to_json(), ensure_ascii=False))  # one line each
        return
    for report in reports:
        out.print(_table(report))


def _table(report: QcReport) -> Table:
    table = Table(title=f"{report.modality} series, {report.shape[0]} slices")
    table.add_column("metric")
    table.add_column("value", justify="right")
    metrics = report.metrics.to_json()
    for name in _METRICS:
        value = metrics[name]
        table.add_row(name, "—" if value is None else f"{value:.4g}")
    if report.ct is not None:
        for name, value in report.ct.to_json().items():
            table.add_row(f"ct.{name}", "—" if value is None else f"{value:.4g}")
    counts = report.masks.to_json()
    table.add_row("foreground voxels", str(counts["foreground"]))
    table.add_row("background voxels", str(counts["background"]))
    table.add_row("decision", report.decision.value)
    for reason in report.reasons:
        table.add_row("reason", reason)
    for problem in report.problems:
        table.add_row("problem", problem)
    return table


def sheet_command(
    series: Annotated[
        str,
        typer.Argument(
            help="A Series Instance UID of the node, or a folder of one series' files.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--out", help="The PNG file to write.", show_default=False)
    ],
    home: HomeOption = None,
    tile: Annotated[int, typer.Option(min=16, max=1024, help="Cell size in pixels.")] = 128,
    columns: Annotated[
        int | None, typer.Option(min=1, help="Cells per row (default: a square grid).")
    ] = None,
) -> None:
    """Write a contact sheet: every image of a series, downsampled, in one PNG.

    Only slice indices are drawn; no header text (names, dates, descriptions).
    """
    candidate = Path(series)
    if candidate.exists():
        volumes = _from_path(candidate)
        if len(volumes) != 1:
            raise fail(
                f"the folder holds {len(volumes)} series; give a folder of one series or a "
                "Series Instance UID"
            )
        volume = volumes[0]
    else:
        volume = _from_node(home, series)
    try:
        data = contact_sheet(volume, tile=tile, columns=columns)
        output.write_bytes(data)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(
            f"could not write the sheet ({exc.__class__.__name__}); check the --out folder"
        ) from None
    out.print(f"wrote {output} ({volume.shape[0]} images)", highlight=False)


__all__ = ["qc_command", "register", "sheet_command"]
