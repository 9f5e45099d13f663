"""Form definitions: the built-in forms load, and malformed definitions are rejected clearly."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from biobank.clinical import (
    Comparison,
    FormRegistry,
    OmopTable,
    Operand,
    Operator,
    Severity,
    VariableType,
    builtin_form,
    builtin_form_names,
    load_form,
    parse_form,
    parse_form_text,
    parse_operands,
)
from biobank.errors import InvalidInput, NotFound

BUILTIN = ["breast", "colorectal", "prostate", "prostate_followup"]


def minimal() -> dict[str, Any]:
    """A small valid definition that each malformed case breaks in one place."""
    return {
        "name": "demo",
        "version": 1,
        "title": "Demo",
        "key": ["visit_date"],
        "date": "visit_date",
        "variables": [
            {"name": "visit_date", "type": "date", "required": True},
            {"name": "diagnosis_date", "type": "date"},
            {"name": "score", "type": "integer", "minimum": 0, "maximum": 10},
            {"name": "part_a", "type": "integer"},
            {"name": "part_b", "type": "integer"},
            {
                "name": "status",
                "type": "code",
                "codes": [{"value": "alive", "concept": "SNOMED:438949009"}, "deceased"],
            },
            {
                "name": "cause",
                "type": "string",
                "required_when": [{"field": "status", "equals": "deceased"}],
                "allowed_when": [{"field": "status", "equals": "deceased"}],
            },
            {
                "name": "psa",
                "type": "number",
                "unit": "ng/mL",
                "omop": {"table": "measurement", "concept": "LOINC:2857-1", "date": "visit_date"},
            },
        ],
        "rules": [
            {
                "name": "visit-after-diagnosis",
                "left": "visit_date",
                "op": ">=",
                "right": "diagnosis_date",
            },
            {"name": "sum", "left": "score", "op": "=", "right": "part_a + part_b"},
        ],
    }


def test_minimal_definition_parses() -> None:
    form = parse_form(minimal(), "demo.yaml")
    assert form.name == "demo" and form.version == 1 and form.source == "demo.yaml"
    assert form.key == ("visit_date",) and form.date == "visit_date"
    status = form.variable("status")
    assert status is not None and status.type is VariableType.CODE
    assert [c.value for c in status.codes] == ["alive", "deceased"]
    assert status.codes[0].concept == "SNOMED:438949009" and status.codes[1].concept is None
    cause = form.variable("cause")
    assert cause is not None
    assert cause.required_when[0].op is Operator.EQUALS
    assert cause.required_when[0].value == "deceased"
    psa = form.variable("psa")
    assert psa is not None and psa.omop is not None
    assert psa.omop.table is OmopTable.MEASUREMENT and psa.omop.concept == "LOINC:2857-1"
    assert form.rules[0].op is Comparison.GE and form.rules[0].severity is Severity.ERROR
    assert form.rules[1].right == "part_a + part_b"


def test_builtin_names() -> None:
    assert builtin_form_names() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_form_parses_and_is_documented(name: str) -> None:
    form = builtin_form(name)
    assert form.name == name
    assert form.title and form.description
    assert form.date is not None and form.variable(form.date) is not None
    for variable in form.variables:
        assert variable.label, f"{name}.{variable.name} has no label"
    # Every variable is mapped to OMOP, except dates that date other variables' events.
    dating = {v.omop.date for v in form.variables if v.omop and v.omop.date} | {form.date}
    unmapped = {v.name for v in form.variables if v.omop is None} - dating
    # A recurrence/progression date has no OMOP home of its own (no verified episode
    # concept for progression yet); the disease status at the visit is mapped.
    assert unmapped == ({"progression_date"} if name == "prostate_followup" else set())


@pytest.mark.parametrize("name", BUILTIN)
def test_concept_keys_are_vocabulary_colon_code(name: str) -> None:
    form = builtin_form(name)
    keys = [v.omop.concept for v in form.variables if v.omop and v.omop.concept]
    keys += [v.omop.unit for v in form.variables if v.omop and v.omop.unit]
    keys += [c.concept for v in form.variables for c in v.codes if c.concept]
    vocabularies = {k.split(":", 1)[0] for k in keys}
    assert vocabularies <= {"LOINC", "SNOMED", "UCUM", "Gender"}


def test_prostate_content_matches_the_issue() -> None:
    form = builtin_form("prostate")
    psa = form.variable("psa")
    assert psa is not None and psa.unit == "ng/mL"
    assert (psa.minimum, psa.maximum) == (0, 10000)
    assert psa.omop is not None and psa.omop.concept == "LOINC:2857-1"
    gleason = form.variable("gleason_score")
    assert gleason is not None and gleason.omop is not None
    assert gleason.omop.concept == "LOINC:35266-6" and gleason.omop.event == "histology"
    ct = form.variable("ct")
    assert ct is not None and {"T1a", "T2c", "T3b", "T4"} <= {c.value for c in ct.codes}
    cm = form.variable("cm")
    assert cm is not None and {"M0", "M1a", "M1b", "M1c"} <= {c.value for c in cm.codes}
    treatment = form.variable("treatment_type")
    assert treatment is not None
    assert {"active_surveillance", "radical_prostatectomy", "adt", "none"} <= {
        c.value for c in treatment.codes
    }
    histology = form.variable("histology")
    assert histology is not None and histology.omop is not None
    assert histology.omop.table is OmopTable.CONDITION_OCCURRENCE
    assert histology.omop.concept == "SNOMED:399068003"
    assert {r.name for r in form.rules} >= {
        "treatment-not-before-diagnosis",
        "gleason-score-is-sum",
    }


def test_followup_form_is_keyed_and_refers_to_the_baseline() -> None:
    form = builtin_form("prostate_followup")
    assert form.key == ("followup_date",)
    rights = {r.right for r in form.rules}
    assert "prostate.diagnosis_date" in rights
    death = form.variable("cause_of_death")
    assert death is not None and death.omop is not None and death.omop.table is OmopTable.DEATH
    assert death.required_when[0].field == "vital_status"


def test_registry_gets_builtin_forms_and_lists_names_when_missing() -> None:
    registry = FormRegistry()
    assert registry.names() == BUILTIN and len(registry) == 4
    assert "prostate" in registry
    assert registry.get("breast").name == "breast"
    assert [f.name for f in registry] == BUILTIN
    with pytest.raises(NotFound, match="no clinical form 'lung'.*breast, colorectal, prostate"):
        registry.get("lung")


def test_builtin_form_unknown_name() -> None:
    with pytest.raises(NotFound, match="built-in forms are breast"):
        builtin_form("nope")


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_registry_adds_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    folder.mkdir()
    _write(folder / "demo.yaml", minimal())
    other = minimal()
    other["name"] = "demo_visit"
    other["rules"] = [
        {"name": "after-demo", "left": "visit_date", "op": ">=", "right": "demo.diagnosis_date"}
    ]
    single = _write(tmp_path / "visit.yml", other)
    registry = FormRegistry([folder, single])
    assert registry.names() == [*BUILTIN[:2], "demo", "demo_visit", *BUILTIN[2:]]
    assert registry.get("demo_visit").rules[0].right == "demo.diagnosis_date"
    only = FormRegistry([folder], builtin=False)
    assert only.names() == ["demo"]


def test_registry_rejects_a_duplicate_name(tmp_path: Path) -> None:
    clash = minimal()
    clash["name"] = "prostate"
    path = _write(tmp_path / "mine.yaml", clash)
    with pytest.raises(InvalidInput, match=r"form 'prostate' is defined twice.*mine\.yaml"):
        FormRegistry([path])


@pytest.mark.parametrize(
    ("right", "expected"),
    [
        ("other.missing_date", r"refers to form 'other', which is not loaded"),
        ("prostate.no_such", r"form 'prostate' has no variable 'no_such'"),
        ("prostate.histology", r"visit_date is a date and prostate\.histology a code"),
    ],
)
def test_registry_checks_cross_form_references(tmp_path: Path, right: str, expected: str) -> None:
    data = minimal()
    data["rules"] = [{"name": "cross", "left": "visit_date", "op": ">=", "right": right}]
    path = _write(tmp_path / "demo.yaml", data)
    with pytest.raises(InvalidInput, match=expected):
        FormRegistry([path])


def test_load_form_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "demo.yaml", minimal())
    assert load_form(path).source == str(path)
    with pytest.raises(InvalidInput, match="cannot read the form definition"):
        load_form(tmp_path / "absent.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nvariables:\n  - name: a\n   type: string\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"broken\.yaml: not valid YAML at line 4"):
        load_form(path)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInput, match="expected a mapping"):
        parse_form_text("- a\n- b\n", "list.yaml")


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(minimal())
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()
V = "variables"


# Each case breaks the minimal definition in one place; the message names the place and fix.
MALFORMED = [
    (("colour",), "red", r"demo\.yaml: unknown key 'colour'; allowed keys: name"),
    (("titel",), "x", r"unknown key 'titel' \(did you mean 'title'\?\)"),
    (("name",), "Demo Form", r"form name 'Demo Form' must be lower-case"),
    (("name",), _DELETE, r"name must be a non-empty text"),
    (("version",), "1", r"version must be a positive integer"),
    (("version",), 0, r"version must be a positive integer"),
    (("version",), True, r"version must be a positive integer"),
    ((V,), [], r"'variables' must list at least one variable"),
    ((V,), {"a": 1}, r"variables must be a list"),
    ((V, 2, "type"), "float", r"variable 'score': type 'float' is not a variable type"),
    ((V, 2, "unit_of_measure"), "mL", r"variable 'score': unknown key 'unit_of_measure'"),
    ((V, 2, "minimum"), 11, r"variable 'score': minimum \(11\) is greater than maximum \(10\)"),
    ((V, 2, "maximum"), "ten", r"variable 'score': maximum must be a number"),
    ((V, 2, "required"), "yes", r"variable 'score': required must be true or false"),
    ((V, 2, "codes"), ["a"], r"variable 'score': 'codes' is only for code variables"),
    ((V, 2, "pattern"), "[0-9]+", r"'pattern' is only for string variables"),
    ((V, 6, "pattern"), "[0-9", r"variable 'cause': pattern is not a valid regular expression"),
    ((V, 1, "unit"), "d", r"variable 'diagnosis_date': 'unit' is only for integer and number"),
    ((V, 1, "minimum"), 0, r"minimum/maximum are only for integer and number variables"),
    ((V, 5, "codes"), [], r"variable 'status': a code variable needs a non-empty 'codes' list"),
    ((V, 5, "codes"), ["a", "A"], r"code 'A' is listed twice"),
    ((V, 5, "codes"), [False], r"value is the boolean False; YAML reads unquoted yes/no"),
    ((V, 5, "codes"), [{"value": "a", "concept": "2857-1"}], r"concept must be a concept key"),
    ((V, 5, "codes"), [{"value": "a", "text": "A"}], r"code #1: unknown key 'text'"),
    ((V, 3, "name"), "score", r"variable 'score' is defined twice"),
    ((V, 3, "name"), "patient_id", r"patient_id is an identity field"),
    ((V, 3, "name"), "Part A", r"name 'Part A' must be lower-case"),
    ((V, 0, "required"), False, r"key variable 'visit_date' must be required: true"),
    (("key",), ["visit"], r"key: there is no variable 'visit' in this form; did you mean"),
    (("date",), "score", r"date must name a date variable; score is a integer"),
    (("date",), "when", r"date: there is no variable 'when'"),
    (
        (V, 6, "required_when"),
        [{"field": "stats", "equals": "deceased"}],
        r"variable 'cause': required_when: condition #1: there is no variable 'stats' in this "
        r"form; did you mean 'status'\?",
    ),
    (
        (V, 6, "required_when"),
        [{"field": "status", "equals": "dead"}],
        r"'dead' is not a code of status; its codes are alive, deceased",
    ),
    (
        (V, 6, "required_when"),
        [{"field": "status", "equals": "deceased", "in": ["alive"]}],
        r"exactly one test",
    ),
    ((V, 6, "required_when"), [{"field": "status", "is": "x"}], r"unknown key 'is'"),
    ((V, 6, "required_when"), [{"field": "status", "in": []}], r"'in' takes a non-empty list"),
    ((V, 6, "required_when"), [{"field": "status", "present": "yes"}], r"write 'present: true'"),
    ((V, 6, "required_when"), [{"field": "cause", "present": True}], r"cannot depend on itself"),
    ((V, 6, "required_when"), [{"field": "score", "equals": "high"}], r"score is a number"),
    ((V, 6, "allowed_when"), [{"field": "visit_date", "equals": "31/12/2020"}], r"is a date"),
    ((V, 6, "required"), True, r"required is true, so required_when never applies"),
    ((V, 7, "omop", "table"), "labs", r"table 'labs' is not an OMOP table we fill"),
    ((V, 7, "omop", "concept"), "2857-1", r"concept must be a concept key"),
    ((V, 7, "omop", "date"), "score", r"date must name a date variable; score is a integer"),
    ((V, 7, "omop", "date"), "psa_date", r"omop: date: there is no variable 'psa_date'"),
    ((V, 7, "omop", "event"), "histology", r"omop: event: there is no variable 'histology'"),
    ((V, 7, "omop", "column"), "value_as_number", r"'column' is only used for person and death"),
    ((V, 7, "omop", "table"), "person", r"a person target needs 'column'"),
    ((V, 7, "omop", "loinc"), "x", r"omop: unknown key 'loinc'"),
    (("rules", 0, "left"), "visit", r"rule 'visit-after-diagnosis': left: there is no variable"),
    (("rules", 0, "op"), "=>", r"op '=>' is not a comparison; use one of <, <=, =, >=, >"),
    (("rules", 0, "right"), "diagnosis", r"right: there is no variable 'diagnosis'"),
    (("rules", 0, "right"), "score", r"visit_date is a date and score a integer"),
    (("rules", 0, "right"), "1", r"visit_date is a date: it cannot be compared with a number"),
    (("rules", 0, "right"), "a * b", r"right: cannot read 'a \* b'"),
    (("rules", 0, "severity"), "fatal", r"severity 'fatal' must be 'error' or 'warning'"),
    (("rules", 0, "name"), "Visit After", r"rule name 'Visit After' must be lower-case"),
    (("rules", 0, "because"), "x", r"rule #1: unknown key 'because'"),
    (("rules", 1, "name"), "visit-after-diagnosis", r"rule name 'visit-after-diagnosis' is used"),
    (("rules", 1, "right"), "part_a + status", r"score is a integer: it cannot be compared"),
    (("rules", 1, "right"), "part_a + other.x", r"other\.x refers to another form"),
]


@pytest.mark.parametrize(("path", "value", "expected"), MALFORMED)
def test_malformed_definition_is_rejected_with_a_message(
    path: tuple[Any, ...], value: Any, expected: str
) -> None:
    data = _set(path, value)
    with pytest.raises(InvalidInput, match=expected) as info:
        parse_form(data, "demo.yaml")
    assert str(info.value).startswith("demo.yaml: ")


def test_lt_on_a_code_is_rejected() -> None:
    data = minimal()
    data["rules"] = [{"name": "bad", "left": "status", "op": "<", "right": "status"}]
    with pytest.raises(InvalidInput, match=r"< compares numbers or dates; status is a code"):
        parse_form(data, "demo.yaml")


def test_condition_values_are_typed_like_their_field() -> None:
    data = minimal()
    data["variables"][6]["required_when"] = [
        {"field": "status", "in": ["deceased"]},
    ]
    data["variables"][6]["allowed_when"] = [{"field": "visit_date", "not_equals": "2020-01-02"}]
    data["rules"][0]["when"] = [{"field": "score", "not_in": [1, 2.5]}]
    form = parse_form(data, "demo.yaml")
    cause = form.variable("cause")
    assert cause is not None
    assert cause.required_when[0].value == ("deceased",)
    assert cause.allowed_when[0].value == dt.date(2020, 1, 2)
    assert form.rules[0].when[0].value == (1, 2.5)


def test_numeric_right_is_read_from_yaml_number() -> None:
    data = minimal()
    data["rules"][1]["right"] = 7
    assert parse_form(data, "demo.yaml").rules[1].right == "7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", (Operand(1, variable="a"),)),
        ("a + b", (Operand(1, variable="a"), Operand(1, variable="b"))),
        ("a-2", (Operand(1, variable="a"), Operand(-1, number=2))),
        ("1.5", (Operand(1, number=1.5),)),
        ("prostate.diagnosis_date", (Operand(1, variable="diagnosis_date", form="prostate"),)),
    ],
)
def test_parse_operands(text: str, expected: tuple[Operand, ...]) -> None:
    assert parse_operands(text) == expected


@pytest.mark.parametrize("text", ["", "a b", "a +", "+", "a ** b", "a.b.c"])
def test_parse_operands_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_operands(text)


def test_definition_conditions_use_the_exact_code() -> None:
    data = minimal()
    data["variables"][6]["required_when"] = [{"field": "status", "equals": "Deceased"}]
    with pytest.raises(InvalidInput, match="'Deceased' is not a code of status"):
        parse_form(data, "demo.yaml")


def test_absent_must_be_a_boolean() -> None:
    data = {
        "name": "f",
        "version": 1,
        "title": "F",
        "description": "",
        "variables": [
            {
                "name": "surgery",
                "type": "code",
                "codes": [{"value": "none", "absent": "yes"}, {"value": "mastectomy"}],
            }
        ],
    }
    with pytest.raises(InvalidInput, match="absent is 'yes'"):
        parse_form(data, "f.yaml")
    data["variables"][0]["codes"][0]["absent"] = True  # type: ignore[index]
    form = parse_form(data, "f.yaml")
    surgery = form.variable("surgery")
    assert surgery is not None and [c.absent for c in surgery.codes] == [True, False]
