"""``biobank query FILE.json``: exact counts for the node's operator, --protected, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.datasets import protect
from biobank.ingest.node import Node, NodeRole, init_node
from tests.datasets.omop_fixture import PEOPLE, load

runner = CliRunner()

MEN_WITH_MR = {
    "id": "q1",
    "ast": {
        "operand": "AND",
        "children": [
            {"operand": "OR", "children": [{"key": "sex", "type": "EQUALS", "value": "male"}]},
            {"operand": "OR", "children": [{"key": "modality", "type": "EQUALS", "value": "MR"}]},
        ],
    },
}


def expected() -> tuple[int, int, int]:
    persons = [p for p in PEOPLE if p.gender == 8507 and any(s.modality == "MR" for s in p.series)]
    series = [s for p in persons for s in p.series if s.modality == "MR"]
    return len(persons), len({s.study for s in series}), len(series)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    node = init_node(tmp_path_factory.mktemp("q") / "home", site="t", role=NodeRole.SITE)
    with node.open_catalog() as catalog:
        load(catalog, PEOPLE)
    return node


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_exact_counts_by_default(node: Node, tmp_path: Path) -> None:
    query = write(tmp_path / "q.json", MEN_WITH_MR)
    result = runner.invoke(app, ["query", str(query), "--home", str(node.home), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    persons, studies, series = expected()
    assert found["protected"] is False
    assert found["persons"] == {"value": persons, "precision": "exact"}
    assert (found["studies"]["value"], found["series"]["value"]) == (studies, series)

    table = runner.invoke(app, ["query", str(query), "--home", str(node.home)])
    assert table.exit_code == 0, table.output
    assert "exact counts" in table.output and "do not pass them on" in table.output


def test_protected_shows_what_leaves_the_node(node: Node, tmp_path: Path) -> None:
    query = write(tmp_path / "q.json", MEN_WITH_MR)
    result = runner.invoke(
        app, ["query", str(query), "--home", str(node.home), "--protected", "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    persons, studies, series = expected()
    assert found["protected"] is True and found["protection"]["threshold"] == 10
    assert found["persons"] == protect(persons).to_json()
    assert found["series"] == protect(series).to_json()
    assert found["persons"]["precision"] == "rounded" and found["persons"]["value"] % 10 == 0


def test_stratified(node: Node, tmp_path: Path) -> None:
    everyone = write(tmp_path / "all.json", {"ast": {"operand": "AND", "children": []}})
    result = runner.invoke(
        app, ["query", str(everyone), "--home", str(node.home), "-s", "gender", "--json"]
    )
    assert result.exit_code == 0, result.output
    strata = {
        s["values"]["gender"]: s["persons"]["value"] for s in json.loads(result.output)["strata"]
    }
    assert strata == {
        name: sum(1 for p in PEOPLE if p.gender == g)
        for g, name in ((8507, "male"), (8532, "female"), (0, "unknown"))
    }


def test_beacon_body_from_stdin(node: Node) -> None:
    body = {"query": {"filters": [{"id": "NCIT:C20197"}, {"id": "modality", "value": "MR"}]}}
    result = runner.invoke(
        app, ["query", "-", "--home", str(node.home), "--json"], input=json.dumps(body)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["persons"]["value"] == expected()[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"ast": {"operand": "AND", "children": [
            {"key": "colour", "type": "EQUALS", "value": "red"}]}}), "unknown key 'colour'"),
        (json.dumps({"ast": {"operand": "AND", "children": [
            {"key": "age", "type": "BETWEEN", "value": 5}]}}), "BETWEEN"),
    ],
)  # fmt: skip
def test_errors_exit_non_zero_with_the_reason(
    node: Node, tmp_path: Path, content: str, message: str
) -> None:
    query = tmp_path / "bad.json"
    query.write_text(content)
    result = runner.invoke(app, ["query", str(query), "--home", str(node.home)])
    assert result.exit_code == 2
    assert message in result.output


def test_a_bad_cohorts_policy_is_reported(tmp_path: Path) -> None:
    node = init_node(tmp_path / "home", site="t", role=NodeRole.CENTRAL)
    config = node.config_path.read_text() + "cohorts:\n  treshold: 5\n"
    node.config_path.write_text(config)
    query = write(tmp_path / "q.json", MEN_WITH_MR)
    result = runner.invoke(app, ["query", str(query), "--home", str(node.home), "--protected"])
    assert result.exit_code == 2 and "cohorts.treshold" in result.output
