"""``biobank curate classify``: label MR series of a folder of DICOM files or of a study."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Annotated

import pydicom
import typer
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from rich.table import Table

from biobank.cli.common import HomeOption, JsonOption, console, fail, files_under, load_node, out
from biobank.curation.classify import classify_headers
from biobank.curation.default import default_series
from biobank.curation.models import Classification, DefaultChoice
from biobank.errors import BiobankError

#: Instances read per catalogue page.
_PAGE = 1000


def register(curate_app: typer.Typer) -> None:
    """Add ``classify`` to the ``curate`` command group."""
    curate_app.command("classify")(classify_command)


def classify_command(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A folder of DICOM files (read recursively; works before ingest).",
            show_default=False,
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study",
            help="Classify a catalogued study of the node (Study Instance UID) instead.",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Label every series (T1W, T2W, FLAIR, PD, DWI, ADC, DCE, localizer, other).

    Physics tags decide first, vendor sequence names next, descriptions last; each series
    comes with its orientation, 3D/derived/contrast flags, a confidence and the evidence.
    The default static series of each MR study (3D, T2W, axial, original) is printed last.
    """
    if (path is None) == (study is None):
        raise fail("give a folder PATH or --study UID (one of them)")
    if path is not None:
        if not path.is_dir():
            raise fail(f"{path} is not a folder: give a folder of DICOM files")
        headers, skipped = _read_folder(path)
        if skipped:
            console.print(
                f"skipped {skipped} file(s) that are not DICOM images with a series",
                highlight=False,
            )
    else:
        assert study is not None
        headers = _read_study(study, home)
    if not headers:
        raise fail("no DICOM headers found: check the folder or the Study Instance UID")
    classifications = classify_headers(headers)
    defaults = default_series(classifications)
    if as_json:
        _print_json(classifications, defaults)
    else:
        _print_table(classifications, defaults)


def _read_folder(root: Path) -> tuple[list[Dataset], int]:
    headers: list[Dataset] = []
    skipped = 0
    for item in files_under(root):
        try:
            ds = pydicom.dcmread(item, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError):
            skipped += 1
            continue
        if "SeriesInstanceUID" not in ds:
            skipped += 1
            continue
        headers.append(ds)
    return headers, skipped


def _read_study(study: str, home: Path | None) -> list[Dataset]:
    node = load_node(home)
    try:
        catalog = node.open_catalog()
        store = node.open_store(fsync=False)
        headers: list[Dataset] = []
        offset = 0
        while True:
            page = catalog.find_instances(study_instance_uid=study, limit=_PAGE, offset=offset)
            for instance in page:
                data = store.get(instance.blob_digest)
                headers.append(pydicom.dcmread(BytesIO(data), stop_before_pixels=True))
            if len(page) < _PAGE:
                break
            offset += _PAGE
    except BiobankError as exc:
        raise fail(str(exc)) from None
    except (InvalidDicomError, ValueError, EOFError) as exc:
        name = type(exc).__name__
        raise fail(f"a stored instance of the study could not be read ({name})") from None
    if not headers:
        raise fail("no such study in the catalogue: check the UID with 'biobank ls studies'")
    return headers


def _print_json(classifications: list[Classification], defaults: dict[str, DefaultChoice]) -> None:
    for c in classifications:
        typer.echo(json.dumps(c.to_json(), ensure_ascii=False))  # one line each
    for choice in defaults.values():
        typer.echo(json.dumps({"default_series": choice.to_json()}, ensure_ascii=False))


def _print_table(classifications: list[Classification], defaults: dict[str, DefaultChoice]) -> None:
    table = Table(title="Series classification")
    table.add_column("series", overflow="fold")
    for column in ("no.", "mod.", "label", "plane", "3D", "derived", "contrast", "conf."):
        table.add_column(column)
    table.add_column("review / DCE")
    for c in classifications:
        flags = ", ".join(x for x in ("review" if c.needs_review else "", c.dce_group or "") if x)
        table.add_row(
            c.series_instance_uid,
            "" if c.series_number is None else str(c.series_number),
            c.modality,
            str(c.label),
            str(c.orientation),
            "yes" if c.is3d else "",
            "yes" if c.derived else "",
            "yes" if c.contrast else "",
            f"{c.confidence:.2f}",
            flags,
        )
    out.print(table)
    for c in classifications:
        number = "?" if c.series_number is None else str(c.series_number)
        out.print(f"series {number} ({c.label}): " + "; ".join(c.evidence), highlight=False)
    for choice in defaults.values():
        chosen = choice.series_instance_uid or "none"
        mark = " [yellow](fallback)[/]" if choice.fallback else ""
        out.print(
            f"default series of study {choice.study_instance_uid}: {chosen}{mark} "
            f"- {choice.reason}",
            highlight=False,
        )


__all__ = ["classify_command", "register"]
