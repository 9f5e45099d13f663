"""The ``biobank`` command line, run in-process and as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import biobank
from biobank.cli.main import app
from biobank.dicom.synthetic import make_ct_series, make_patient_phi

runner = CliRunner()

COMMANDS = [
    [],
    ["deid"],
    ["keygen"],
    ["pseudonym"],
    ["pseudonym", "lookup"],
    ["profile"],
    ["profile", "list"],
    ["profile", "show"],
    ["init"],
    ["ingest"],
    ["status"],
    ["verify"],
    ["ls"],
    ["ls", "patients"],
    ["ls", "studies"],
    ["ls", "series"],
    ["ls", "instances"],
    ["ls", "problems"],
    ["ls", "batches"],
    ["user"],
    ["user", "add"],
    ["user", "list"],
    ["user", "disable"],
    ["user", "enable"],
    ["user", "set-role"],
    ["token"],
    ["token", "create"],
    ["token", "list"],
    ["token", "revoke"],
    ["audit"],
    ["audit", "list"],
    ["audit", "verify"],
    ["push"],
    ["jobs"],
    ["jobs", "list"],
    ["jobs", "enqueue"],
    ["jobs", "run"],
    ["jobs", "retry"],
    ["curate"],
    ["curate", "classify"],
    ["curate", "qc"],
    ["curate", "sheet"],
    ["curate", "check"],
    ["curate", "queue"],
    ["curate", "series"],
    ["curate", "decide"],
    ["curate", "relabel"],
    ["curate", "history"],
]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert biobank.__version__ in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    src = tmp_path / "Doe_John_MRN0042"
    src.mkdir()
    phi = make_patient_phi(3, seed=11)
    for n, ds in enumerate(make_ct_series(phi, 2, rows=16, cols=16)):
        ds.save_as(src / f"IMG{n}.dcm", enforce_file_format=True)
    (src / "README.txt").write_text("exported from PACS")
    return src


def test_keygen_deid_lookup_round_trip(tmp_path: Path, sample: Path) -> None:
    key = tmp_path / "k" / "site.key"
    result = runner.invoke(app, ["keygen", str(key)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "deid",
            str(sample),
            "--out",
            str(out),
            "--key-file",
            str(key),
            "--report",
            str(report),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "written" in result.output and "rejected" in result.output
    document = json.loads(report.read_text())
    assert document["summary"]["written"] == 2 and document["summary"]["rejected"] == 1
    pseudonym = next(
        i["record"]["patient_pseudonym"] for i in document["items"] if i["outcome"] == "written"
    )
    looked = runner.invoke(
        app, ["pseudonym", "lookup", pseudonym, "--key-file", str(key), "--json"]
    )
    assert looked.exit_code == 0, looked.output
    assert json.loads(looked.output)["patient_id"] == make_patient_phi(3, seed=11).patient_id


def test_deid_json_summary(tmp_path: Path, sample: Path) -> None:
    key = tmp_path / "site.key"
    runner.invoke(app, ["keygen", str(key)])
    result = runner.invoke(
        app, ["deid", str(sample), "-o", str(tmp_path / "o"), "-k", str(key), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["inputs"] == 3 and summary["written"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deid", "/nonexistent/x", "--out", "o", "--key-file", "k"], "no such file"),
        (["deid", ".", "--out", "o", "--key-file", "/nonexistent.key"], "keygen"),
        (["profile", "show", "no-such-profile"], "unknown profile"),
        (["pseudonym", "lookup", "PXXXX", "--key-file", "/nonexistent.key"], "keygen"),
    ],
)
def test_errors_are_clear_and_nonzero(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output


def test_key_readable_by_others_is_refused(tmp_path: Path, sample: Path) -> None:
    key = tmp_path / "site.key"
    runner.invoke(app, ["keygen", str(key)])
    os.chmod(key, 0o644)
    result = runner.invoke(
        app, ["deid", str(sample), "--out", str(tmp_path / "o"), "--key-file", str(key)]
    )
    assert result.exit_code != 0
    assert "chmod 600" in result.output


def test_profile_list_and_show() -> None:
    listed = runner.invoke(app, ["profile", "list", "--json"])
    names = {p["name"] for p in json.loads(listed.output)}
    assert {"research", "basic", "research-full-dates"} <= names
    shown = runner.invoke(app, ["profile", "show", "research"])
    assert "113107" in shown.output and "clean_pixel_data" in shown.output


def test_console_script_runs(tmp_path: Path, sample: Path) -> None:
    exe = shutil.which("biobank", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin"))
    if exe is None:
        pytest.fail("the biobank console script is not installed in .venv (run make install)")
    key = tmp_path / "site.key"
    subprocess.run([exe, "keygen", str(key)], check=True, capture_output=True)
    proc = subprocess.run(
        [
            exe,
            "deid",
            str(sample),
            "--out",
            str(tmp_path / "out"),
            "--key-file",
            str(key),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


def test_pydicom_messages_quoting_values_never_reach_the_terminal(tmp_path: Path) -> None:
    # pydicom warns and logs with the offending value ("Invalid value for VR DA: '...'");
    # a value from a hospital header is PHI until de-identified.
    src = tmp_path / "in"
    src.mkdir()
    ds = make_ct_series(make_patient_phi(4), 1, rows=16, cols=16)[0]
    ds.add_new(0x00091010, "LO", "x")  # keep one private block
    marker = "QZLEAK19770101"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.add_new(0x00080020, "DA", marker)  # invalid StudyDate carrying the marker
        ds.save_as(src / "bad.dcm", enforce_file_format=True)
    exe = shutil.which("biobank", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin"))
    assert exe is not None
    key = tmp_path / "site.key"
    subprocess.run([exe, "keygen", str(key)], check=True, capture_output=True)
    for jobs in ("1", "2"):
        proc = subprocess.run(
            [
                exe,
                "-v",
                "deid",
                str(src),
                "--out",
                str(tmp_path / f"o{jobs}"),
                "-k",
                str(key),
                "-j",
                jobs,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert marker not in proc.stdout and marker not in proc.stderr


def test_project_profile_file(tmp_path: Path, sample: Path) -> None:
    profile = tmp_path / "my-project.yaml"
    profile.write_text(
        "name: my-project\n"
        "options: [retain_longitudinal_full_dates, retain_patient_characteristics]\n"
    )
    key = tmp_path / "site.key"
    runner.invoke(app, ["keygen", str(key)])
    report = tmp_path / "r.json"
    result = runner.invoke(
        app,
        ["deid", str(sample), "-o", str(tmp_path / "o"), "-k", str(key), "--profile", str(profile),
         "--report", str(report), "-j", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text())
    assert document["profile"] == "my-project"
    written = next(i for i in document["items"] if i["outcome"] == "written")
    assert "113106" in written["record"]["method_codes"]  # Full Dates
    assert "113105" not in written["record"]["method_codes"]  # no Clean Descriptors
    shown = runner.invoke(app, ["profile", "show", str(profile)])
    assert "113106" in shown.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\noptions: [retain_everything]\n")
    result = runner.invoke(
        app,
        ["deid", str(sample), "-o", str(tmp_path / "o2"), "-k", str(key), "--profile", str(broken)],
    )
    assert result.exit_code != 0 and "unknown option" in result.output
