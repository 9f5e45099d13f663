"""``biobank curate cohort``: judge every measured series against its cohort.

The cohort of a series is the measured series of the same label and manufacturer; the rules
(metrics, z threshold, minimum cohort size) come from the ``curation:`` section of
``node.yaml`` (docs/curation.md). No job queue is involved: the command reads the stored
metrics, so it is quick and can be re-run whenever the cohort has grown.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from biobank.catalog.curation import CurationRecords
from biobank.cli.common import HomeOption, JsonOption, fail, load_node, out, print_table
from biobank.curation.cohort import CohortRun, judge_node
from biobank.curation.qc import QcRules
from biobank.errors import BiobankError


def register(curate_app: typer.Typer) -> None:
    """Add ``cohort`` to the ``curate`` group."""
    curate_app.command("cohort")(cohort_command)


def cohort_command(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Re-judge every QC'd series against its cohort (same label and manufacturer).

    A metric beyond the z threshold in its bad direction (low SNR, CNR, FBER; high CJV,
    EFC) quarantines the series with the reason; curators' decisions stand. With --json,
    one object: the rules, the counts and every judgement.
    """
    node = load_node(home)
    try:
        rules = QcRules.from_config(node.section("curation"), str(node.config_path)).cohort
        with node.open_catalog() as catalog:
            run = judge_node(CurationRecords(catalog), rules)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "rules": rules.to_json(),
                    "counts": run.counts(),
                    "changed": run.changed,
                    "judgements": [judgement.to_json() for judgement in run.judgements],
                },
                ensure_ascii=False,
            )
        )
        return
    print_table(_table(run))


def _table(run: CohortRun) -> Table:
    counts = run.counts()
    table = Table(
        title=(
            f"Cohort judgement of {len(run.judgements)} series: {counts['quarantine']} "
            f"quarantined, {run.changed} record(s) updated"
        )
    )
    for column in ("series", "label", "manufacturer", "cohort", "decision", "reasons"):
        table.add_column(column, no_wrap=column == "series", overflow="fold")
    for judgement in run.judgements:
        table.add_row(
            judgement.series_instance_uid,
            judgement.label,
            judgement.manufacturer,
            str(judgement.size),
            judgement.decision.value,
            "; ".join(judgement.reasons),
        )
    return table


__all__ = ["cohort_command", "register"]
