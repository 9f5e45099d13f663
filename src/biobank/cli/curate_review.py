"""``biobank curate queue|series|decide|decide-study|study|relabel|history``: the review.

``queue`` and ``series`` filter by the search facets (``--label``, ``--decision``,
``--manufacturer``, ``--needs-review``); ``decide-study`` decides every series of a study at
once and ``study`` shows a study's state (docs/curation.md).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from biobank.catalog.curation import (
    CurationFilter,
    CurationRecords,
    Decision,
    SeriesCurationRecord,
    StudyCuration,
)
from biobank.cli.common import HomeOption, JsonOption, fail, load_node, out, print_table
from biobank.errors import BiobankError

T = TypeVar("T")

CuratorOption = Annotated[
    str | None,
    typer.Option("--curator", help="Who decides (default: the login name)."),
]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why (required).")]
LabelOption = Annotated[
    str | None, typer.Option("--label", help="Only this label (T2W, DWI, …; any case).")
]
ManufacturerOption = Annotated[
    str | None,
    typer.Option("--manufacturer", help="Only this manufacturer (any case; UNKNOWN for none)."),
]
NeedsReviewOption = Annotated[
    bool | None,
    typer.Option(
        "--needs-review/--reviewed",
        help="Only series whose label needs review (or only those that do not).",
        show_default=False,
    ),
]


def register(curate_app: typer.Typer) -> None:
    """Add the review commands to ``biobank curate``."""
    curate_app.command("queue")(queue)
    curate_app.command("series")(series_list)
    curate_app.command("decide")(decide)
    curate_app.command("decide-study")(decide_study)
    curate_app.command("study")(study)
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
    label: LabelOption = None,
    manufacturer: ManufacturerOption = None,
    needs_review: NeedsReviewOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List series to review, with the reasons (look at one: `biobank curate sheet`)."""
    where = CurationFilter(label=label, manufacturer=manufacturer, needs_review=needs_review)
    found = _with_records(home, lambda records: records.queue(decision, limit=limit, where=where))
    if as_json:
        out.print_json(json.dumps([record.to_json() for record in found]))
        return
    table = Table(title=f"Series: {decision.value} ({len(found)})")
    for column in ("series", "label", "manufacturer", "confidence", "by", "reasons"):
        table.add_column(column, no_wrap=column == "series", overflow="fold")
    for record in found:
        table.add_row(
            record.series_instance_uid,
            record.label or "",
            record.manufacturer,
            f"{record.confidence:.2f}" if record.confidence is not None else "",
            record.decided_by or record.decision_source,
            "; ".join(record.decision_reasons),
        )
    print_table(table)


def series_list(
    home: HomeOption = None,
    label: LabelOption = None,
    decision: Annotated[
        Decision | None, typer.Option(help="Only series with this decision.")
    ] = None,
    manufacturer: ManufacturerOption = None,
    needs_review: NeedsReviewOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    facets: Annotated[
        bool, typer.Option("--facets", help="Print the counts by decision, label, manufacturer.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Curated series (filtered by facets): label, orientation, QC decision and reasons.

    With --facets, the counts of the matching series by decision, label and manufacturer.
    """
    where = CurationFilter(
        label=label, decision=decision, manufacturer=manufacturer, needs_review=needs_review
    )
    if facets:
        counts = _with_records(home, lambda records: records.facets(where))
        if as_json:
            out.print_json(json.dumps(counts))
            return
        table = Table(title="Curated series by facet")
        for column in ("facet", "value", "series"):
            table.add_column(column)
        for name, values in counts.items():
            for value, n in sorted(values.items(), key=lambda item: (-item[1], item[0])):
                table.add_row(name, value, str(n))
        print_table(table)
        return
    found = _with_records(home, lambda records: records.find(where, limit, offset))
    if as_json:
        out.print_json(json.dumps([record.to_json() for record in found]))
        return
    print_table(_series_table(f"Curated series ({len(found)})", found))


def _series_table(title: str, found: list[SeriesCurationRecord]) -> Table:
    table = Table(title=title)
    columns = ("series", "label", "vendor", "plane", "3D", "conf.", "decision", "reasons")
    for column in columns:
        table.add_column(column, no_wrap=column == "series", overflow="fold")
    for record in found:
        table.add_row(
            record.series_instance_uid,
            record.label or "",
            record.manufacturer,
            record.orientation or "",
            "" if record.is3d is None else ("yes" if record.is3d else "no"),
            f"{record.confidence:.2f}" if record.confidence is not None else "",
            record.decision.value,
            "; ".join(record.decision_reasons),
        )
    return table


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


def decide_study(
    study_uid: Annotated[str, typer.Argument(metavar="STUDY", help="Study Instance UID.")],
    decision: Annotated[Decision, typer.Argument(help="approve, quarantine or exclude.")],
    comment: CommentOption,
    home: HomeOption = None,
    curator: CuratorOption = None,
) -> None:
    """Approve, quarantine or exclude every series of a study, saying why.

    Each series gets the decision and a history entry naming the study.
    """
    count = _with_records(
        home,
        lambda records: records.decide_study(
            study_uid, decision, actor=_curator(curator), comment=comment
        ),
    )
    out.print(f"{study_uid}: {decision.value} ({count} series)", highlight=False)


def study(
    study_uid: Annotated[str, typer.Argument(metavar="STUDY", help="Study Instance UID.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """A study's state (approve, quarantine, exclude, mixed, pending) and its series.

    quarantine if any series is quarantined; approve if all are approved; exclude if all are
    excluded; pending if any is undecided; else mixed.
    """
    found: StudyCuration = _with_records(home, lambda records: records.study_state(study_uid))
    if as_json:
        out.print_json(json.dumps(found.to_json()))
        return
    counts = ", ".join(f"{n} {name}" for name, n in found.counts.items() if n)
    title = f"Study {study_uid}: {found.state.value} ({counts or 'no series'})"
    print_table(_series_table(title, found.series))
    for uid in found.uncurated:
        out.print(f"{uid}: not curated yet (pending)", highlight=False)


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


__all__ = [
    "decide",
    "decide_study",
    "history",
    "queue",
    "register",
    "relabel",
    "series_list",
    "study",
]
