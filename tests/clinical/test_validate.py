"""Record validation: typing (CSV strings and JSON values), codes, ranges, conditional and
cross-field / cross-form rules, every issue of a record reported together."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from biobank.clinical import (
    Form,
    Severity,
    ValidationIssue,
    Value,
    builtin_form,
    check_rules,
    coerce_record,
    coerce_value,
    has_errors,
    parse_form,
    record_key,
    validate_record,
)

D = dt.date


def demo_form() -> Form:
    return parse_form(
        {
            "name": "demo",
            "version": 1,
            "key": ["visit_date"],
            "variables": [
                {"name": "visit_date", "type": "date", "required": True},
                {"name": "note", "type": "string", "pattern": "[A-Z]{2}-[0-9]{3}"},
                {"name": "count", "type": "integer", "minimum": 0, "maximum": 50},
                {"name": "dose", "type": "number", "unit": "mg", "minimum": 0.5},
                {"name": "smoker", "type": "boolean"},
                {
                    "name": "status",
                    "type": "code",
                    "codes": [
                        {"value": "alive", "label": "Alive"},
                        {"value": "deceased", "label": "Deceased"},
                    ],
                },
                {"name": "letter", "type": "code", "codes": [chr(c) for c in range(65, 85)]},
                {"name": "when", "type": "date"},
                {"name": "digit", "type": "code", "codes": [0, "4", "4A"]},
            ],
        },
        "demo.yaml",
    )


def one(form: Form, field: str, raw: Any) -> tuple[dict[str, Value], list[ValidationIssue]]:
    return coerce_record(form, {"patient_id": "P1", "visit_date": "2021-01-01", field: raw}, 0)


ACCEPTED = [
    # (field, raw as CSV text or JSON value, typed value)
    ("note", "AB-123", "AB-123"),
    ("note", " AB-123 ", "AB-123"),
    ("count", "12", 12),
    ("count", 12, 12),
    ("count", "+7", 7),
    ("count", 12.0, 12),
    ("count", "12.0", 12),
    ("dose", "4.5", 4.5),
    ("dose", 4.5, 4.5),
    ("dose", 7, 7),
    ("dose", "1e1", 10.0),
    ("dose", " 3 ", 3),
    ("smoker", "true", True),
    ("smoker", "No", False),
    ("smoker", "YES", True),
    ("smoker", "0", False),
    ("smoker", 1, True),
    ("smoker", False, False),
    ("status", "alive", "alive"),
    ("status", "DECEASED", "deceased"),
    ("status", "Alive", "alive"),
    ("letter", "c", "C"),
    ("digit", 4, "4"),
    ("digit", "4", "4"),
    ("when", "2020-12-31", D(2020, 12, 31)),
    ("when", "2020-12-31T23:59:00Z", D(2020, 12, 31)),
    ("when", D(2020, 1, 2), D(2020, 1, 2)),
    ("when", dt.datetime(2020, 1, 2, 10, 0), D(2020, 1, 2)),
]


@pytest.mark.parametrize(("field", "raw", "typed"), ACCEPTED)
def test_accepted_values_are_typed(field: str, raw: Any, typed: Value) -> None:
    values, issues = one(demo_form(), field, raw)
    assert issues == []
    assert values[field] == typed
    assert type(values[field]) is type(typed)


REJECTED = [
    # (field, raw, rule, words in the message, words in the hint)
    ("note", "ab-12", "pattern", "does not have the expected form", "matches [A-Z]{2}-[0-9]{3}"),
    ("note", ["x"], "type", "must be text", "as text"),
    ("count", "12.5", "type", "whole number; '12.5' is not", "(no decimals)"),
    ("count", 12.5, "type", "whole number; 12.5 is not", "no decimals"),
    ("count", True, "type", "not a true/false value", "whole number such as 12"),
    ("count", "twelve", "type", "'twelve' is not", "whole number"),
    ("count", "51", "range", "count is 51 but must be between 0 and 50", "check the value"),
    ("count", -1, "range", "count is -1 but must be between 0 and 50", "check the value"),
    ("dose", "4,5", "type", "uses a comma for decimals", "use a dot as the decimal separator: 4.5"),
    ("dose", "<0.1", "type", "is a bound, not a value", "below the detection limit give the limit"),
    ("dose", "abc", "type", "dose must be a number; 'abc' is not", "with a dot for decimals"),
    ("dose", "nan", "type", "'nan' is not", "e.g. 4.5"),
    ("dose", float("inf"), "type", "finite number", "e.g. 4.5"),
    ("dose", "1e400", "type", "finite number; '1e400' is not", "e.g. 4.5"),
    ("dose", True, "type", "not a true/false value", "e.g. 4.5"),
    ("dose", "0.2", "range", "dose is 0.2 mg but must be at least 0.5 mg", "its unit (mg)"),
    ("smoker", "maybe", "type", "must be true or false", "yes/no or 1/0"),
    ("smoker", 2, "type", "must be true or false", "true/false"),
    ("status", "dead", "code", "'dead' is not a code of status", "use one of: alive, deceased"),
    ("status", "alve", "code", "is not a code", "did you mean 'alive'?"),
    ("status", 3.5, "code", "must be one of its codes", "alive, deceased"),
    ("letter", "Z", "code", "'Z' is not a code of letter", "… (20 codes in all"),
    ("when", "31/12/2020", "type", "must be a date written YYYY-MM-DD", "2020-12-31"),
    ("when", "03/04/2020", "type", "YYYY-MM-DD", "2020-04-03 if it is day/month/year"),
    ("when", "2021-02-30", "type", "not a real calendar date", "check the day and the month"),
    ("when", "20210203", "type", "must be a date written YYYY-MM-DD", "e.g. 2021-03-04"),
    ("when", 20210203, "type", "not a number", "YYYY-MM-DD"),
    ("when", "yesterday", "type", "'yesterday' is not", "YYYY-MM-DD"),
]


@pytest.mark.parametrize(("field", "raw", "rule", "message", "hint"), REJECTED)
def test_rejected_values_say_what_and_how_to_fix(
    field: str, raw: Any, rule: str, message: str, hint: str
) -> None:
    values, issues = one(demo_form(), field, raw)
    assert field not in values
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.record, issue.field, issue.rule, issue.severity) == (0, field, rule, "error")
    assert message in issue.message
    assert hint in issue.hint
    assert issue.value is not None  # the value as submitted goes back to the submitter
    assert issue.record_key == "visit_date=2021-01-01"


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_values_and_required(missing: Any) -> None:
    form = demo_form()
    values, issues = coerce_record(
        form, {"patient_id": "P1", "visit_date": missing, "count": missing}, 4
    )
    assert "count" not in values and "visit_date" not in values
    assert [(i.field, i.rule, i.record) for i in issues] == [("visit_date", "required", 4)]
    assert issues[0].message == "visit_date is required"
    assert issues[0].record_key == "visit_date="


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ({"patient_id": "P1"}, {"patient_id": "P1"}),
        ({"patient_id": 1234}, {"patient_id": "1234"}),
        (
            {"patient_id": "P1", "issuer_of_patient_id": "HOSP"},
            {"patient_id": "P1", "issuer_of_patient_id": "HOSP"},
        ),
        ({"patient_pseudonym": "ps-1"}, {"patient_pseudonym": "ps-1"}),
    ],
)
def test_identity_fields_pass_through_as_strings(
    identity: dict[str, Any], expected: dict[str, str]
) -> None:
    values, issues = coerce_record(demo_form(), {"visit_date": "2021-01-01", **identity}, 0)
    assert issues == []
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize("identity", [{}, {"patient_id": ""}, {"issuer_of_patient_id": "HOSP"}])
def test_a_record_must_name_its_patient(identity: dict[str, Any]) -> None:
    _, issues = coerce_record(demo_form(), {"visit_date": "2021-01-01", **identity}, 2)
    assert [(i.field, i.rule) for i in issues] == [("patient_id", "required")]
    assert "patient_pseudonym" in issues[0].hint


def test_identity_of_a_wrong_type_is_reported_once() -> None:
    _, issues = coerce_record(demo_form(), {"visit_date": "2021-01-01", "patient_id": ["a"]}, 0)
    assert [(i.field, i.rule) for i in issues] == [("patient_id", "type")]


@pytest.mark.parametrize(
    ("field", "hint"),
    [
        ("cuont", "did you mean count?"),
        ("Visit_Date", "did you mean visit_date?"),
        ("patientid", "did you mean patient_id?"),
        ("xyzzy", "remove it, or use a variable of form demo"),
    ],
)
def test_unknown_fields_are_errors_with_the_closest_name(field: str, hint: str) -> None:
    _, issues = coerce_record(
        demo_form(), {"patient_id": "P1", "visit_date": "2021-01-01", field: "3"}, 0
    )
    assert len(issues) == 1
    assert (issues[0].field, issues[0].rule, issues[0].severity) == (
        field,
        "unknown_field",
        "error",
    )
    assert issues[0].message == f"{field} is not a variable of form demo"
    assert hint in issues[0].hint
    assert issues[0].value == "3"


def test_every_problem_of_a_record_is_reported_together() -> None:
    raw = {
        "visit_date": "31/12/2020",
        "note": "bad",
        "count": "99",
        "dose": "4,5",
        "smoker": "perhaps",
        "status": "dead",
        "when": "2021-13-01",
        "extra": "x",
    }
    values, issues = validate_record(demo_form(), raw, 7)
    assert [(i.field, i.rule) for i in issues] == [
        ("patient_id", "required"),
        ("visit_date", "type"),
        ("note", "pattern"),
        ("count", "range"),
        ("dose", "type"),
        ("smoker", "type"),
        ("status", "code"),
        ("when", "type"),
        ("extra", "unknown_field"),
    ]
    assert all(i.record == 7 for i in issues)
    assert values == {}


def test_coerce_value_raises_for_direct_callers() -> None:
    variable = demo_form().variable("count")
    assert variable is not None
    assert coerce_value(variable, "3") == 3
    with pytest.raises(ValueError, match="between 0 and 50"):
        coerce_value(variable, "70")


# --- phase 2 ------------------------------------------------------------------------------


def rules_form() -> Form:
    return parse_form(
        {
            "name": "visit",
            "version": 1,
            "key": ["visit_date"],
            "variables": [
                {"name": "visit_date", "type": "date", "required": True},
                {"name": "status", "type": "code", "codes": ["alive", "deceased"]},
                {
                    "name": "death_date",
                    "type": "date",
                    "required_when": [{"field": "status", "equals": "deceased"}],
                    "allowed_when": [{"field": "status", "equals": "deceased"}],
                },
                {"name": "kind", "type": "code", "codes": ["a", "b", "c"]},
                {
                    "name": "detail",
                    "type": "string",
                    "required_when": [{"field": "kind", "in": ["a", "b"]}],
                    "allowed_when": [{"field": "kind", "not_in": ["c"]}],
                },
                {
                    "name": "other",
                    "type": "string",
                    "required_when": [{"field": "kind", "not_equals": "a"}],
                },
                {
                    "name": "flag",
                    "type": "boolean",
                    "required_when": [{"field": "detail", "absent": True}],
                    "allowed_when": [{"field": "kind", "present": True}],
                },
                {"name": "taken", "type": "integer"},
                {"name": "positive", "type": "integer"},
                {"name": "part_a", "type": "integer"},
                {"name": "part_b", "type": "integer"},
                {"name": "total", "type": "integer"},
                {"name": "ratio", "type": "number"},
            ],
            "rules": [
                {
                    "name": "death-not-after-visit",
                    "left": "death_date",
                    "op": "<=",
                    "right": "visit_date",
                    "message": "the death is dated after the visit",
                    "hint": "check both dates",
                },
                {"name": "positive-within-taken", "left": "positive", "op": "<=", "right": "taken"},
                {"name": "total-is-sum", "left": "total", "op": "=", "right": "part_a + part_b"},
                {
                    "name": "total-big-for-b",
                    "left": "total",
                    "op": ">",
                    "right": 10,
                    "when": [{"field": "kind", "equals": "b"}],
                    "severity": "warning",
                },
                {"name": "ratio-third", "left": "ratio", "op": "=", "right": "part_a - 1"},
                {
                    "name": "after-diagnosis",
                    "left": "visit_date",
                    "op": ">=",
                    "right": "base.diagnosis_date",
                    "message": "the visit precedes the diagnosis",
                },
                {"name": "before-end", "left": "visit_date", "op": "<", "right": "base.end_date"},
            ],
        },
        "visit.yaml",
    )


def check(
    values: dict[str, Value],
    others: Mapping[str, Sequence[Mapping[str, Value]]] | None = None,
    **kwargs: Any,
) -> list[ValidationIssue]:
    stored = others or {}
    base = {"visit_date": D(2021, 3, 4), "kind": "c", "other": "x", "flag": True}
    return check_rules(rules_form(), {**base, **values}, 1, lambda f: stored.get(f, []), **kwargs)


def names(issues: list[ValidationIssue]) -> list[tuple[str | None, str]]:
    return [(i.field, i.rule) for i in issues]


def test_a_clean_record_has_no_rule_issue() -> None:
    assert check({}) == []


def test_required_when_triggers_and_passes() -> None:
    issues = check({"status": "deceased"})
    assert names(issues) == [("death_date", "required_when")]
    assert issues[0].message == "death_date is required when status is 'deceased'"
    assert issues[0].hint == "fill death_date or correct status"
    assert issues[0].record_key == "visit_date=2021-03-04"
    assert check({"status": "deceased", "death_date": D(2021, 3, 1)}) == []
    assert check({"status": "alive"}) == []


def test_allowed_when_triggers_and_passes() -> None:
    issues = check({"status": "alive", "death_date": D(2021, 3, 1)})
    assert names(issues) == [("death_date", "allowed_when")]
    assert issues[0].message == (
        "death_date may only be filled when status is 'deceased', but status is 'alive'"
    )
    assert issues[0].hint == "leave death_date empty or correct status"
    assert issues[0].value == "2021-03-01"
    issues = check({"death_date": D(2021, 3, 1)})  # status empty: the condition is false
    assert names(issues) == [("death_date", "allowed_when")]
    assert "but status is empty" in issues[0].message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"kind": "a"}, [("detail", "required_when")]),  # in
        ({"kind": "a", "detail": "d", "other": None}, []),  # not_equals does not hold
        ({"kind": "b", "detail": "d", "other": None}, [("other", "required_when")]),
        ({"kind": "b", "detail": "d"}, []),
        ({"kind": "c", "detail": "d"}, [("detail", "allowed_when")]),  # not_in
        ({"kind": None, "other": None, "detail": None, "flag": None}, [("flag", "required_when")]),
        ({"kind": None, "detail": "d"}, [("detail", "allowed_when"), ("flag", "allowed_when")]),
        ({"kind": "b", "detail": "d", "flag": None}, []),  # absent is false: detail is filled
    ],
)
def test_every_condition_operator(
    values: dict[str, Value], expected: list[tuple[str, str]]
) -> None:
    assert names(check(values)) == expected


def test_condition_messages_read_as_english() -> None:
    issues = check({"kind": "a"})
    assert issues[0].message == "detail is required when kind is one of 'a', 'b'"
    issues = check({"kind": "c", "detail": "d"})
    assert issues[0].message == (
        "detail may only be filled when kind is none of 'c', but kind is 'c'"
    )
    issues = check({"kind": None, "other": None, "detail": None, "flag": None})
    assert issues[0].message == "flag is required when detail is empty"
    issues = check({"kind": None, "detail": "d"})
    assert issues[1].message == "flag may only be filled when kind is filled, but kind is empty"


def test_date_rule() -> None:
    issues = check({"status": "deceased", "death_date": D(2021, 3, 5)})
    assert names(issues) == [("death_date", "death-not-after-visit")]
    assert issues[0].message == (
        "death_date (2021-03-05) must be on or before visit_date (2021-03-04): "
        "the death is dated after the visit"
    )
    assert issues[0].hint == "check both dates"
    assert issues[0].value == "2021-03-05"
    assert check({"status": "deceased", "death_date": D(2021, 3, 4)}) == []


def test_number_rule_with_default_hint() -> None:
    issues = check({"taken": 12, "positive": 13})
    assert names(issues) == [("positive", "positive-within-taken")]
    assert issues[0].message == "positive (13) must be at most taken (12)"
    assert issues[0].hint == "check positive and taken"
    assert check({"taken": 12, "positive": 12}) == []


def test_sum_rule() -> None:
    issues = check({"part_a": 3, "part_b": 4, "total": 8})
    assert names(issues) == [("total", "total-is-sum")]
    assert issues[0].message == "total (8) must be equal to part_a + part_b (7)"
    assert check({"part_a": 3, "part_b": 4, "total": 7}) == []


def test_difference_rule_with_floats() -> None:
    assert check({"part_a": 3, "ratio": 2.0}) == []
    assert names(check({"part_a": 3, "ratio": 2.5})) == [("ratio", "ratio-third")]


def test_literal_rule_with_when_and_warning_severity() -> None:
    issues = check({"kind": "b", "detail": "d", "total": 5})
    assert names(issues) == [("total", "total-big-for-b")]
    assert issues[0].severity is Severity.WARNING
    assert issues[0].message == "total (5) must be greater than 10 when kind is 'b'"
    assert not has_errors(issues)
    assert check({"kind": "c", "total": 5, "detail": None}) == []  # when does not hold


@pytest.mark.parametrize(
    "values",
    [
        {"death_date": None, "status": "deceased", "visit_date": None},
        {"positive": 13},  # taken missing
        {"total": 8, "part_a": 3},  # part_b missing
    ],
)
def test_rules_are_skipped_when_a_value_is_missing(values: dict[str, Value]) -> None:
    rule_names = {i.rule for i in check(values)}
    assert rule_names <= {"required_when"}


def test_cross_form_rule_against_the_stored_record() -> None:
    base = {"base": [{"diagnosis_date": D(2021, 5, 1)}]}
    issues = check({}, base)
    assert names(issues) == [("visit_date", "after-diagnosis")]
    assert issues[0].message == (
        "visit_date (2021-03-04) must be on or after base.diagnosis_date (2021-05-01): "
        "the visit precedes the diagnosis"
    )
    assert check({}, {"base": [{"diagnosis_date": D(2021, 3, 4)}]}) == []


def test_cross_form_rule_is_skipped_without_a_stored_value() -> None:
    assert check({}, {"base": []}) == []
    assert check({}, {"base": [{"diagnosis_date": None}]}) == []


def test_cross_form_rule_must_hold_for_each_stored_record() -> None:
    stored = {
        "base": [
            {"diagnosis_date": D(2020, 1, 1), "end_date": D(2022, 1, 1)},
            {"diagnosis_date": D(2021, 6, 1), "end_date": D(2021, 3, 4)},
            {"diagnosis_date": D(2019, 1, 1)},
        ]
    }
    issues = check({}, stored)
    assert names(issues) == [("visit_date", "after-diagnosis"), ("visit_date", "before-end")]
    assert (
        "base.diagnosis_date in each stored base record of the patient; 1 of 3 are not "
        "(e.g. 2021-06-01)" in issues[0].message
    )
    assert "1 of 2 are not (e.g. 2021-03-04)" in issues[1].message


def test_check_rules_does_not_judge_fields_already_invalid() -> None:
    # status failed phase 1: its conditions are not judged, death_date is not "required".
    issues = check({"status": None}, invalid={"status"})
    assert issues == []
    issues = check({"taken": 12, "positive": 13}, invalid={"taken"})
    assert issues == []


def test_check_rules_uses_the_key_it_is_given() -> None:
    issues = check({"taken": 1, "positive": 2}, key="visit_date=2021-01-01")
    assert issues[0].record_key == "visit_date=2021-01-01"


def test_validate_record_does_not_report_a_bad_field_twice() -> None:
    raw = {
        "patient_id": "P1",
        "visit_date": "2021-03-04",
        "status": "deceased",
        "death_date": "5 March 2021",
        "kind": "c",
        "other": "x",
        "flag": "true",
    }
    _, issues = validate_record(rules_form(), raw, 0)
    assert names(issues) == [("death_date", "type")]


def test_record_key() -> None:
    form = rules_form()
    assert record_key(form, {"visit_date": D(2021, 3, 4)}) == "visit_date=2021-03-04"
    assert record_key(form, {}) == "visit_date="
    assert record_key(builtin_form("prostate"), {"diagnosis_date": D(2020, 1, 1)}) == ""


def test_forms_without_key_leave_record_key_empty() -> None:
    _, issues = validate_record(builtin_form("prostate"), {"patient_id": "P1"}, 0)
    assert issues and all(i.record_key is None for i in issues)


def test_issue_json_names_record_field_value_rule_and_fix() -> None:
    _, issues = coerce_record(
        demo_form(), {"patient_id": "P1", "visit_date": "2021-01-01", "count": "99"}, 3
    )
    assert issues[0].to_json() == {
        "record": 3,
        "record_key": "visit_date=2021-01-01",
        "field": "count",
        "value": "99",
        "rule": "range",
        "severity": "error",
        "message": "count is 99 but must be between 0 and 50",
        "hint": "check the value and its unit",
    }


# --- the built-in forms -------------------------------------------------------------------

PROSTATE_CSV = {
    "patient_id": "PCA-0001",
    "sex": "male",
    "birth_date": "1951-02-03",
    "diagnosis_date": "2020-05-06",
    "histology": "acinar_adenocarcinoma",
    "psa": "7.4",
    "psa_date": "2020-03-30",
    "mri_date": "2020-04-10",
    "prostate_volume": "42",
    "pirads": "4",
    "biopsy_date": "2020-05-02",
    "biopsy_type": "both",
    "cores_taken": "14",
    "cores_positive": "4",
    "gleason_primary": "3",
    "gleason_secondary": "4",
    "gleason_score": "7",
    "isup_grade": "2",
    "ct": "T2a",
    "cn": "N0",
    "cm": "M0",
    "treatment_type": "radical_prostatectomy",
    "treatment_start_date": "2020-07-15",
    "adt_with_treatment": "no",
    "surgical_margin": "R0",
}
PROSTATE_JSON = {
    **PROSTATE_CSV,
    "psa": 7.4,
    "prostate_volume": 42,
    "pirads": 4,
    "cores_taken": 14,
    "cores_positive": 4,
    "gleason_primary": 3,
    "gleason_secondary": 4,
    "gleason_score": 7,
    "isup_grade": 2,
    "adt_with_treatment": False,
}
FOLLOWUP = {
    "patient_pseudonym": "ps-7f3a",
    "followup_date": "2022-01-10",
    "vital_status": "alive",
    "disease_status": "biochemical_recurrence",
    "progression_date": "2021-11-02",
    "psa": "0.4",
}
BREAST = {
    "patient_id": "BR-17",
    "sex": "female",
    "birth_date": "1966-08-21",
    "menopausal_status": "postmenopausal",
    "diagnosis_date": "2019-10-01",
    "histology": "invasive_ductal_nst",
    "laterality": "left",
    "birads": "4C",
    "tumour_size": "23",
    "grade": "2",
    "er_status": "positive",
    "er_percent": "90",
    "pr_status": "negative",
    "pr_percent": "0",
    "her2_ihc": "1+",
    "her2_status": "negative",
    "ki67": "15",
    "ct": "T2",
    "cn": "N1",
    "cm": "M0",
    "neoadjuvant_chemotherapy": "yes",
    "neoadjuvant_start_date": "2019-10-20",
    "surgery": "breast_conserving",
    "surgery_date": "2020-03-02",
    "radiotherapy": "yes",
    "radiotherapy_start_date": "2020-04-15",
    "followup_months": "36",
    "relapse": "no",
    "vital_status": "alive",
}
COLORECTAL = {
    "patient_id": "CRC-3",
    "sex": "male",
    "birth_date": "1958-01-30",
    "diagnosis_date": "2021-02-11",
    "location": "rectum",
    "histology": "adenocarcinoma",
    "cea": "6.1",
    "cea_date": "2021-02-08",
    "msi_status": "mss",
    "kras": "mutated",
    "nras": "wild_type",
    "braf": "wild_type",
    "ct": "T3",
    "cn": "N1b",
    "cm": "M0",
    "neoadjuvant_chemoradiotherapy": "true",
    "neoadjuvant_start_date": "2021-03-01",
    "surgery": "resection",
    "surgery_date": "2021-07-20",
    "adjuvant_chemotherapy": "false",
    "followup_months": "24",
    "relapse": "yes",
    "relapse_months": "14",
    "vital_status": "deceased",
    "cause_of_death": "colorectal_cancer",
}
REALISTIC = [
    ("prostate", PROSTATE_CSV),
    ("prostate", PROSTATE_JSON),
    ("prostate_followup", FOLLOWUP),
    ("breast", BREAST),
    ("colorectal", COLORECTAL),
]


@pytest.mark.parametrize(("name", "raw"), REALISTIC)
def test_a_realistic_record_of_every_builtin_form_validates_clean(
    name: str, raw: dict[str, Any]
) -> None:
    form = builtin_form(name)
    stored = {"prostate": [{"diagnosis_date": D(2020, 5, 6)}]}
    values, issues = validate_record(form, raw, 0, lambda f: stored.get(f, []))
    assert issues == []
    assert set(values) == {k for k, v in raw.items() if v != ""}


def test_builtin_forms_cover_all_their_variables_in_the_examples() -> None:
    for name, raw in REALISTIC:
        form = builtin_form(name)
        unused = {v.name for v in form.variables} - set(raw)
        allowed_unused = {
            "prostate_followup": {"death_date", "cause_of_death"},
            "breast": {"relapse_months", "cause_of_death"},
            "colorectal": set(),
            "prostate": set(),
        }[name]
        assert unused == allowed_unused


def test_csv_and_json_give_the_same_values() -> None:
    form = builtin_form("prostate")
    csv_values, _ = validate_record(form, PROSTATE_CSV, 0)
    json_values, _ = validate_record(form, PROSTATE_JSON, 0)
    assert csv_values == json_values
    assert csv_values["psa"] == 7.4 and csv_values["diagnosis_date"] == D(2020, 5, 6)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"gleason_score": "8"},
            [("gleason_score", "gleason-score-is-sum"), ("isup_grade", "isup-grade-for-score-8")],
        ),
        ({"isup_grade": "3"}, [("isup_grade", "isup-grade-for-gleason-3-4")]),
        (
            {"gleason_primary": "4", "gleason_secondary": "3", "isup_grade": "2"},
            [("isup_grade", "isup-grade-for-gleason-4-3")],
        ),
        (
            {"gleason_primary": "", "gleason_secondary": "", "isup_grade": "4"},
            [("isup_grade", "isup-grade-for-score-7-high")],
        ),
        (
            {"gleason_primary": "", "gleason_secondary": "", "isup_grade": "1"},
            [("isup_grade", "isup-grade-for-score-7-low")],
        ),
        (
            {
                "gleason_primary": "3",
                "gleason_secondary": "3",
                "gleason_score": "6",
                "isup_grade": "2",
            },
            [("isup_grade", "isup-grade-for-gleason-3-3")],
        ),
        (
            {
                "gleason_primary": "5",
                "gleason_secondary": "4",
                "gleason_score": "9",
                "isup_grade": "4",
            },
            [("isup_grade", "isup-grade-for-score-9-10")],
        ),
        ({"cores_positive": "15"}, [("cores_positive", "positive-cores-within-taken")]),
        (
            {"treatment_start_date": "2020-05-01"},
            [("treatment_start_date", "treatment-not-before-diagnosis")],
        ),
        ({"biopsy_date": "2020-05-20"}, [("diagnosis_date", "biopsy-not-after-diagnosis")]),
        (
            {
                "diagnosis_date": "1950-01-01",
                "treatment_start_date": "1950-02-01",
                "biopsy_date": "1949-12-01",
            },
            [("diagnosis_date", "diagnosis-after-birth")],
        ),
        ({"psa_date": ""}, [("psa_date", "required_when")]),
        (
            {"treatment_type": "none"},
            [
                ("treatment_start_date", "allowed_when"),
                ("surgical_margin", "allowed_when"),
            ],
        ),
        (
            {
                "treatment_type": "active_surveillance",
                "adt_with_treatment": "",
                "surgical_margin": "",
                "treatment_start_date": "",
            },
            [("treatment_start_date", "required_when")],
        ),
        (
            {"biopsy_date": "", "biopsy_type": "", "diagnosis_date": "2020-05-06"},
            [("cores_taken", "allowed_when"), ("cores_positive", "allowed_when")],
        ),
        ({"gleason_primary": "2"}, [("gleason_primary", "range")]),
        ({"ct": "T5"}, [("ct", "code")]),
    ],
)
def test_prostate_rules_trigger(changes: dict[str, str], expected: list[tuple[str, str]]) -> None:
    _, issues = validate_record(builtin_form("prostate"), {**PROSTATE_CSV, **changes}, 0)
    assert names(issues) == expected


def test_prostate_biopsy_after_diagnosis_is_only_a_warning() -> None:
    _, issues = validate_record(
        builtin_form("prostate"), {**PROSTATE_CSV, "biopsy_date": "2020-05-20"}, 0
    )
    assert [i.severity for i in issues] == [Severity.WARNING]
    assert not has_errors(issues)


@pytest.mark.parametrize(
    ("changes", "stored", "expected"),
    [
        (
            {},
            [{"diagnosis_date": D(2022, 2, 1)}],
            [
                ("followup_date", "followup-after-diagnosis"),
                ("progression_date", "progression-after-diagnosis"),
            ],
        ),
        (
            {"progression_date": "2022-02-01"},
            [],
            [("progression_date", "progression-within-followup")],
        ),
        (
            {"vital_status": "deceased"},
            [],
            [("death_date", "required_when"), ("cause_of_death", "required_when")],
        ),
        (
            {"vital_status": "deceased", "death_date": "2022-01-11", "cause_of_death": "unknown"},
            [],
            [("death_date", "death-within-followup")],
        ),
        (
            {"vital_status": "deceased", "death_date": "2019-01-01", "cause_of_death": "unknown"},
            [{"diagnosis_date": D(2020, 5, 6)}],
            [("death_date", "death-after-diagnosis")],
        ),
        ({"cause_of_death": "prostate_cancer"}, [], [("cause_of_death", "allowed_when")]),
        ({"disease_status": "stable_disease"}, [], [("progression_date", "allowed_when")]),
        ({"progression_date": ""}, [], [("progression_date", "required_when")]),
    ],
)
def test_followup_rules_trigger(
    changes: dict[str, str], stored: list[dict[str, Value]], expected: list[tuple[str, str]]
) -> None:
    _, issues = validate_record(
        builtin_form("prostate_followup"),
        {**FOLLOWUP, **changes},
        0,
        lambda f: stored if f == "prostate" else [],
    )
    assert names(issues) == expected
    assert all(i.record_key == f"followup_date={FOLLOWUP['followup_date']}" for i in issues)


def test_readme_example_message_is_what_the_code_says() -> None:
    _, issues = validate_record(
        builtin_form("prostate_followup"),
        {**FOLLOWUP, "followup_date": "2019-01-10", "progression_date": ""},
        3,
        lambda f: [{"diagnosis_date": D(2020, 5, 6)}],
    )
    issue = next(i for i in issues if i.rule == "followup-after-diagnosis")
    assert issue.to_json() == {
        "record": 3,
        "record_key": "followup_date=2019-01-10",
        "field": "followup_date",
        "value": "2019-01-10",
        "rule": "followup-after-diagnosis",
        "severity": "error",
        "message": "followup_date (2019-01-10) must be on or after prostate.diagnosis_date "
        "(2020-05-06): the follow-up is dated before the diagnosis",
        "hint": "check followup_date here and diagnosis_date in the patient's prostate record",
    }


@pytest.mark.parametrize(
    ("name", "changes", "expected"),
    [
        (
            "breast",
            {"relapse": "yes", "relapse_months": "40"},
            [("relapse_months", "relapse-within-followup")],
        ),
        ("breast", {"relapse": "yes"}, [("relapse_months", "required_when")]),
        ("breast", {"er_percent": "0"}, [("er_percent", "er-positive-from-1-percent")]),
        ("breast", {"pr_percent": "5"}, [("pr_percent", "pr-negative-below-1-percent")]),
        ("breast", {"surgery_date": "2019-10-10"}, [("surgery_date", "surgery-after-neoadjuvant")]),
        (
            "breast",
            {"neoadjuvant_start_date": "2019-09-01"},
            [("neoadjuvant_start_date", "neoadjuvant-not-before-diagnosis")],
        ),
        ("breast", {"sex": "male"}, [("menopausal_status", "allowed_when")]),
        ("breast", {"ki67": "101"}, [("ki67", "range")]),
        ("colorectal", {"relapse_months": "30"}, [("relapse_months", "relapse-within-followup")]),
        ("colorectal", {"location": "Colon"}, []),  # a code matches case-insensitively
        ("colorectal", {"cea": "6,1"}, [("cea", "type")]),
        ("colorectal", {"vital_status": "alive"}, [("cause_of_death", "allowed_when")]),
        ("colorectal", {"surgery": "none"}, [("surgery_date", "allowed_when")]),
    ],
)
def test_chaimeleon_like_rules_trigger(
    name: str, changes: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    raw = {"breast": BREAST, "colorectal": COLORECTAL}[name]
    _, issues = validate_record(builtin_form(name), {**raw, **changes}, 0)
    assert names(issues) == expected


def test_validation_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    validate_record(builtin_form("prostate"), {**PROSTATE_CSV, "psa": "4,5", "x": "Jane Doe"}, 0)
    assert caplog.records == []


class TestStoredValuesAsReadBack:
    """A cross-form rule compares against stored values even when they come back as text."""

    @pytest.mark.parametrize(
        "stored",
        ["2022-05-01", dt.datetime(2022, 5, 1, 10, 0), dt.date(2022, 5, 1)],
    )
    def test_followup_before_diagnosis_is_reported_not_raised(self, stored: object) -> None:
        form = builtin_form("prostate_followup")
        raw = {"patient_id": "X1", "followup_date": "2021-01-01", "vital_status": "alive"}
        values, _ = coerce_record(form, raw, 0)
        problems = check_rules(form, values, 0, lambda name: [{"diagnosis_date": stored}])
        assert any(issue.field == "followup_date" for issue in problems), problems

    def test_an_unreadable_stored_value_skips_the_rule(self) -> None:
        form = builtin_form("prostate_followup")
        raw = {"patient_id": "X1", "followup_date": "2021-01-01", "vital_status": "alive"}
        values, _ = coerce_record(form, raw, 0)
        problems = check_rules(form, values, 0, lambda name: [{"diagnosis_date": "garbage"}])
        assert not any(issue.field == "followup_date" for issue in problems)
