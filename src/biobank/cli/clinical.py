"""``biobank clinical …``: forms, import, records, curation summaries and data queries.

``import`` validates, pseudonymises and stores the records of a CSV or JSON file and prints
a table of every problem (record, field, value, rule, message, hint); it exits 1 when any
record was rejected (``--allow-rejected``: 0, for demos and scripts that read the report),
2 when the import could not run at all. ``summary`` and ``outliers`` are the curator's view
of a form's data; ``queries`` and ``query raise|answer|close|reopen|show`` are the data
queries between curators and data providers (docs/clinical.md).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from biobank.api.clinical import (
    clinical_service,
    data_queries,
    form_json,
    form_overview,
    form_registry,
)
from biobank.catalog import Catalog
from biobank.catalog.clinical import ClinicalRecords
from biobank.catalog.data_queries import DataQueries, DataQuery, QueryState
from biobank.cli.common import HomeOption, JsonOption, console, fail, load_node, out, print_table
from biobank.clinical.forms import FormRegistry
from biobank.clinical.quality import DEFAULT_THRESHOLD, outliers, summarise
from biobank.clinical.service import ImportReport
from biobank.clinical.sources import read_records
from biobank.errors import BiobankError, InvalidInput
from biobank.ingest.node import Node

T = TypeVar("T")

clinical_app = typer.Typer(
    help="Clinical data: forms, import, records, summaries, outliers and data queries.",
    no_args_is_help=True,
)
query_app = typer.Typer(
    help="Raise, answer, close, reopen or show one data query.", no_args_is_help=True
)
clinical_app.add_typer(query_app, name="query")

ActorOption = Annotated[
    str | None,
    typer.Option("--as", help="Who acts (default: the login name).", show_default=False),
]
FormArgument = Annotated[str, typer.Argument(metavar="FORM", help="The form's name.")]


def register(app: typer.Typer) -> None:
    """Add ``clinical`` to ``app``."""
    app.add_typer(clinical_app, name="clinical")


@dataclass
class _Opened:
    node: Node
    catalog: Catalog
    forms: FormRegistry

    @property
    def queries(self) -> DataQueries:
        return data_queries(self.catalog, self.forms)


@contextmanager
def _opened(home: Path | None) -> Iterator[_Opened]:
    """The node, its catalogue and its forms; an error ends the command with its reason."""
    node = load_node(home)
    try:
        forms = form_registry(node)
        with node.open_catalog() as catalog:
            yield _Opened(node, catalog, forms)
    except BiobankError as exc:
        raise fail(str(exc)) from None


def _run(home: Path | None, call: Callable[[_Opened], T]) -> T:
    with _opened(home) as opened:
        return call(opened)


def _actor(name: str | None) -> str:
    return name or getpass.getuser()


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, ensure_ascii=False, default=str))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# -- forms -----------------------------------------------------------------------------------


@clinical_app.command("forms")
def forms_command(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """List the clinical forms the node knows (built-in and configured in node.yaml)."""
    found = _run(home, lambda o: [form_overview(form) for form in o.forms])
    if as_json:
        _print_json(found)
        return
    table = Table(title=f"Clinical forms ({len(found)})")
    for column in ("form", "version", "title", "variables", "rules", "key"):
        table.add_column(column, overflow="fold")
    for form in found:
        table.add_row(
            form["name"],
            str(form["version"]),
            form["title"],
            str(form["variables"]),
            str(form["rules"]),
            ", ".join(form["key"]) or "(one per patient)",
        )
    print_table(table)


@clinical_app.command("form")
def form_command(name: FormArgument, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Show a form: its variables (type, unit, codes, range, conditions) and rules."""
    definition = _run(home, lambda o: o.forms.get(name))
    if as_json:
        _print_json(form_json(definition))
        return
    out.print(
        f"[bold]{definition.name}[/] v{definition.version}: {definition.title}", highlight=False
    )
    if definition.description:
        out.print(definition.description.strip(), highlight=False)
    table = Table(title="Variables")
    for column in ("variable", "type", "unit", "allowed", "required", "OMOP"):
        table.add_column(column, overflow="fold")
    for variable in definition.variables:
        if variable.codes:
            allowed = ", ".join(code.value for code in variable.codes)
        elif variable.minimum is not None or variable.maximum is not None:
            allowed = f"{_cell(variable.minimum)}..{_cell(variable.maximum)}"
        else:
            allowed = variable.pattern or ""
        if variable.required:
            required = "yes"
        elif variable.required_when:
            required = "when " + " and ".join(
                f"{c.field} {c.op.value} {_cell(c.value)}".strip() for c in variable.required_when
            )
        else:
            required = ""
        omop = variable.omop
        table.add_row(
            variable.name,
            variable.type.value,
            variable.unit or "",
            allowed,
            required,
            f"{omop.table.value}{'.' + omop.column if omop.column else ''}" if omop else "",
        )
    print_table(table)
    if definition.rules:
        rules = Table(title="Rules")
        for column in ("rule", "check", "severity", "message"):
            rules.add_column(column, overflow="fold")
        for rule in definition.rules:
            rules.add_row(
                rule.name,
                f"{rule.left} {rule.op.value} {rule.right}",
                rule.severity.value,
                rule.message,
            )
        print_table(rules)


# -- import ----------------------------------------------------------------------------------


def _problems_table(report: ImportReport, csv: bool) -> Table:
    """Record, field, value, rule, then the message with what to do (warnings in yellow)."""
    table = Table(title=f"Problems ({len(report.issues)})", show_lines=True)
    table.add_column("record", no_wrap=True)
    table.add_column("field", no_wrap=True)
    table.add_column("value", max_width=24, overflow="fold")
    table.add_column("rule", no_wrap=True)
    table.add_column("message → what to do", ratio=1, overflow="fold")
    for issue in report.issues:
        where = f"#{issue.record}"
        if csv:
            where += f" (line {issue.record + 2})"
        if issue.record_key:
            where += f"\n{issue.record_key}"
        warning = issue.severity.value == "warning"
        table.add_row(
            Text(where),
            Text(issue.field or ""),
            Text(_cell(issue.value)),
            Text(issue.rule + ("\n(warning)" if warning else "")),
            Text(f"{issue.message}\n→ {issue.hint}" if issue.hint else issue.message),
            style="yellow" if warning else None,
        )
    return table


@clinical_app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv or .json file of records.")],
    form: Annotated[str, typer.Option("--form", "-f", help="The form of the records.")],
    home: HomeOption = None,
    submitter: ActorOption = None,
    allow_rejected: Annotated[
        bool,
        typer.Option(
            "--allow-rejected",
            help="Exit 0 even if some records were rejected (they are still reported).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate, pseudonymise and store the records of FILE; report every problem.

    Valid records are stored, invalid ones reported (record, field, value, rule, message,
    hint) — never silently dropped. A corrected record sent again replaces its previous
    version (kept in its history) and answers the data queries open on it. Exits 1 when a
    record was rejected, unless --allow-rejected.
    """
    user = _actor(submitter)

    def run(opened: _Opened) -> tuple[ImportReport, int]:
        records = read_records(path)
        if not records:
            raise InvalidInput(f"{path}: holds no record")
        service = clinical_service(opened.node, opened.catalog, opened.forms)
        report = service.import_records(form, records, submitter=user, channel="cli")
        return report, report.answered_queries

    report, answered = _run(home, run)
    if as_json:
        _print_json(report.to_json())
    else:
        if report.issues:
            print_table(_problems_table(report, path.suffix.lower() == ".csv"))
        counts = report.counts()
        summary = ", ".join(
            f"{counts[name]} {name}"
            for name in ("created", "updated", "unchanged", "rejected", "failed")
            if counts[name] or name != "failed"
        )
        colour = "green" if report.ok else "red"
        if answered:
            summary += f"; {answered} data quer{'y' if answered == 1 else 'ies'} answered"
        console.print(
            f"[{colour}]{form}: {counts['received']} record(s): {summary}[/]", highlight=False
        )
        if not report.ok:
            console.print(
                "fix the rejected records (see the problems) and import the file again: "
                "stored records come back unchanged",
                highlight=False,
            )
    if not report.ok and not allow_rejected:
        raise typer.Exit(1)


# -- records ---------------------------------------------------------------------------------


@clinical_app.command("records")
def records_command(
    home: HomeOption = None,
    form: Annotated[str | None, typer.Option(help="Only records of this form.")] = None,
    site: Annotated[str | None, typer.Option(help="Only records of this site.")] = None,
    pseudonym: Annotated[str | None, typer.Option(help="Only this patient's records.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOption = False,
) -> None:
    """List clinical records (current versions; pseudonymised, dates shifted)."""
    found = _run(
        home,
        lambda o: ClinicalRecords(o.catalog).records(
            form, site, patient_pseudonym=pseudonym, limit=limit, offset=offset
        ),
    )
    if as_json:
        _print_json([record.to_json() for record in found])
        return
    table = Table(title=f"Clinical records ({len(found)})")
    for column in ("id", "form", "pseudonym", "key", "site", "version", "updated", "by"):
        table.add_column(column, overflow="fold")
    for record in found:
        table.add_row(
            str(record.id),
            record.form,
            record.patient_pseudonym,
            record.record_key,
            record.site,
            str(record.version),
            record.updated_at.strftime("%Y-%m-%d %H:%M"),
            record.submitter,
        )
    print_table(table)


@clinical_app.command("history")
def history_command(
    record_id: Annotated[int, typer.Argument(metavar="ID", help="The record's id.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """A record's current values and every version: who sent it, when, what changed."""

    def read(opened: _Opened) -> dict[str, Any]:
        records = ClinicalRecords(opened.catalog)
        body = records.get(record_id).to_json()
        body["history"] = [version.to_json() for version in records.history(record_id)]
        body["queries"] = [q.to_json() for q in opened.queries.list(record_id=record_id)]
        return body

    body = _run(home, read)
    if as_json:
        _print_json(body)
        return
    out.print(
        f"[bold]record {body['id']}[/]: {body['form']} of {body['patient_pseudonym']} "
        f"{body['record_key']} ({body['site']}), version {body['version']}",
        highlight=False,
    )
    values = Table(title="Current values")
    values.add_column("field")
    values.add_column("value", overflow="fold")
    for name, value in body["values"].items():
        values.add_row(name, _cell(value))
    print_table(values)
    versions = Table(title="Versions")
    for column in ("version", "submitted", "by", "import", "changed fields", "sha256"):
        versions.add_column(column, overflow="fold")
    for version in body["history"]:
        versions.add_row(
            str(version["version"]),
            version["submitted_at"],
            version["submitter"],
            version["import_id"] or "",
            ", ".join(version["changed_fields"]),
            version["raw_digest"][:16],
        )
    print_table(versions)
    if body["queries"]:
        print_table(_queries_table("Data queries", [_query_row(q) for q in body["queries"]]))


# -- curation --------------------------------------------------------------------------------


def _distribution_text(kind: str, dist: dict[str, Any]) -> str:
    if dist.get("n", 0) == 0:
        return ""
    if kind in ("number", "integer"):
        return (
            f"median {dist['median']:.4g} (p25 {dist['p25']:.4g}, p75 {dist['p75']:.4g}), "
            f"range {dist['min']:.4g}..{dist['max']:.4g}, mean {dist['mean']:.4g}"
        )
    if kind == "code":
        parts = [f"{code} {n}" for code, n in dist["counts"].items()]
        if dist.get("other"):
            parts.append(f"other {dist['other']}")
        return ", ".join(parts)
    if kind == "date":
        return f"{dist['min']}..{dist['max']}"
    if kind == "boolean":
        return f"true {dist['true']}, false {dist['false']}"
    return f"{dist['distinct']} distinct"


@clinical_app.command("summary")
def summary_command(
    form: FormArgument,
    home: HomeOption = None,
    site: Annotated[str | None, typer.Option(help="Show this site's figures.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Completeness and distribution of every variable of FORM (overall and per site).

    A variable required only under a condition (e.g. the cause of death when deceased) is
    counted complete against the records where the condition holds.
    """
    summary = _run(
        home,
        lambda o: summarise(o.forms.get(form), ClinicalRecords(o.catalog).form_values(form)),
    )
    body = summary.to_json()
    if as_json:
        _print_json(body)
        return
    if site is not None:
        if site not in body["sites"]:
            raise fail(f"no record of form {form} from site {site!r}; sites: "
                       f"{', '.join(body['sites']) or 'none'}")  # fmt: skip
        variables = body["sites"][site]["variables"]
        title = f"{form} at {site}: {body['sites'][site]['records']} record(s)"
    else:
        variables = body["variables"]
        sites = ", ".join(f"{name} {s['records']}" for name, s in body["sites"].items())
        title = f"{form}: {body['records']} record(s)" + (f" ({sites})" if sites else "")
    table = Table(title=title)
    for column in ("variable", "type", "complete", "n", "distribution"):
        table.add_column(column, overflow="fold")
    for variable in variables:
        done = variable["completeness"]
        ratio = done["ratio"]
        complete = f"{done['present']}/{done['expected']}" + (
            f" ({ratio:.0%})" if ratio is not None else ""
        )
        if done["conditional"]:
            complete += " *"
        table.add_row(
            variable["name"],
            variable["type"],
            complete,
            str(variable["distribution"].get("n", 0)),
            _distribution_text(variable["type"], variable["distribution"]),
        )
    print_table(table)
    console.print("* counted where the variable's condition holds", highlight=False)


@clinical_app.command("outliers")
def outliers_command(
    form: FormArgument,
    home: HomeOption = None,
    threshold: Annotated[
        float, typer.Option(min=0.01, help="Flag |modified z| above this.")
    ] = DEFAULT_THRESHOLD,
    field: Annotated[
        list[str] | None, typer.Option("--field", help="Only this variable (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Values of FORM's numeric variables that stand out (modified z-score, Iglewicz-Hoaglin).

    z = 0.6745 (x - median) / MAD (the mean absolute deviation x 1.253314 when MAD is 0);
    a variable with fewer than 10 values is not scored. Raise a data query on a suspicious
    value with `biobank clinical query raise RECORD --field F -m "..."`.
    """

    def score(opened: _Opened) -> list[Any]:
        try:
            return outliers(
                opened.forms.get(form),
                ClinicalRecords(opened.catalog).form_values(form),
                threshold,
                fields=field,
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    found = _run(home, score)
    if as_json:
        _print_json([o.to_json() for o in found])
        return
    table = Table(title=f"Outliers of {form} (|z| > {threshold:g}): {len(found)}")
    for column in ("record", "pseudonym", "site", "field", "value", "z", "median", "MAD", "dir"):
        table.add_column(column, overflow="fold")
    for o in found:
        table.add_row(
            str(o.record_id),
            o.pseudonym,
            o.site,
            o.field,
            f"{o.value:g}",
            f"{o.z:.2f}",
            f"{o.median:g}",
            f"{o.mad:g}" if o.scale == "mad" else "0 (mean AD)",
            o.direction,
        )
    print_table(table)


# -- data queries ----------------------------------------------------------------------------


def _query_row(query: dict[str, Any]) -> list[str]:
    return [
        str(query["id"]),
        query["state"],
        query["site"],
        query["form"],
        str(query["record_id"]),
        query["patient_pseudonym"],
        query["field"] or "(record)",
        query["raised_by"],
        query["updated_at"],
        query["message"],
    ]


def _queries_table(title: str, rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in (
        "id",
        "state",
        "site",
        "form",
        "record",
        "pseudonym",
        "field",
        "raised by",
        "updated",
        "message",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


@clinical_app.command("queries")
def queries_command(
    home: HomeOption = None,
    site: Annotated[str | None, typer.Option(help="Only this site's queries.")] = None,
    state: Annotated[QueryState | None, typer.Option(help="Only queries in this state.")] = None,
    form: Annotated[str | None, typer.Option(help="Only queries on records of this form.")] = None,
    record: Annotated[int | None, typer.Option(help="Only queries on this record.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOption = False,
) -> None:
    """List data queries (oldest first) with their counts per site and state."""

    def read(opened: _Opened) -> tuple[list[DataQuery], dict[str, dict[str, int]]]:
        queries = opened.queries
        found = queries.list(
            site=site, state=state, form=form, record_id=record, limit=limit, offset=offset
        )
        return found, queries.counts(site=site, form=form)

    found, counts = _run(home, read)
    if as_json:
        _print_json({"counts": counts, "queries": [q.to_json() for q in found]})
        return
    per_site = "; ".join(
        f"{name}: " + ", ".join(f"{n} {s}" for s, n in states.items())
        for name, states in counts.items()
    )
    rows = [_query_row(q.to_json()) for q in found]
    print_table(_queries_table(f"Data queries ({len(found)})", rows))
    console.print(per_site or "no data query yet", highlight=False)


def _show(query: DataQuery, as_json: bool) -> None:
    if as_json:
        _print_json(query.to_json())
        return
    key = f" {query.record_key}" if query.record_key else ""
    out.print(
        f"[bold]query {query.id}[/] ({query.state.value}) on record {query.record_id} "
        f"({query.form}, {query.patient_pseudonym}{key}), "
        f"field {query.field or '(whole record)'}, site {query.site}",
        highlight=False,
    )
    table = Table(title="History")
    for column in ("when", "who", "what", "record version", "text"):
        table.add_column(column, overflow="fold")
    for event in query.history:
        table.add_row(
            event.at.strftime("%Y-%m-%d %H:%M:%S"),
            event.actor,
            event.action.value,
            _cell(event.record_version),
            event.text or "",
        )
    print_table(table)


QueryIdArgument = Annotated[int, typer.Argument(metavar="ID", help="The query's id.")]


@query_app.command("raise")
def raise_command(
    record_id: Annotated[int, typer.Argument(metavar="RECORD", help="The record's id.")],
    message: Annotated[str, typer.Option("--message", "-m", help="The question (required).")],
    field: Annotated[
        str | None, typer.Option("--field", help="The variable asked about (default: the record).")
    ] = None,
    home: HomeOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the data provider about a record or one of its fields (a curator's step)."""
    query = _run(home, lambda o: o.queries.raise_query(record_id, field, message, _actor(actor)))
    _show(query, as_json)


@query_app.command("answer")
def answer_command(
    query_id: QueryIdArgument,
    text: Annotated[str, typer.Option("--text", "-m", help="The answer (required).")],
    home: HomeOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a query (the data provider's step; or re-import the corrected record)."""
    query = _run(home, lambda o: o.queries.answer(query_id, text, _actor(actor)))
    _show(query, as_json)


@query_app.command("close")
def close_command(
    query_id: QueryIdArgument,
    text: Annotated[str | None, typer.Option("--text", "-m", help="A closing comment.")] = None,
    home: HomeOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close a query: the matter is settled (a curator's step)."""
    query = _run(home, lambda o: o.queries.close(query_id, _actor(actor), text))
    _show(query, as_json)


@query_app.command("reopen")
def reopen_command(
    query_id: QueryIdArgument,
    text: Annotated[str, typer.Option("--text", "-m", help="Why it is reopened (required).")],
    home: HomeOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reopen a closed query, saying why (a curator's step)."""
    query = _run(home, lambda o: o.queries.reopen(query_id, _actor(actor), text))
    _show(query, as_json)


@query_app.command("show")
def show_command(
    query_id: QueryIdArgument, home: HomeOption = None, as_json: JsonOption = False
) -> None:
    """Show a query with its history: raised, answered, corrected, closed, reopened."""
    query = _run(home, lambda o: o.queries.get(query_id))
    _show(query, as_json)


__all__ = ["clinical_app", "query_app", "register"]
