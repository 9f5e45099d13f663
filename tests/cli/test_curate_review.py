"""The curators' review commands on a node: queue, decide, relabel, history."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from biobank.catalog.curation import CurationRecords, Decision
from biobank.cli.main import app
from biobank.dicom.synthetic import write_corpus
from biobank.ingest.node import NodeRole, init_node
from biobank.ingest.pipeline import ingest

runner = CliRunner()


def test_a_curator_works_through_the_queue(tmp_path: Path) -> None:
    write_corpus(tmp_path / "in", patients=1, ct_slices=2, mr_slices=2, ct_size=16, mr_size=16)
    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    ingest(node, [tmp_path / "in"], jobs=1)
    with node.open_catalog() as catalog:
        series = [s.series_instance_uid for s in catalog.find_series()]
        records = CurationRecords(catalog)
        records.record_qc(series[0], {"snr": 2.0}, Decision.QUARANTINE, ["SNR 2.0 below 5"])
    home = ["--home", str(node.home)]
    queued = runner.invoke(app, ["curate", "queue", *home, "--json"])
    assert queued.exit_code == 0, queued.output
    assert [q["series_instance_uid"] for q in json.loads(queued.output)] == [series[0]]
    assert json.loads(queued.output)[0]["decision_reasons"] == ["SNR 2.0 below 5"]
    no_reason = runner.invoke(app, ["curate", "decide", series[0], "approve", "-m", "", *home])
    assert no_reason.exit_code != 0 and "comment" in no_reason.output
    relabel = runner.invoke(
        app,
        ["curate", "relabel", series[0], "T2W", "-m", "TE 98 ms", "--curator", "ana", *home],
    )
    assert relabel.exit_code == 0, relabel.output
    approve = runner.invoke(
        app,
        ["curate", "decide", series[0], "approve", "-m", "looked fine", "--curator", "ana", *home],
    )
    assert approve.exit_code == 0, approve.output
    assert json.loads(runner.invoke(app, ["curate", "queue", *home, "--json"]).output) == []
    history = json.loads(
        runner.invoke(app, ["curate", "history", series[0], *home, "--json"]).output
    )
    assert [(h["actor"], h["action"]) for h in history] == [
        ("rules", "qc"),
        ("ana", "relabel"),
        ("ana", "approve"),
    ]
    unknown = runner.invoke(app, ["curate", "decide", "9.9", "exclude", "-m", "x", *home])
    assert unknown.exit_code != 0 and "no series 9.9" in unknown.output
