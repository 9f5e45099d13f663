"""``biobank export omop|eucaim|miabis`` and ``biobank omop sync`` on a node."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.dicom.synthetic import write_corpus
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import ingest
from tests.catalog.factories import execute

runner = CliRunner()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """A site node with one patient's CT and MR study."""
    root = tmp_path_factory.mktemp("cli-export")
    write_corpus(root / "in", patients=1, ct_slices=2, mr_slices=2, ct_size=16, mr_size=16)
    node = init_node(root / "home", site="Hospital A", role=NodeRole.SITE)
    ingest(node, [root / "in"], jobs=1)
    return node


def test_export_omop_writes_the_tables(node: Node, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "omop", str(tmp_path / "dump"), "--home", str(node.home), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert rows["image_occurrence"] == 2 and rows["person"] == 1
    with (tmp_path / "dump" / "image_occurrence.csv").open(newline="") as handle:
        occurrences = list(csv.DictReader(handle))
    assert {o["modality_concept_id"] for o in occurrences} == {"2128009190", "2128009230"}
    with (tmp_path / "dump" / "cdm_source.csv").open(newline="") as handle:
        (source,) = list(csv.DictReader(handle))  # the node describes itself: OMOP needs one
    assert rows["cdm_source"] == 1
    assert source["cdm_source_name"] == source["cdm_holder"] == "Hospital A"
    assert source["cdm_version"] == "v5.4" and source["source_release_date"]
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    refused = runner.invoke(app, ["export", "omop", str(in_the_way), "--home", str(node.home)])
    assert refused.exit_code != 0 and "not a directory" in " ".join(refused.output.split())


def test_export_eucaim_to_a_file(node: Node, tmp_path: Path) -> None:
    out = tmp_path / "eucaim.json"
    result = runner.invoke(app, ["export", "eucaim", "--home", str(node.home), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (patient,) = json.loads(out.read_text())
    with node.open_catalog() as catalog:
        pseudonyms = execute(catalog, "SELECT patient_pseudonym FROM patient")
    assert pseudonyms == [(patient["patientId"],)] and len(patient["imageStudy"]) == 2
    assert {s["imageModality"]["id"] for s in patient["imageStudy"]} == {"DCM:CT", "DCM:MR"}


def test_export_miabis_needs_a_name(node: Node) -> None:
    missing = runner.invoke(app, ["export", "miabis", "--home", str(node.home)])
    assert missing.exit_code != 0
    result = runner.invoke(
        app, ["export", "miabis", "--name", "Demo", "--id", "bb:demo", "--home", str(node.home)]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["ID"] == "bb:demo" and found["Name"] == "Demo"
    assert found["Total number of subjects"] == 1
    assert "Hospital A" in found["Description"]
    assert found["extensions"]["modalities"] == {"CT": 1, "MR": 1}


def test_omop_sync_catches_up(node: Node, tmp_path: Path) -> None:
    with node.open_catalog() as catalog:
        execute(catalog, "DELETE FROM image_feature")
        execute(catalog, "DELETE FROM image_occurrence")
    result = runner.invoke(app, ["omop", "sync", "--home", str(node.home), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["series"] == 2
    again = runner.invoke(app, ["omop", "sync", "--home", str(node.home)])
    assert again.exit_code == 0 and "mapped 0 series" in again.output
