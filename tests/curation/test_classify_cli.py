"""``biobank curate classify`` on a folder of files and on a catalogued study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    (root / "mr").mkdir(parents=True)
    (root / "ct").mkdir()
    phi = make_patient_phi(2, seed=7)
    for i, ds in enumerate(make_mr_series(phi, 3, rows=16, cols=16)):
        ds.save_as(root / "mr" / f"{i}.dcm", enforce_file_format=True)
    for i, ds in enumerate(make_ct_series(phi, 2, rows=16, cols=16)):
        ds.save_as(root / "ct" / f"{i}.dcm", enforce_file_format=True)
    (root / "README.txt").write_text("exported from PACS")
    return root


def test_json_one_object_per_series_and_the_default(folder: Path) -> None:
    result = runner.invoke(app, ["curate", "classify", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    series = [x for x in lines if "default_series" not in x]
    defaults = [x["default_series"] for x in lines if "default_series" in x]
    assert sorted(x["label"] for x in series) == ["T1W", "other"]
    required = {
        "series_instance_uid",
        "label",
        "orientation",
        "is3d",
        "derived",
        "contrast",
        "confidence",
        "evidence",
    }
    assert all(required <= set(x) for x in series)
    mr = next(x for x in series if x["modality"] == "MR")
    assert mr["orientation"] == "axial" and mr["confidence"] >= 0.9
    assert len(defaults) == 1
    assert defaults[0]["series_instance_uid"] == mr["series_instance_uid"]
    assert defaults[0]["fallback"] is True  # a 2D T1W is not the 3D axial T2W wanted
    assert "skipped 1 file" in result.stderr


def test_table(folder: Path) -> None:
    result = runner.invoke(app, ["curate", "classify", str(folder)])
    assert result.exit_code == 0, result.output
    assert "T1W" in result.stdout
    assert "default series of study" in result.stdout


def test_path_or_study_is_required(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curate", "classify"])
    assert result.exit_code == 2
    assert "PATH or --study" in result.stderr
    result = runner.invoke(app, ["curate", "classify", str(tmp_path)])
    assert result.exit_code == 2
    assert "no DICOM headers" in result.stderr


def test_study_from_the_catalogue(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "node"
    assert runner.invoke(app, ["init", "--home", str(home)]).exit_code == 0
    ingest = runner.invoke(app, ["ingest", str(folder), "--home", str(home)])
    assert ingest.exit_code == 0, ingest.output
    studies = runner.invoke(app, ["ls", "studies", "--home", str(home), "--json"])
    assert studies.exit_code == 0, studies.output
    (mr_study,) = [s for s in json.loads(studies.stdout) if s["modalities_in_study"] == ["MR"]]
    uid = mr_study["study_instance_uid"]
    result = runner.invoke(
        app, ["curate", "classify", "--study", uid, "--home", str(home), "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    (series,) = [x for x in lines if "default_series" not in x]
    assert series["study_instance_uid"] == uid
    assert series["label"] == "T1W"  # de-identified headers keep the physics tags
    assert series["orientation"] == "axial"
    assert [x["default_series"]["study_instance_uid"] for x in lines if "default_series" in x] == [
        uid
    ]
    missing = runner.invoke(app, ["curate", "classify", "--study", "1.2.3.4", "--home", str(home)])
    assert missing.exit_code == 2
    assert "no such study" in missing.stderr
