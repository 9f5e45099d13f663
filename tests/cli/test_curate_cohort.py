"""``biobank curate cohort``, ``decide-study``, ``study`` and the facet filters on a node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.catalog.curation import CurationRecords, Decision
from biobank.cli.main import app
from biobank.dicom.synthetic import write_corpus
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import ingest

runner = CliRunner()
PATIENTS = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """A node with 5 patients (a CT and an MR series each); the MR series labelled T2W."""
    root = tmp_path_factory.mktemp("cohort")
    write_corpus(root / "in", patients=PATIENTS, ct_slices=2, mr_slices=2, ct_size=16,
                 mr_size=16)  # fmt: skip
    node = init_node(root / "home", site="t", role=NodeRole.SITE)
    ingest(node, [root / "in"], jobs=1)
    with node.config_path.open("a", encoding="utf-8") as config:
        config.write("curation:\n  cohort:\n    min_size: 4\n    z_threshold: 3.5\n")
    return node


def _invoke(node: Node, *args: str) -> str:
    result = runner.invoke(app, [*args, "--home", str(node.home)])
    assert result.exit_code == 0, result.output
    return result.output


def _mr_series(node: Node) -> list[str]:
    with node.open_catalog() as catalog:
        return [s.series_instance_uid for s in catalog.find_series(modality="MR")]


def _ct_series(node: Node) -> list[str]:
    with node.open_catalog() as catalog:
        return [s.series_instance_uid for s in catalog.find_series(modality="CT")]


def _measure(node: Node, worst_snr: float) -> list[str]:
    mr = _mr_series(node)
    with node.open_catalog() as catalog:
        records = CurationRecords(catalog)
        for i, series in enumerate(mr):
            records.record_classification(series, {"label": "T2W", "needs_review": i == 1})
            snr = worst_snr if i == len(mr) - 1 else 40.0 + i
            metrics = {
                "snr_dietrich": snr,
                "cnr": 4.0,
                "efc": 0.4 + 0.01 * i,
                "decision": "approve",
            }
            records.record_qc(series, metrics, Decision.APPROVE, [])
    return mr


def test_cohort_judges_with_the_node_rules_and_can_lift_its_quarantine(node: Node) -> None:
    mr = _measure(node, worst_snr=5.0)
    answer = json.loads(_invoke(node, "curate", "cohort", "--json"))
    assert answer["rules"]["min_size"] == 4  # from node.yaml
    assert answer["counts"] == {"approve": PATIENTS - 1, "quarantine": 1}
    judged = {j["series_instance_uid"]: j for j in answer["judgements"]}
    worst = judged[mr[-1]]
    assert (worst["label"], worst["size"], worst["decision"]) == ("T2W", 5, "quarantine")
    assert worst["reasons"][0].startswith("cohort_low_snr_dietrich: snr_dietrich 5 is ")
    assert f"of 5 T2W series from {worst['manufacturer']}" in worst["reasons"][0]
    queue = json.loads(_invoke(node, "curate", "queue", "--json", "--label", "t2w"))
    assert mr[-1] in [q["series_instance_uid"] for q in queue]
    history = json.loads(_invoke(node, "curate", "history", mr[-1], "--json"))
    assert history[-1]["action"] == "cohort" and history[-1]["actor"] == "rules"
    again = json.loads(_invoke(node, "curate", "cohort", "--json"))
    assert again["changed"] == 0  # nothing new: no new decisions, no new events
    # The series is re-measured within range: the next cohort run lifts the quarantine.
    _measure(node, worst_snr=41.0)
    _invoke(node, "curate", "cohort")
    with node.open_catalog() as catalog:
        got = CurationRecords(catalog).get(mr[-1])
    assert got.decision is Decision.APPROVE
    assert got.decision_reasons[0].startswith("cohort_ok: snr_dietrich, efc within 3.5 MADs")


def test_a_wrong_curation_key_in_node_yaml_is_named(tmp_path: Path) -> None:
    home = init_node(tmp_path / "home", site="t", role=NodeRole.SITE).home
    with (home / "node.yaml").open("a", encoding="utf-8") as config:
        config.write("curation:\n  cohort:\n    min_cohort: 5\n")
    result = runner.invoke(app, ["curate", "cohort", "--home", str(home)])
    assert result.exit_code != 0
    said = result.output.replace("\n", "")  # rich folds long paths at the terminal width
    assert "'min_cohort'" in said and "node.yaml" in said


def test_series_filters_and_facets(node: Node) -> None:
    mr = _measure(node, worst_snr=41.0)
    t2w = json.loads(_invoke(node, "curate", "series", "--json", "--label", "T2W"))
    assert {r["series_instance_uid"] for r in t2w} == set(mr)
    (vendor,) = {r["manufacturer"] for r in t2w}  # the synthetic series' one vendor
    review = json.loads(_invoke(node, "curate", "series", "--json", "--needs-review"))
    assert [r["series_instance_uid"] for r in review] == [mr[1]]
    reviewed = json.loads(_invoke(node, "curate", "series", "--json", "--reviewed"))
    assert mr[1] not in {r["series_instance_uid"] for r in reviewed}
    siemens = json.loads(_invoke(node, "curate", "series", "--json", "--manufacturer", "ACME"))
    assert siemens == []
    quarantined = json.loads(
        _invoke(node, "curate", "series", "--json", "--decision", "quarantine")
    )
    assert [r["series_instance_uid"] for r in quarantined] == [mr[1]]  # needs review
    facets = json.loads(_invoke(node, "curate", "series", "--facets", "--json"))
    assert facets["label"]["T2W"] == PATIENTS
    assert facets["manufacturer"] == {vendor: PATIENTS}
    lower = json.loads(
        _invoke(node, "curate", "series", "--json", "--manufacturer", vendor.lower())
    )
    assert len(lower) == PATIENTS
    table = _invoke(node, "curate", "series", "--facets")
    assert "manufacturer" in table and vendor in table
    bad = runner.invoke(app, ["curate", "series", "--decision", "maybe", "--home", str(node.home)])
    assert bad.exit_code != 0


def test_a_curator_decides_a_whole_study(node: Node) -> None:
    ct = _ct_series(node)
    with node.open_catalog() as catalog:
        study = catalog.find_series(series_instance_uid=ct[0])[0].study_instance_uid
        series = [s.series_instance_uid for s in catalog.find_series(study_instance_uid=study)]
    assert series == [ct[0]]  # one series per study in the synthetic corpus
    before = json.loads(_invoke(node, "curate", "study", study, "--json"))
    assert before["state"] in {"pending", "approve", "quarantine"}
    assert ct[0] in before["uncurated"]
    no_reason = runner.invoke(
        app, ["curate", "decide-study", study, "exclude", "-m", " ", "--home", str(node.home)]
    )
    assert no_reason.exit_code != 0 and "comment" in no_reason.output
    done = _invoke(
        node, "curate", "decide-study", study, "exclude", "-m", "consent withdrawn",
        "--curator", "ana",
    )  # fmt: skip
    assert "exclude (1 series)" in done
    after = json.loads(_invoke(node, "curate", "study", study, "--json"))
    assert after["state"] == "exclude" and after["uncurated"] == []
    assert after["counts"]["exclude"] == 1
    assert {s["decided_by"] for s in after["series"]} == {"ana"}
    history = json.loads(_invoke(node, "curate", "history", series[0], "--json"))
    assert history[-1]["detail"] == {"comment": "consent withdrawn", "study": study}
    table = _invoke(node, "curate", "study", study)
    assert "exclude" in table
    unknown = runner.invoke(app, ["curate", "study", "9.9", "--home", str(node.home)])
    assert unknown.exit_code != 0 and "no study 9.9" in unknown.output
