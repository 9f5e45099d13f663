"""``biobank export omop|eucaim|miabis`` and ``biobank omop sync``: the OMOP exports.

``export omop DIR`` writes the OMOP CDM 5.4 + MI-CDM tables as CSV (they load into the OHDSI
DDL, docs/omop.md); ``export eucaim`` prints the EUCAIM search view (per patient: pseudonym,
sex, diseases, image studies) and ``export miabis`` the MIABIS Core v3 collection descriptor,
as JSON on stdout or into ``--out``. ``omop sync`` maps every series not yet in OMOP
(ingest does it after each batch; this catches up after a failure or an upgrade).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from biobank.catalog import Catalog
from biobank.catalog.omop_export import CdmSource, export_omop_csv
from biobank.catalog.omop_imaging import sync_imaging_all
from biobank.cli.common import HomeOption, JsonOption, fail, load_node, out, print_table
from biobank.datasets.exports import eucaim_view, miabis_collection
from biobank.errors import BiobankError

T = TypeVar("T")

export_app = typer.Typer(
    help="Export the node's data model: OMOP CSV, EUCAIM search view, MIABIS collection.",
    no_args_is_help=True,
)
omop_app = typer.Typer(help="The OMOP CDM tables of the node.", no_args_is_help=True)

OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write the JSON to this file (default: stdout)."),
]


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``omop`` to ``app``."""
    app.add_typer(export_app, name="export")
    app.add_typer(omop_app, name="omop")


def _with_catalog(home: Path | None, call: Callable[[Catalog], T]) -> T:
    """Run ``call`` on the node's catalogue; an error ends the command with its reason."""
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            return call(catalog)
    except BiobankError as exc:
        raise fail(str(exc)) from None


def _write_json(data: Any, path: Path | None) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if path is None:
        out.print_json(text)
        return
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}; check the path") from None
    out.print(f"wrote {path}")


@export_app.command("omop")
def export_omop(
    directory: Annotated[Path, typer.Argument(help="Folder for the CSV files (created).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every OMOP CDM 5.4 / MI-CDM table as <table>.csv into DIRECTORY."""
    node = load_node(home)
    source = CdmSource(
        node.config.site, f"Imaging Biobank {node.role.value} node {node.config.node_id}"
    )
    counts = _with_catalog(home, lambda catalog: export_omop_csv(catalog, directory, source=source))
    if as_json:
        out.print_json(json.dumps({"directory": str(directory), "rows": counts}))
        return
    table = Table(title=f"OMOP CSV dump in {directory}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, str(rows))
    print_table(table)


@export_app.command("eucaim")
def export_eucaim(home: HomeOption = None, output: OutOption = None) -> None:
    """The EUCAIM search view (one object per patient; per-patient data: keep it inside)."""
    _write_json(_with_catalog(home, eucaim_view), output)


@export_app.command("miabis")
def export_miabis(
    name: Annotated[str, typer.Option("--name", help="Name of the collection (required).")],
    collection_id: Annotated[
        str | None,
        typer.Option("--id", help="MIABIS collection ID (default: the node id)."),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="Description (default: one made from the name)."),
    ] = None,
    acronym: Annotated[str | None, typer.Option("--acronym")] = None,
    url: Annotated[str | None, typer.Option("--url")] = None,
    home: HomeOption = None,
    output: OutOption = None,
) -> None:
    """The MIABIS Core v3 collection descriptor of the node (JSON)."""
    node = load_node(home)
    cid = collection_id or node.config.node_id
    text = description or f"{name}: imaging and clinical data held by {node.config.site}."
    try:
        with node.open_catalog() as catalog:
            data = miabis_collection(
                catalog,
                collection_id=cid,
                name=name,
                description=text,
                acronym=acronym,
                url=url,
            )
    except BiobankError as exc:
        raise fail(str(exc)) from None
    _write_json(data, output)


@omop_app.command("sync")
def omop_sync(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Map every catalogued series not yet in OMOP (image_occurrence, image_feature)."""
    report = _with_catalog(home, sync_imaging_all)
    values = {
        "series": report.series,
        "persons": report.persons,
        "procedures": report.procedures,
        "features": report.features,
    }
    if as_json:
        out.print_json(json.dumps(values))
        return
    out.print(
        f"mapped {report.series} series ({report.features} image features, "
        f"{report.procedures} new imaging procedures)"
    )
