"""The node commands as a data manager uses them: init, ingest, status, ls, verify."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi

runner = CliRunner()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    src = tmp_path / "Doe_John_MRN0042"
    src.mkdir()
    phi = make_patient_phi(3, seed=11)
    series = make_ct_series(phi, 3, rows=16, cols=16) + make_mr_series(phi, 2, rows=16, cols=16)
    for n, ds in enumerate(series):
        ds.save_as(src / f"IMG{n}.dcm", enforce_file_format=True)
    (src / "README.txt").write_text("exported from PACS")
    return src


def _json(args: list[str]) -> object:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_init_ingest_status_ls_verify(tmp_path: Path, export: Path) -> None:
    home = tmp_path / "node"
    info = _json(["init", "--home", str(home), "--site", "Hospital A", "--json"])
    assert isinstance(info, dict) and info["role"] == "site"
    key = home / "keys" / "site.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (home / "catalog.sqlite").exists() and (home / "node.yaml").exists()
    again = runner.invoke(app, ["init", "--home", str(home)])
    assert again.exit_code == 2 and "already a node home" in again.output

    result = runner.invoke(app, ["ingest", str(export), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["summary"]["stored"] == 5 and document["summary"]["rejected"] == 1
    assert document["problems"][0]["source_path"].endswith("README.txt")
    assert "MRN0042" not in (home / "logs" / "node.log").read_text()

    status = _json(["status", "--home", str(home), "--json"])
    assert isinstance(status, dict)
    assert (status["patients"], status["studies"], status["series"], status["instances"]) == (
        1,
        2,
        2,
        5,
    )
    assert status["last_batches"][0]["stored"] == 5

    studies = _json(["ls", "studies", "--home", str(home), "--modality", "MR", "--json"])
    assert isinstance(studies, list) and len(studies) == 1
    series = _json(
        ["ls", "series", "--home", str(home), "--study", studies[0]["study_instance_uid"], "--json"]
    )
    assert isinstance(series, list) and [s["modality"] for s in series] == ["MR"]
    instances = _json(
        [
            "ls",
            "instances",
            "--home",
            str(home),
            "--series",
            series[0]["series_instance_uid"],
            "--json",
        ]
    )
    assert isinstance(instances, list) and len(instances) == 2
    problems = _json(["ls", "problems", "--home", str(home), "--json"])
    assert isinstance(problems, list) and len(problems) == 1
    assert problems[0]["outcome"] == "rejected" and "DICOM" in problems[0]["reason"]
    patients = _json(["ls", "patients", "--home", str(home), "--json"])
    assert isinstance(patients, list) and patients[0]["patient_pseudonym"] != "MRN0042"
    table = runner.invoke(app, ["ls", "studies", "--home", str(home)])
    assert table.exit_code == 0 and "2 studies" in table.output
    for study in studies:  # into a pipe, whole UIDs on one line each
        assert study["study_instance_uid"] in table.output

    verified = _json(["verify", "--home", str(home), "--json"])
    assert isinstance(verified, dict) and verified["ok"] and verified["blobs_checked"] == 5
    blob = next(p for p in (home / "blobs" / "sha256").rglob("*") if p.is_file())
    os.chmod(blob, 0o644)
    blob.write_bytes(b"bit rot")
    broken = runner.invoke(app, ["verify", "--home", str(home)])
    assert broken.exit_code == 1 and "corrupt" in broken.output


def test_central_node_refuses_identified_data(tmp_path: Path, export: Path) -> None:
    home = tmp_path / "central"
    _json(["init", "--home", str(home), "--role", "central", "--site", "EU", "--json"])
    assert not (home / "keys").exists()
    result = runner.invoke(app, ["ingest", str(export), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "not de-identified" in result.output
    assert "MRN0042" in result.output  # the source path names the file: it is the site's view
    status = _json(["status", "--home", str(home), "--json"])
    assert isinstance(status, dict) and status["instances"] == 0


def test_clear_errors(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["status", "--home", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "biobank init" in missing.output
    home = tmp_path / "node"
    runner.invoke(app, ["init", "--home", str(home)])
    nothing = runner.invoke(app, ["ingest", str(tmp_path / "absent"), "--home", str(home)])
    assert nothing.exit_code == 2 and "no such file" in nothing.output
    bad_role = runner.invoke(app, ["init", "--home", str(tmp_path / "x"), "--role", "hub"])
    assert bad_role.exit_code == 2
    bad_date = runner.invoke(app, ["ls", "studies", "--home", str(home), "--from", "12/31"])
    assert bad_date.exit_code == 2
    no_series = runner.invoke(app, ["ls", "instances", "--home", str(home)])
    assert no_series.exit_code == 2 and "--series" in no_series.output
