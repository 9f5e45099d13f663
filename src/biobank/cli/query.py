"""``biobank query FILE.json``: count a cohort in the node's catalogue.

The file holds a Lens/EUCAIM AST (with or without its ``{"id", "ast"}`` envelope, plus an
optional ``"stratify"``) or a Beacon v2 request body; see docs/cohorts.md.

Whoever runs the CLI has the node home (its catalogue, its keys): the node's operator. The
command therefore prints **exact** counts by default, labelled as such — they must not be
passed on. ``--protected`` prints what would leave the node instead (the ``cohorts:``
policy of ``node.yaml``: small counts as the threshold, the rest rounded), as researchers
and federated queries receive them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from biobank.cli.common import HomeOption, JsonOption, fail, load_node, out, print_table
from biobank.datasets import CountPolicy, count, noise_secret, parse_query
from biobank.datasets.service import CohortResult, CountSet
from biobank.errors import BiobankError, InvalidQuery


def register(app: typer.Typer) -> None:
    """Add ``query`` to ``app``."""
    app.command("query")(query)


def _read(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text("utf-8")
    except OSError as exc:
        raise InvalidQuery(f"{path}: cannot read the query ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidQuery(f"{path}: not UTF-8 text; save the query as JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidQuery(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _cell(counts: CountSet, name: str) -> str:
    found = getattr(counts, name)
    mark = {"exact": "", "imprecise": "≤", "rounded": "~"}[found.precision.value]
    return f"{mark}{found.value:,}"


def _print(result: CohortResult, source: str) -> None:
    label = (
        "exact counts — for this node's operator only; do not pass them on"
        if result.exact
        else (
            f"protected counts (as they leave the node: below {result.policy.threshold} → "
            f"≤{result.policy.threshold}, others rounded to {result.policy.rounding})"
        )
    )
    out.print(f"[bold]{source}[/]: {label}", highlight=False, soft_wrap=True)
    table = Table()
    strata_keys = list(result.strata[0].values) if result.strata else []
    for column in (*strata_keys, "persons", "studies", "series"):
        table.add_column(column, justify="left" if column in strata_keys else "right")
    for stratum in result.strata:
        table.add_row(
            *(stratum.values[k] for k in strata_keys),
            *(_cell(stratum.counts, name) for name in ("persons", "studies", "series")),
        )
    table.add_row(
        *(["[bold]total"] + [""] * (len(strata_keys) - 1) if strata_keys else []),
        *(f"[bold]{_cell(result.total, name)}" for name in ("persons", "studies", "series")),
    )
    print_table(table)


def query(
    file: Annotated[
        Path, typer.Argument(help="The query: Lens AST or Beacon request JSON ('-': stdin).")
    ],
    home: HomeOption = None,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact/--protected",
            help="Exact counts (default; the node's operator) or those that would leave the "
            "node (small counts hidden, rounded).",
        ),
    ] = True,
    stratify: Annotated[
        list[str] | None,
        typer.Option(
            "--stratify",
            "-s",
            help="Group the counts (repeatable): gender, age_decade, diagnosis, modality, "
            "body_part, manufacturer, series_label, orientation, curation_decision.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Count the persons, studies and series of a cohort (Lens/EUCAIM AST or Beacon v2)."""
    node = load_node(home)
    try:
        data = _read(file)
        if stratify:
            if not isinstance(data, dict) or "query" in data:
                raise InvalidQuery("--stratify applies to a Lens AST query, not a Beacon body")
            data = {**data, "stratify": stratify}
        parsed = parse_query(data)
        policy = CountPolicy.from_mapping(node.section("cohorts"), str(node.config_path))
        secret = noise_secret(node.home) if policy.epsilon is not None and not exact else None
        with node.open_catalog() as catalog:
            result = count(catalog, parsed, exact_counts=exact, policy=policy, secret=secret)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(result.to_json()))
        return
    _print(result, str(file))


__all__ = ["query", "register"]
