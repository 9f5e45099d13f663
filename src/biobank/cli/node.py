"""Node commands: ``init``, ``ingest``, ``status``, ``ls …`` and ``verify``."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from biobank.catalog import ItemOutcome, ItemResult
from biobank.cli.common import (
    HomeOption,
    JsonOption,
    fail,
    home_of,
    item_progress,
    load_node,
    out,
    print_table,
)
from biobank.config import get_settings
from biobank.deid import DEFAULT_PROFILE
from biobank.errors import BiobankError
from biobank.ingest.fixity import VerifyReport, verify_node
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import IngestReport, ingest

ls_app = typer.Typer(help="List what the node holds.", no_args_is_help=True)
_DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d"]
LimitOption = Annotated[int, typer.Option(min=1, max=100_000, help="At most this many rows.")]
OffsetOption = Annotated[int, typer.Option(min=0, help="Skip this many rows.")]
_PROBLEMS = (ItemOutcome.CONFLICT, ItemOutcome.REJECTED, ItemOutcome.QUARANTINED)


def register(app: typer.Typer) -> None:
    """Add the node commands to ``app``."""
    app.command("init")(init)
    app.command("ingest")(ingest_command)
    app.command("status")(status)
    app.command("verify")(verify)
    app.add_typer(ls_app, name="ls")


def _log_to_node(node: Node) -> None:
    """Also log the run to ``<home>/logs/node.log`` (INFO; messages carry no PHI)."""
    node.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(node.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("biobank")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))


def init(
    home: HomeOption = None,
    site: Annotated[str, typer.Option(help="The site's name (e.g. the hospital).")] = "local",
    role: Annotated[
        NodeRole,
        typer.Option(
            help="site: de-identifies what it ingests; central: accepts only de-identified data."
        ),
    ] = NodeRole.SITE,
    profile: Annotated[
        str, typer.Option(help="De-identification profile of a site node (name or YAML file).")
    ] = DEFAULT_PROFILE,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="Use this existing site key (a project's shared secret) instead of generating one."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Catalogue in this database (e.g. postgresql://user@host/db) "
            "instead of the home's SQLite file."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a node home: catalogue, blob store, site key (0600), pseudonym map, node.yaml."""
    try:
        node = init_node(
            home_of(home),
            site=site,
            role=role,
            profile=profile,
            key_file=key_file,
            database_url=database_url,
        )
    except BiobankError as exc:
        raise fail(str(exc)) from None
    info = {
        "home": str(node.home),
        "node_id": node.config.node_id,
        "site": node.config.site,
        "role": node.role.value,
        "profile": node.config.profile if node.role is NodeRole.SITE else None,
        "catalog": _safe_url(node.catalog_url),
        "key": str(node.key_path) if node.role is NodeRole.SITE else None,
    }
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(f"created a {node.role.value} node in {node.home}", highlight=False)
    for label, value in info.items():
        if value is not None and label != "home":
            out.print(f"  {label:<8} {value}", highlight=False)
    if node.role is NodeRole.SITE:
        out.print("keep keys/site.key private and backed up: only it re-identifies patients")


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return url


def ingest_command(
    sources: Annotated[
        list[Path],
        typer.Argument(help="DICOM files, folders (recursive), .zip/.tar/.tar.gz archives."),
    ],
    home: HomeOption = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Worker processes (0: all cores).")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Ingest DICOM into the node: de-identify (site) or check (central), validate, store, index."""
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)}")
    node = load_node(home)
    _log_to_node(node)
    jobs = jobs or get_settings().jobs
    try:
        with item_progress(f"ingesting ({node.role.value})", quiet=as_json) as bar:
            task = bar.add_task("ingest", total=None, rate="", problems=0)
            seen = {"bytes": 0, "problems": 0}

            def tick(results: Sequence[ItemResult], size: int) -> None:
                seen["bytes"] += size
                seen["problems"] += sum(r.outcome in _PROBLEMS for r in results)
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(
                    task,
                    advance=len(results),
                    rate=f"{len(results) and seen['bytes'] / elapsed / 1e6:.0f} MB/s",
                    problems=seen["problems"],
                )

            report = ingest(node, sources, jobs=jobs, progress=tick)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: what was done is kept; run the same command again", 130) from None
    if as_json:
        document = report.to_json()
        out.print_json(json.dumps(document, ensure_ascii=False))
    else:
        _print_ingest(report)
    if report.inputs == 0:
        raise fail("no input files found", code=1)


def _print_ingest(report: IngestReport) -> None:
    summary = report.summary()
    out.print(f"[bold]ingest batch {report.batch_id}[/] ({report.role.value} node)")
    table = Table(show_header=False)
    for label, key in [
        ("inputs", "inputs"),
        ("stored", "stored"),
        ("duplicates", "duplicate"),
        ("conflicts", "conflict"),
        ("quarantined", "quarantined"),
        ("rejected", "rejected"),
        ("patients", "patients"),
        ("studies", "studies"),
        ("series", "series"),
        ("instances/s", "instances_per_second"),
        ("MB/s", "mb_per_second"),
        ("seconds", "seconds"),
    ]:
        table.add_row(label, str(summary[key]))
    out.print(table)
    for item in report.problems[:20]:
        out.print(
            f"[yellow]{item.outcome.value}[/]: {item.source_path}: {item.reason}", highlight=False
        )
    if len(report.problems) > 20:
        out.print(
            f"... and {len(report.problems) - 20} more: biobank ls problems --batch "
            f"{report.batch_id}"
        )


def status(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Counts, stored size and the last ingest batches of the node."""
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            stats = catalog.stats()
            batches = catalog.batches(limit=5)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    info: dict[str, Any] = {
        "home": str(node.home),
        "site": node.config.site,
        "role": node.role.value,
        "node_id": node.config.node_id,
        "catalog": _safe_url(node.catalog_url),
        **stats.to_json(),
        "last_batches": [b.to_json() for b in batches],
    }
    if as_json:
        out.print_json(json.dumps(info, ensure_ascii=False))
        return
    out.print(
        f"[bold]{node.config.site}[/] ({node.role.value} node) in {node.home}", highlight=False
    )
    out.print(f"catalogue: {info['catalog']}", highlight=False)
    counts = Table(show_header=False)
    for label in ("patients", "studies", "series", "instances"):
        counts.add_row(label, str(getattr(stats, label)))
    counts.add_row("stored", _size(stats.stored_bytes))
    for outcome, count in sorted(stats.problems.items()):
        counts.add_row(f"{outcome} (all batches)", str(count))
    out.print(counts)
    _print_batches(batches)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


_BATCH_COUNTS = (
    "started",
    "state",
    "received",
    "stored",
    "duplicate",
    "conflict",
    "rejected",
    "quarantined",
)


def _print_batches(batches: Sequence[Any]) -> None:
    if not batches:
        out.print("no ingest batches yet: biobank ingest FOLDER")
        return
    table = Table(title="Last batches")
    table.add_column("batch", no_wrap=True, min_width=32)
    for column in _BATCH_COUNTS:
        table.add_column(column, overflow="fold")
    for b in batches:
        data = b.to_json()
        counts = (_cell(data.get(c)) for c in _BATCH_COUNTS[2:])
        table.add_row(b.batch_id, _when(b.started_at), _cell(data.get("state")), *counts)
    print_table(table)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _emit(rows: Sequence[Any], columns: list[tuple[str, str]], as_json: bool, title: str) -> None:
    if as_json:
        out.print_json(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
        return
    if not rows:
        out.print(f"no {title}")
        return
    table = Table(title=f"{len(rows)} {title}")
    cells = [[_cell(row.to_json().get(key)) for key, _ in columns] for row in rows]
    for n, (_, header) in enumerate(columns):
        if n == 0:  # the identifier is what one copies from here: never cut or folded
            table.add_column(header, no_wrap=True, min_width=max(len(r[0]) for r in cells))
        else:
            table.add_column(header, overflow="fold")
    for row_cells in cells:
        table.add_row(*row_cells)
    print_table(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _listing(home: Path | None, call: Any) -> Any:
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            return call(catalog)
    except BiobankError as exc:
        raise fail(str(exc)) from None


@ls_app.command("patients")
def ls_patients(
    home: HomeOption = None,
    pseudonym: Annotated[str | None, typer.Option(help="Pseudonym; * and ? match.")] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Patients (pseudonyms only)."""
    rows = _listing(
        home, lambda c: c.find_patients(patient_pseudonym=pseudonym, limit=limit, offset=offset)
    )
    _emit(
        rows,
        [
            ("patient_pseudonym", "patient"),
            ("patient_sex", "sex"),
            ("patient_birth_date", "birth date"),
            ("number_of_studies", "studies"),
        ],
        as_json,
        "patients",
    )


@ls_app.command("studies")
def ls_studies(
    home: HomeOption = None,
    patient: Annotated[str | None, typer.Option(help="Patient pseudonym; * and ? match.")] = None,
    study: Annotated[str | None, typer.Option(help="Study Instance UID.")] = None,
    date_from: Annotated[
        dt.datetime | None,
        typer.Option("--from", formats=_DATE_FORMATS, help="On or after (YYYY-MM-DD)."),
    ] = None,
    date_to: Annotated[
        dt.datetime | None,
        typer.Option("--to", formats=_DATE_FORMATS, help="On or before (YYYY-MM-DD)."),
    ] = None,
    modality: Annotated[str | None, typer.Option(help="With a series of this modality.")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession number; * and ? match.")] = None,
    description: Annotated[
        str | None, typer.Option(help="Study description; * and ? match.")
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Studies, by patient, date range, modality, accession or description."""
    if date_from and date_to and date_from > date_to:
        raise fail("--from is after --to")
    rows = _listing(
        home,
        lambda c: c.find_studies(
            patient_pseudonym=patient,
            study_instance_uid=study,
            date_from=date_from.date() if date_from else None,
            date_to=date_to.date() if date_to else None,
            modality=modality,
            accession_number=accession,
            study_description=description,
            limit=limit,
            offset=offset,
        ),
    )
    _emit(
        rows,
        [
            ("study_instance_uid", "study"),
            ("patient_pseudonym", "patient"),
            ("study_date", "date"),
            ("modalities_in_study", "modalities"),
            ("number_of_series", "series"),
            ("number_of_instances", "instances"),
            ("study_description", "description"),
        ],
        as_json,
        "studies",
    )


@ls_app.command("series")
def ls_series(
    home: HomeOption = None,
    study: Annotated[str | None, typer.Option(help="Study Instance UID.")] = None,
    series: Annotated[str | None, typer.Option(help="Series Instance UID.")] = None,
    modality: Annotated[str | None, typer.Option(help="Modality (CT, MR, …).")] = None,
    description: Annotated[
        str | None, typer.Option(help="Series description; * and ? match.")
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Series, by study, modality or description."""
    rows = _listing(
        home,
        lambda c: c.find_series(
            study_instance_uid=study,
            series_instance_uid=series,
            modality=modality,
            series_description=description,
            limit=limit,
            offset=offset,
        ),
    )
    _emit(
        rows,
        [
            ("series_instance_uid", "series"),
            ("modality", "modality"),
            ("series_number", "number"),
            ("number_of_instances", "instances"),
            ("series_description", "description"),
        ],
        as_json,
        "series",
    )


@ls_app.command("instances")
def ls_instances(
    home: HomeOption = None,
    series: Annotated[str | None, typer.Option(help="Series Instance UID.")] = None,
    study: Annotated[str | None, typer.Option(help="Study Instance UID.")] = None,
    limit: LimitOption = 1000,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Instances of a series or study, with their blob digests."""
    if not series and not study:
        raise fail("name a --series or a --study")
    rows = _listing(
        home,
        lambda c: c.find_instances(
            series_instance_uid=series, study_instance_uid=study, limit=limit, offset=offset
        ),
    )
    _emit(
        rows,
        [
            ("sop_instance_uid", "instance"),
            ("instance_number", "number"),
            ("rows", "rows"),
            ("columns", "columns"),
            ("blob_size", "bytes"),
        ],
        as_json,
        "instances",
    )


@ls_app.command("problems")
def ls_problems(
    home: HomeOption = None,
    batch: Annotated[str | None, typer.Option(help="Only this ingest batch.")] = None,
    outcome: Annotated[
        list[ItemOutcome] | None,
        typer.Option(help="conflict, rejected or quarantined (repeatable; default all three)."),
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Items that were rejected, quarantined or in conflict, with the reason (newest first)."""
    chosen = tuple(outcome) if outcome else _PROBLEMS
    rows = _listing(
        home, lambda c: c.problems(outcomes=chosen, batch_id=batch, limit=limit, offset=offset)
    )
    if as_json or not rows:
        _emit(rows, [("source_path", "item")], as_json, "problems")
        return
    for row in rows:  # a list, not a table: paths and reasons are long and must be read whole
        out.print(f"[yellow]{row.outcome.value}[/] {row.source_path}", highlight=False)
        out.print(f"  {row.reason}", highlight=False)
        out.print(f"  [dim]batch {row.batch_id}[/]", highlight=False)
    if len(rows) == limit:
        out.print(f"(first {limit}; --offset {offset + limit} for more)")


@ls_app.command("batches")
def ls_batches(
    home: HomeOption = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """Ingest batches, newest first, with their counts."""
    rows = _listing(home, lambda c: c.batches(limit=limit))
    if as_json:
        out.print_json(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
    else:
        _print_batches(rows)


def verify(
    home: HomeOption = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Remove orphan blobs; move corrupt ones aside.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-hash every blob and check every catalogue row has its blob (fixity)."""
    node = load_node(home)
    try:
        report = verify_node(node, repair=repair)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        _print_verify(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_verify(report: VerifyReport) -> None:
    out.print(
        f"{report.blobs_checked} blobs re-hashed, {report.rows_checked} catalogue "
        "references checked"
    )
    if report.ok and not report.orphans:
        out.print("[green]ok[/]: every blob matches its hash and every row has its blob")
    for digest in report.corrupt[:20]:
        uids = report.corrupt_referenced.get(digest)
        what = f" (instances {', '.join(uids[:3])})" if uids else " (no row names it)"
        out.print(f"[red]corrupt[/]: blob {digest}{what}", highlight=False)
    for relative in report.misplaced[:20]:
        out.print(f"[red]misplaced[/]: {relative} is not where its name says", highlight=False)
    for digest, uids in list(report.missing.items())[:20]:
        out.print(f"[red]missing[/]: blob {digest} of {', '.join(uids[:3])}", highlight=False)
    if report.orphans:
        verb = "removed" if report.repaired else "found (run verify --repair to remove)"
        out.print(f"{len(report.orphans)} orphan blob(s) {verb}")
    if report.moved_aside:
        out.print(f"{report.moved_aside} corrupt or misplaced file(s) moved to blobs/corrupt/")
    if report.unfixable:
        out.print(
            f"[yellow]{report.unfixable} instance(s) must be restored by ingesting their "
            "source again[/] (the same bytes put the blob back)"
        )


__all__ = ["register"]
