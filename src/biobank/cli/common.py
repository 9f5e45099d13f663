"""What every command shares: the consoles, errors, and how a node home is found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from biobank.config import get_settings
from biobank.errors import BiobankError
from biobank.ingest.node import Node, open_node

console = Console(stderr=True)
out = Console()

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="The node home (default: $BIOBANK_HOME, else ./biobank-data).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SeriesPathArgument = Annotated[
    Path | None,
    typer.Argument(
        help="A DICOM file or a folder of DICOM files (one or more series).",
        show_default=False,
    ),
]
SeriesOption = Annotated[
    str | None,
    typer.Option(
        "--series", help="A Series Instance UID of the node (instead of PATH).", show_default=False
    ),
]


def files_under(path: Path) -> Iterator[Path]:
    """``path`` if it is a file, else every file below it (hidden ones left out), sorted."""
    if path.is_file():
        yield path
        return
    for child in sorted(path.rglob("*")):
        if child.is_file() and not child.name.startswith("."):
            yield child


def print_table(table: Table) -> None:
    """Print a table; into a pipe or a file, wide enough that no line is folded."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(width=max(out.width, 240)).print(table)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def item_progress(label: str, *, quiet: bool) -> Progress:
    """A progress bar for a stream of items: count, a rate field and a problems field.

    Hidden with ``--json`` and when stderr is not a terminal. Add the task with
    ``add_task(label, total=None, rate="", problems=0)``.
    """
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[problems]} problems"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )


def home_of(home: Path | None) -> Path:
    """``--home``, else the settings' home."""
    return home if home is not None else get_settings().home


def load_node(home: Path | None) -> Node:
    """Open the node home or exit with the reason."""
    try:
        return open_node(home_of(home), database_url=get_settings().database_url)
    except BiobankError as exc:
        raise fail(str(exc)) from None


__all__ = [
    "HomeOption",
    "JsonOption",
    "console",
    "fail",
    "home_of",
    "item_progress",
    "load_node",
    "out",
]
