"""``biobank clinical …`` as a data manager and a curator use it, on a site node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from biobank.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
PROSTATE_CSV = ROOT / "demo" / "clinical" / "prostate.csv"

COMMANDS = [
    ["clinical"],
    ["clinical", "forms"],
    ["clinical", "form"],
    ["clinical", "import"],
    ["clinical", "records"],
    ["clinical", "history"],
    ["clinical", "summary"],
    ["clinical", "outliers"],
    ["clinical", "queries"],
    ["clinical", "query"],
    ["clinical", "query", "raise"],
    ["clinical", "query", "answer"],
    ["clinical", "query", "close"],
    ["clinical", "query", "reopen"],
    ["clinical", "query", "show"],
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("clinical") / "home"
    result = runner.invoke(app, ["init", "--home", str(home), "--site", "Hospital A"])
    assert result.exit_code == 0, result.output
    return home


def run(home: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--home", str(home), "--json"])
    assert result.exit_code == code, result.output
    if code == 0 or args[1] == "import":
        return json.loads(result.stdout)
    return " ".join(result.output.split())  # an error message, unwrapped


@pytest.fixture(scope="module")
def imported(home: Path) -> dict[str, Any]:
    """demo/clinical/prostate.csv imported once (one record rejected: exit 1)."""
    return run(home, "clinical", "import", str(PROSTATE_CSV), "--form", "prostate", code=1)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    if command[-1] not in ("clinical", "query"):
        assert "--json" in result.output


def test_forms_and_one_form(home: Path) -> None:
    forms = run(home, "clinical", "forms")
    assert {"prostate", "prostate_followup", "breast"} <= {f["name"] for f in forms}
    form = run(home, "clinical", "form", "prostate")
    assert any(v["name"] == "gleason_score" for v in form["variables"])
    table = runner.invoke(app, ["clinical", "form", "prostate", "--home", str(home)])
    assert table.exit_code == 0 and "isup-grade-for-gleason-4-3" in table.stdout
    missing = runner.invoke(app, ["clinical", "form", "lung", "--home", str(home)])
    assert missing.exit_code == 2 and "known forms" in missing.output


def test_import_reports_problems_and_exits_1(home: Path, imported: dict[str, Any]) -> None:
    assert (imported["received"], imported["created"], imported["rejected"]) == (12, 11, 1)
    rejected = [r["index"] for r in imported["results"] if r["outcome"] == "rejected"]
    assert rejected == [8]
    rules = {(i["field"], i["rule"]) for i in imported["issues"]}
    assert ("pirads", "range") in rules
    assert ("treatment_start_date", "treatment-not-before-diagnosis") in rules
    assert ("isup_grade", "isup-grade-for-gleason-4-3") in rules
    # the table, unchanged records the second time, and --allow-rejected
    result = runner.invoke(
        app,
        ["clinical", "import", str(PROSTATE_CSV), "--form", "prostate", "--home", str(home)],
    )
    assert result.exit_code == 1
    for words in ("line 10", "pirads", "range", "check the value", "11 unchanged", "1 rejected"):
        assert words in result.output, words
    allowed = runner.invoke(
        app,
        ["clinical", "import", str(PROSTATE_CSV), "-f", "prostate", "--allow-rejected",
         "--home", str(home)],
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output


def test_import_errors_exit_2(home: Path, tmp_path: Path) -> None:
    text = tmp_path / "records.txt"
    text.write_text("x")
    result = runner.invoke(
        app, ["clinical", "import", str(text), "--form", "prostate", "--home", str(home)]
    )
    assert result.exit_code == 2 and ".csv or a .json" in result.output
    result = runner.invoke(
        app, ["clinical", "import", str(PROSTATE_CSV), "--form", "lung", "--home", str(home)]
    )
    assert result.exit_code == 2 and "no clinical form 'lung'" in result.output


def test_records_history_summary_outliers(home: Path, imported: dict[str, Any]) -> None:
    records = run(home, "clinical", "records", "--form", "prostate")
    assert len(records) == 11 and all(r["site"] == "Hospital A" for r in records)
    assert all("patient_id" not in r["values"] for r in records)
    first = imported["results"][0]["record_id"]
    history = run(home, "clinical", "history", str(first))
    assert history["id"] == first and [v["version"] for v in history["history"]] == [1]
    summary = run(home, "clinical", "summary", "prostate")
    psa = next(v for v in summary["variables"] if v["name"] == "psa")
    assert psa["distribution"]["n"] == 11 and psa["distribution"]["max"] == 486
    table = runner.invoke(app, ["clinical", "summary", "prostate", "--home", str(home)])
    assert table.exit_code == 0 and "p25" in table.stdout
    found = run(home, "clinical", "outliers", "prostate", "--field", "psa")
    assert found[0]["value"] == 486 and found[0]["direction"] == "high"
    assert found[0]["record_id"] == imported["results"][7]["record_id"]


def test_data_query_workflow(home: Path, imported: dict[str, Any]) -> None:
    record = str(imported["results"][7]["record_id"])
    query = run(home, "clinical", "query", "raise", record, "--field", "psa", "-m", "486?",
                "--as", "carla")  # fmt: skip
    assert (query["state"], query["raised_by"], query["field"]) == ("open", "carla", "psa")
    qid = str(query["id"])
    assert (
        run(home, "clinical", "query", "answer", qid, "-m", "true value", "--as", "dan")["state"]
        == "answered"
    )
    assert run(home, "clinical", "query", "close", qid, "--as", "carla")["state"] == "closed"
    refused = run(home, "clinical", "query", "answer", qid, "-m", "more", code=2)
    assert "is closed" in refused and "reopen" in refused
    assert run(home, "clinical", "query", "reopen", qid, "-m", "unit?")["state"] == "open"
    listed = run(home, "clinical", "queries", "--state", "open", "--site", "Hospital A")
    assert [q["id"] for q in listed["queries"]] == [query["id"]]
    assert listed["counts"]["Hospital A"]["open"] == 1
    shown = run(home, "clinical", "query", "show", qid)
    assert [e["action"] for e in shown["history"]] == ["raise", "answer", "close", "reopen"]
    wrong = run(home, "clinical", "query", "raise", record, "--field", "nope", "-m", "x", code=2)
    assert "not a variable of form prostate" in wrong
    table = runner.invoke(app, ["clinical", "queries", "--home", str(home)])
    assert table.exit_code == 0 and "Hospital A: 1 open" in table.output
