"""The cohort query language: Lens/EUCAIM AST, Beacon v2 filters, keys, values and errors."""

from __future__ import annotations

from typing import Any

import pytest

from biobank.catalog.cohort import ConceptRef, Criterion, Field, Op, Operand, Operation, Stratum
from biobank.datasets import Granularity, QueryFormat, parse_beacon, parse_lens, parse_query
from biobank.datasets.cohort import MAX_CONDITIONS, criterion
from biobank.errors import InvalidQuery

# The example of the research notes (§A8), as Samply Focus forwards it to EUCAIM nodes.
FOCUS_AST = {
    "id": "a6f1ccf3-ebf1-424f-9d69-4e5d135f2340",
    "ast": {
        "operand": "OR",
        "children": [
            {
                "operand": "AND",
                "children": [
                    {"operand": "OR", "children": [
                        {"key": "SNOMEDCT263495000", "type": "EQUALS", "system": "",
                         "value": "SNOMEDCT248152002"}]},
                    {"operand": "OR", "children": [
                        {"key": "RID10311", "type": "EQUALS",
                         "system": "urn:oid:2.16.840.1.113883.6.256", "value": "RID10312"}]},
                    {"operand": "OR", "children": [
                        {"key": "age_at_diagnosis", "type": "BETWEEN",
                         "value": {"min": 40, "max": 70}}]},
                ],
            }
        ],
    },
}  # fmt: skip


SNOMED_PROSTATE = ConceptRef(code="399068003", vocabulary_id="SNOMED")


def leaves(node: Operation | Criterion) -> list[Criterion]:
    if isinstance(node, Criterion):
        return [node]
    return [c for child in node.children for c in leaves(child)]


def one(key: str, type_: str, value: Any) -> Criterion:
    return criterion(key, type_, value)


class TestLens:
    def test_the_focus_example(self) -> None:
        query = parse_lens(FOCUS_AST)
        assert query.query_id == FOCUS_AST["id"] and query.format is QueryFormat.LENS
        assert query.tree.operand is Operand.OR
        assert leaves(query.tree) == [
            Criterion(Field.GENDER, Op.EQUALS, (8532,)),
            Criterion(Field.MODALITY, Op.EQUALS, ("MR",)),
            Criterion(Field.AGE_AT_DIAGNOSIS, Op.BETWEEN, (40, 70)),
        ]

    def test_without_the_envelope_and_with_strata(self) -> None:
        bare = {**FOCUS_AST["ast"], "stratify": ["sex", "age_decade"]}  # type: ignore[dict-item]
        query = parse_query(bare)
        assert leaves(query.tree) == leaves(parse_lens(FOCUS_AST).tree)
        assert query.stratify == (Stratum.GENDER, Stratum.AGE_DECADE)
        assert query.query_id is None

    def test_normalised_text_ignores_order_and_id(self) -> None:
        a = parse_lens(FOCUS_AST)
        children = list(FOCUS_AST["ast"]["children"][0]["children"])  # type: ignore[index]
        b = parse_lens({"ast": {"operand": "OR", "children": [
            {"operand": "AND", "children": children[::-1]}]}})  # fmt: skip
        assert a.normalised() == b.normalised()
        c = parse_lens({"ast": {"operand": "AND", "children": children[:2]}})
        assert c.normalised() != a.normalised()

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("gender", "male", 8507),
            ("sex", "F", 8532),
            ("SNOMEDCT263495000", "SNOMEDCT248153007", 8507),
            ("gender", 8532, 8532),
            ("gender", "NCIT:C20197", 8507),
            ("gender", "unknown", 0),
            ("modality", "mr", "MR"),
            ("RID10311", "RID10321", "CT"),
            ("modality", "PET", "PT"),
            ("body_part", "prostate", "PROSTATE"),
            ("SNOMEDCT123037004", "SNOMEDCT41216001", "PROSTATE"),
            ("bodyPart", "SNOMED:76752008", "BREAST"),
            ("C25392", "Philips", "Philips"),
            ("series_label", "t2w", "T2W"),
            ("label", "Localizer", "localizer"),
            ("orientation", "Axial", "axial"),
            ("curation_decision", "approved", "approve"),
            ("is3d", "yes", True),
            ("contrast", False, False),
            ("year_of_birth", "1950", 1950),
            ("age_at_imaging", 60.0, 60),
            ("diagnosis", 4163261, ConceptRef(concept_id=4163261)),
            ("SNOMEDCT439401001", "SNOMEDCT399068003", ConceptRef(code="399068003",
                                                                   vocabulary_id="SNOMED")),
            ("diagnosis", "C61", ConceptRef(code="C61")),
            ("diagnosis", "ICD10:C61", ConceptRef(code="C61", vocabulary_id="ICD10")),
            ("diagnosis", "OMOP:4163261", ConceptRef(concept_id=4163261)),
            ("prostate.psa", 10.5, 10.5),
            ("prostate.gleason_score", "4+3", "4+3"),
        ],
    )  # fmt: skip
    def test_values_are_normalised(self, key: str, value: Any, expected: Any) -> None:
        assert one(key, "EQUALS", value).values == (expected,)

    def test_variables_and_ranges(self) -> None:
        psa = one("Prostate.PSA", "BETWEEN", {"min": "4", "max": 10})
        assert (psa.field, psa.variable, psa.values) == (Field.VARIABLE, "prostate.psa", (4, 10))
        assert one("age", "BETWEEN", {"min": 50}).values == (50, None)
        assert one("prostate.isup_grade", "GREATER_THAN", 2).values == (2,)
        assert one("modality", "IN", ["MR", "mri", "CT"]).values == ("MR", "CT")
        assert one("manufacturer", "CONTAINS", "siem").values == ("siem",)

    @pytest.mark.parametrize(
        ("condition", "message"),
        [
            (
                {"key": "colour", "type": "EQUALS", "value": "red"},
                "unknown key 'colour'.*valid keys: gender",
            ),
            ({"key": "age_at_diagnosis", "type": "BETWEEN", "value": 50}, r"\{\"min\""),
            (
                {"key": "age_at_diagnosis", "type": "BETWEEN", "value": {"min": "abc"}},
                "'abc'|\"abc\" is not a number",
            ),
            ({"key": "age_at_diagnosis", "type": "EQUALS", "value": "abc"}, "is not a number"),
            (
                {"key": "age_at_diagnosis", "type": "BETWEEN", "value": {"min": 70, "max": 50}},
                "above max",
            ),
            (
                {"key": "age_at_diagnosis", "type": "CONTAINS", "value": "5"},
                "not applicable.*BETWEEN",
            ),
            ({"key": "gender", "type": "GREATER_THAN", "value": 1}, "not applicable"),
            ({"key": "gender", "type": "EQUALS", "value": "robot"}, "not a sex; send male"),
            ({"key": "series_label", "type": "EQUALS", "value": "T3W"}, "send one of .*T2W"),
            ({"key": "gender", "type": "LIKE", "value": "m"}, "unknown condition type 'LIKE'"),
            ({"key": "gender", "type": "IN", "value": []}, "empty list"),
            (
                {"key": "prostate.psa", "type": "BETWEEN", "value": {"min": "2020-01-01"}},
                "date ranges",
            ),
            ({"key": "prostate.psa", "type": "IN", "value": [1, "x"]}, "mix of numbers and codes"),
            ({"key": "gender", "type": "EQUALS"}, 'needs "key", "type" and "value"'),
            (
                {"key": "body_part", "type": "EQUALS", "value": "SNOMEDCT999"},
                "not a body part we map",
            ),
        ],
    )
    def test_errors_name_the_place_and_what_to_send(
        self, condition: dict[str, Any], message: str
    ) -> None:
        query = {"ast": {"operand": "AND", "children": [
            {"operand": "OR", "children": [{"key": "gender", "type": "EQUALS", "value": "male"}]},
            {"operand": "OR", "children": [condition]}]}}  # fmt: skip
        with pytest.raises(InvalidQuery, match=message) as raised:
            parse_lens(query)
        assert str(raised.value).startswith("ast.children[1].children[0]")

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ([], "expected a JSON object"),
            ({"ast": {"operand": "XOR", "children": []}}, "ast.operand: must be AND or OR"),
            ({"ast": {"operand": "AND", "children": {}}}, "ast.children: expected a list"),
            (
                {"ast": {"operand": "AND", "children": [5]}},
                r"ast.children\[0\]: expected an object",
            ),
            ({"ast": {"operand": "AND", "children": [{"value": 1}]}}, "neither an operation"),
            ({"stratify": ["gender"]}, 'no "ast"'),
            ({"ast": {"operand": "AND", "children": []}, "colour": 1}, "unknown field 'colour'"),
            (
                {"ast": {"operand": "AND", "children": []}, "stratify": ["shoe_size"]},
                "cannot stratify by 'shoe_size'",
            ),
            (
                {"ast": {"operand": "AND", "children": []}, "stratify": ["gender", "gender"]},
                "at most 3 different",
            ),
            ({"ast": {"operand": "AND", "children": []}, "granularity": "record"}, "record-level"),
        ],
    )
    def test_malformed_queries(self, query: Any, message: str) -> None:
        with pytest.raises(InvalidQuery, match=message):
            parse_query(query)

    def test_limits(self) -> None:
        deep: dict[str, Any] = {"key": "gender", "type": "EQUALS", "value": "male"}
        for _ in range(20):
            deep = {"operand": "AND", "children": [deep]}
        with pytest.raises(InvalidQuery, match="deeper than"):
            parse_lens({"ast": deep})
        many = [{"key": "gender", "type": "EQUALS", "value": "male"}] * (MAX_CONDITIONS + 1)
        with pytest.raises(InvalidQuery, match="more than"):
            parse_lens({"ast": {"operand": "OR", "children": many}})


class TestBeacon:
    def test_ontology_and_alphanumeric_filters(self) -> None:
        body = {
            "meta": {"apiVersion": "v2.0"},
            "query": {
                "filters": [
                    {"id": "NCIT:C20197"},
                    {"id": "SNOMED:399068003", "includeDescendantTerms": False},
                    {"id": "RID10312", "scope": "individuals"},
                    {"id": "SNOMEDCT:41216001"},
                    {"id": "age_at_diagnosis", "operator": ">=", "value": "P50Y"},
                    {"id": "prostate.isup_grade", "operator": ">", "value": "2"},
                    {"id": "prostate.gleason_score", "operator": "!", "value": "3+3"},
                    {"id": "manufacturer", "operator": "=", "value": "%siem%"},
                    "series_label:T2W",
                ],
                "requestedGranularity": "boolean",
            },
        }
        query = parse_query(body)
        assert query.format is QueryFormat.BEACON and query.granularity is Granularity.BOOLEAN
        assert query.filters[0] == "NCIT:C20197" and query.filters[-1] == "series_label:T2W"
        assert query.tree.operand is Operand.AND
        assert list(query.tree.children) == [
            Criterion(Field.GENDER, Op.EQUALS, (8507,)),
            Criterion(Field.DIAGNOSIS, Op.EQUALS, (SNOMED_PROSTATE,)),
            Criterion(Field.MODALITY, Op.EQUALS, ("MR",)),
            Criterion(Field.BODY_PART, Op.EQUALS, ("PROSTATE",)),
            Criterion(Field.AGE_AT_DIAGNOSIS, Op.BETWEEN, (50, None)),
            Criterion(Field.VARIABLE, Op.GREATER_THAN, (2,), "prostate.isup_grade"),
            Criterion(Field.VARIABLE, Op.NOT_EQUALS, ("3+3",), "prostate.gleason_score"),
            Criterion(Field.MANUFACTURER, Op.CONTAINS, ("siem",)),
            Criterion(Field.SERIES_LABEL, Op.EQUALS, ("T2W",)),
        ]  # fmt: skip

    def test_no_filters_is_everyone_and_count_is_the_default(self) -> None:
        query = parse_beacon({"query": {}})
        assert query.tree == Operation(Operand.AND, ()) and query.granularity is Granularity.COUNT

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"query": {"filters": {}}}, "query.filters: expected a list"),
            (
                {"query": {"filters": [{"scope": "x"}]}},
                r"query.filters\[0\]: a filter is an object",
            ),
            (
                {"query": {"filters": [{"id": "colour", "operator": "=", "value": "red"}]}},
                "unknown key 'colour'",
            ),
            (
                {"query": {"filters": [{"id": "age", "operator": "~", "value": "5"}]}},
                "operator: use one of",
            ),
            ({"query": {"filters": [{"id": "age", "operator": ">"}]}}, 'needs a "value"'),
            ({"query": {"requestedGranularity": "record"}}, "record-level answers are never given"),
            ({"query": {"requestedGranularity": "lots"}}, "boolean, count or aggregated"),
            ({"query": []}, "expected"),
        ],
    )
    def test_errors(self, body: Any, message: str) -> None:
        with pytest.raises(InvalidQuery, match=message):
            parse_query(body)
