"""``biobank curate qc`` and ``biobank curate sheet`` on files and on a node's series."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi

runner = CliRunner()
PHI = make_patient_phi(6, seed=13)
KEYS = ("snr", "snr_dietrich", "cnr", "cjv", "var", "fber", "efc")


@pytest.fixture
def export(tmp_path: Path) -> Path:
    src = tmp_path / "Doe_John_MRN0042"
    (src / "ct").mkdir(parents=True)
    (src / "mr").mkdir()
    for n, ds in enumerate(make_ct_series(PHI, 6, rows=32, cols=32)):
        ds.save_as(src / "ct" / f"IMG{n}.dcm", enforce_file_format=True)
    for n, ds in enumerate(make_mr_series(PHI, 6, rows=32, cols=32)):
        ds.save_as(src / "mr" / f"IMG{n}.dcm", enforce_file_format=True)
    (src / "README.txt").write_text("exported from PACS")
    return src


def test_qc_prints_one_json_object_per_series(export: Path) -> None:
    result = runner.invoke(app, ["curate", "qc", str(export), "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        data = json.loads(line)
        assert data["series_instance_uid"]
        assert all(key in data for key in KEYS)
        assert data["masks"]["foreground"] > 0 and data["masks"]["background"] > 0
        assert data["decision"] in {"approve", "quarantine", "exclude"}
        assert isinstance(data["reasons"], list)
    assert str(PHI.patient_name) not in result.output
    table = runner.invoke(app, ["curate", "qc", str(export / "ct")])
    assert table.exit_code == 0 and "decision" in table.output and "ct.air_hu" in table.output


def test_qc_needs_one_source(tmp_path: Path) -> None:
    neither = runner.invoke(app, ["curate", "qc"])
    assert neither.exit_code == 2 and "either PATH or --series" in neither.output
    missing = runner.invoke(app, ["curate", "qc", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "notes.txt").write_text("no images")
    empty = runner.invoke(app, ["curate", "qc", str(tmp_path)])
    assert empty.exit_code == 2 and "no decodable DICOM image" in empty.output


def test_sheet_from_a_folder(export: Path, tmp_path: Path) -> None:
    target = tmp_path / "sheet.png"
    result = runner.invoke(
        app, ["curate", "sheet", str(export / "mr"), "--out", str(target), "--tile", "32"]
    )
    assert result.exit_code == 0, result.output
    image = Image.open(BytesIO(target.read_bytes()))
    assert image.size == (3 * 33 + 1, 2 * 33 + 1)
    both = runner.invoke(app, ["curate", "sheet", str(export), "--out", str(target)])
    assert both.exit_code == 2 and "holds 2 series" in both.output


def test_qc_and_sheet_of_a_node_series(export: Path, tmp_path: Path) -> None:
    home = tmp_path / "node"
    assert runner.invoke(app, ["init", "--home", str(home)]).exit_code == 0
    ingest = runner.invoke(app, ["ingest", str(export), "--home", str(home)])
    assert ingest.exit_code == 0, ingest.output
    listed = runner.invoke(app, ["ls", "series", "--home", str(home), "--json"])
    series = {s["modality"]: s["series_instance_uid"] for s in json.loads(listed.stdout)}
    result = runner.invoke(
        app, ["curate", "qc", "--series", series["CT"], "--home", str(home), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["series_instance_uid"] == series["CT"] and data["modality"] == "CT"
    assert data["ct"]["air_hu"] == pytest.approx(-1000.0, abs=30.0)
    target = tmp_path / "mr.png"
    sheet = runner.invoke(
        app, ["curate", "sheet", series["MR"], "--home", str(home), "--out", str(target)]
    )
    assert sheet.exit_code == 0, sheet.output
    assert target.read_bytes().startswith(b"\x89PNG")
    unknown = runner.invoke(app, ["curate", "qc", "--series", "1.2.3", "--home", str(home)])
    assert unknown.exit_code == 2 and "biobank ls series" in unknown.output
    # The node's curation: section sets the thresholds of `qc --series`.
    with (home / "node.yaml").open("a", encoding="utf-8") as config:
        config.write("curation:\n  min_slices: 50\n")
    strict = runner.invoke(
        app, ["curate", "qc", "--series", series["CT"], "--home", str(home), "--json"]
    )
    assert strict.exit_code == 0, strict.output
    answer = json.loads(strict.stdout)
    assert answer["decision"] == "exclude"
    assert "too_few_slices: 6 < 50" in answer["reasons"]
    with (home / "node.yaml").open("a", encoding="utf-8") as config:
        config.write("  min_slice: 3\n")
    wrong = runner.invoke(app, ["curate", "qc", "--series", series["CT"], "--home", str(home)])
    assert wrong.exit_code == 2 and "'min_slice'" in wrong.output
