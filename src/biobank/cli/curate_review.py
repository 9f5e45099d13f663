"""``biobank curate queue|decide|relabel|history``: the curators' review of series."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from biobank.catalog.curation import CurationRecords, Decision
from biobank.cli.common import HomeOption, JsonOption, fail, load_node, out, print_table
from biobank.errors import BiobankError

T = TypeVar("T")

CuratorOption = Annotated[
    str | None,
    typer.Option("--curator", help="Who decides (default: the login name)."),
]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why (required).")]


def register(curate_app: typer.Typer) -> None:
    """Add the review commands to ``biobank curate``."""
    curate_app.command("queue")(queue)
    curate_app.command("series")(series_list)
    curate_app.command("decide")(decide)
    curate_app.command("relabel")(relabel)
    curate_app.command("history")(history)


def _curator(name: str | None) -> str:
    return name or getpass.getuser()


def _with_records(home: Path | None, call: Callable[[CurationRecords], T]) -> T:
    """Run ``call`` on the node's curation records; an error ends the command with its reason."""
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            return call(CurationRecords(catalog))
    except BiobankError as exc:
        raise fail(str(exc)) from None


def queue(
    home: HomeOption = None,
    decision: Annotated[
        Decision, typer.Option(help="Which series to list (the queue: quarantine).")
    ] = Decision.QUARANTINE,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List series to review, with the reasons (look at one: `biobank curate sheet`)."""
    found = _with_records(home, lambda records: records.queue(decision, limit=limit))
    if as_json:
        out.print_json(json.dumps([record.to_json() for record in found]))
        return
    table = Table(title=f"Series: {decision.value} ({len(found)})")
    for column in ("series", "label", "confidence", "by", "reasons"):
        table.add_column(column, no_wrap=column == "series", overflow="fold")
    for record in found:
        table.add_row(
            record.series_instance_uid,
            record.label or "",
            f"{record.confidence:.2f}" if record.confidence is not None else "",
            record.decided_by or record.decision_source,
            "; ".join(record.decision_reasons),
        )
    print_table(table)


def series_list(
    home: HomeOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Every curated series: label, orientation, confidence, QC decision and reasons."""
    found = _with_records(home, lambda records: records.every(limit=limit))
    if as_json:
        out.print_json(json.dumps([record.to_json() for record in found]))
        return
    table = Table(title=f"Curated series ({len(found)})")
    for column in ("series", "label", "plane", "3D", "conf.", "decision", "reasons"):
        table.add_column(column, no_wrap=column == "series", overflow="fold")
    for record in found:
        table.add_row(
            record.series_instance_uid,
            record.label or "",
            record.orientation or "",
            "" if record.is3d is None else ("yes" if record.is3d else "no"),
            f"{record.confidence:.2f}" if record.confidence is not None else "",
            record.decision.value,
            "; ".join(record.decision_reasons),
        )
    print_table(table)


def decide(
    series: Annotated[str, typer.Argument(help="Series Instance UID.")],
    decision: Annotated[Decision, typer.Argument(help="approve, quarantine or exclude.")],
    comment: CommentOption,
    home: HomeOption = None,
    curator: CuratorOption = None,
) -> None:
    """Approve, quarantine or exclude a series, saying why (kept in its history)."""
    _with_records(
        home,
        lambda records: records.decide(series, decision, actor=_curator(curator), comment=comment),
    )
    out.print(f"{series}: {decision.value}")


def relabel(
    series: Annotated[str, typer.Argument(help="Series Instance UID.")],
    label: Annotated[str, typer.Argument(help="The right label (T1W, T2W, FLAIR, …).")],
    comment: CommentOption,
    home: HomeOption = None,
    curator: CuratorOption = None,
) -> None:
    """Correct a series' label (the classifier's stays in the history)."""
    _with_records(
        home,
        lambda records: records.relabel(series, label, actor=_curator(curator), comment=comment),
    )
    out.print(f"{series}: labelled {label}")


def history(
    series: Annotated[str, typer.Argument(help="Series Instance UID.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every classification, measurement and decision of a series: who, when, what, why."""
    events = _with_records(home, lambda records: records.history(series))
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {"at": e.at.isoformat(timespec="seconds"), "actor": e.actor,
                     "action": e.action, "detail": e.detail}
                    for e in events
                ]
            )
        )  # fmt: skip
        return
    table = Table(title=f"History of {series}")
    for column in ("when", "who", "what", "detail"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(
            event.at.strftime("%Y-%m-%d %H:%M:%S"),
            event.actor,
            event.action,
            json.dumps(event.detail, ensure_ascii=False),
        )
    print_table(table)


__all__ = ["decide", "history", "queue", "register", "relabel", "series_list"]
