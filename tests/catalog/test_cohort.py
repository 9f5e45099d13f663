"""The cohort compiler on SQLite and PostgreSQL, against counts computed in Python.

A small OMOP + catalogue fixture (60 persons, their diagnoses, clinical variables and
series) is built from Python records; every expected count is computed from those records
with plain Python predicates, independently of the compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from biobank.catalog import Catalog
from biobank.catalog.cohort import (
    ConceptRef,
    Criterion,
    Field,
    Op,
    Operand,
    Operation,
    Stratum,
    count_cohort,
)
from biobank.errors import InvalidQuery
from tests.catalog.conftest import BACKENDS, new_database_url
from tests.datasets.omop_fixture import PEOPLE, PROSTATE, Person, Series, age, load


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    tmp: Path = tmp_path_factory.mktemp("cohort")
    for url in new_database_url(request.param, tmp):
        with Catalog.open(url) as catalog:
            load(catalog, PEOPLE)
            yield catalog


# -- helpers: build trees and compute the expected counts in Python --------------------------

PersonTest = Callable[[Person], bool]
SeriesTest = Callable[[Person, Series], bool]


def c(field: Field, op: Op, *values: object, variable: str | None = None) -> Criterion:
    return Criterion(field, op, tuple(values), variable)


def lens(*groups: tuple[Criterion, ...]) -> Operation:
    """OR of one AND of ORs, as Lens sends."""
    return Operation(
        Operand.OR,
        (Operation(Operand.AND, tuple(Operation(Operand.OR, g) for g in groups)),),
    )


def expected(
    person_test: PersonTest, series_test: SeriesTest | None = None
) -> tuple[int, int, int]:
    persons = [p for p in PEOPLE if person_test(p)]
    series = [s for p in persons for s in p.series if series_test is None or series_test(p, s)]
    return len(persons), len({s.study for s in series}), len(series)


def got(catalog: Catalog, tree: Operation) -> tuple[int, int, int]:
    found = count_cohort(catalog, tree)
    return found.persons, found.studies, found.series


def t2_axial_mr(_p: Person, s: Series) -> bool:
    return s.label == "T2W" and s.orientation == "axial" and s.modality == "MR"


def diagnosed_between(p: Person, low: int, high: int, concept: int | None = None) -> bool:
    return any(
        low <= age(p.birth, when) <= high and (concept is None or cid == concept)
        for cid, _code, when in p.diagnoses
    )


class TestCohortCounts:
    def test_the_fixture_is_not_trivial(self) -> None:
        persons, studies, series = expected(lambda p: True)
        assert persons == 60 and studies > 30 and series > 60
        assert 5 < expected(lambda p: any(t2_axial_mr(p, s) for s in p.series))[0] < 40

    def test_everyone(self, loaded: Catalog) -> None:
        assert got(loaded, Operation(Operand.AND, ())) == expected(lambda p: True)

    def test_men_50_70_isup_3_with_a_t2w_axial_mr_series(self, loaded: Catalog) -> None:
        tree = lens(
            (c(Field.GENDER, Op.EQUALS, 8507),),
            (c(Field.AGE_AT_DIAGNOSIS, Op.BETWEEN, 50, 70),),
            (c(Field.VARIABLE, Op.GREATER_THAN, 2.5, variable="prostate.isup_grade"),),
            (c(Field.SERIES_LABEL, Op.EQUALS, "T2W"),),
            (c(Field.ORIENTATION, Op.EQUALS, "axial"),),
            (c(Field.MODALITY, Op.EQUALS, "MR"),),
        )

        def person(p: Person) -> bool:
            return (
                p.gender == 8507
                and diagnosed_between(p, 50, 70)
                and float(p.variables.get("prostate.isup_grade", 0)) > 2.5
                and any(t2_axial_mr(p, s) for s in p.series)
            )

        want = expected(person, t2_axial_mr)
        assert want[0] > 0
        assert got(loaded, tree) == want

    def test_series_criteria_hold_on_one_series(self, loaded: Catalog) -> None:
        # T2W and axial on one series, not a T2W sagittal plus a T1W axial.
        tree = lens(
            (c(Field.SERIES_LABEL, Op.EQUALS, "T2W"),), (c(Field.ORIENTATION, Op.EQUALS, "axial"),)
        )
        t2_axial = lambda p, s: s.label == "T2W" and s.orientation == "axial"  # noqa: E731
        same = expected(lambda p: any(t2_axial(p, s) for s in p.series), t2_axial)
        loose = expected(
            lambda p: (
                any(s.label == "T2W" for s in p.series)
                and any(s.orientation == "axial" for s in p.series)
            )
        )
        assert got(loaded, tree) == same
        assert same[0] < loose[0]  # the fixture tells the two apart

    def test_an_or_of_values_and_no_series_criteria_counts_every_series(
        self, loaded: Catalog
    ) -> None:
        tree = lens((c(Field.GENDER, Op.IN, 8532, 0),))
        assert got(loaded, tree) == expected(lambda p: p.gender in (8532, 0))

    def test_diagnosis_by_concept_code_source_and_id(self, loaded: Catalog) -> None:
        want = expected(lambda p: any(cid == PROSTATE for cid, _, _ in p.diagnoses))
        for ref in (
            ConceptRef(code="399068003", vocabulary_id="SNOMED"),
            ConceptRef(concept_id=PROSTATE),
            ConceptRef(code="C61"),
        ):
            assert got(loaded, lens((c(Field.DIAGNOSIS, Op.EQUALS, ref),))) == want
        unmapped = expected(lambda p: any(code == "X99" for _, code, _ in p.diagnoses))
        assert (
            got(loaded, lens((c(Field.DIAGNOSIS, Op.EQUALS, ConceptRef(code="X99")),))) == unmapped
        )

    def test_prostate_cancer_diagnosed_at_50_to_70_is_one_diagnosis(self, loaded: Catalog) -> None:
        tree = lens(
            (c(Field.DIAGNOSIS, Op.EQUALS, ConceptRef(concept_id=PROSTATE)),),
            (c(Field.AGE_AT_DIAGNOSIS, Op.BETWEEN, 50, 70),),
        )
        assert got(loaded, tree) == expected(lambda p: diagnosed_between(p, 50, 70, PROSTATE))

    def test_ages_are_whole_years_to_the_day(self, loaded: Catalog) -> None:
        for op, values, test in (
            (Op.LOWER_THAN, (60,), lambda a: a < 60),
            (Op.GREATER_THAN, (60,), lambda a: a > 60),
            (Op.EQUALS, (61,), lambda a: a == 61),
            (Op.BETWEEN, (55.5, None), lambda a: a >= 55.5),
        ):
            tree = lens((c(Field.AGE_AT_DIAGNOSIS, op, *values),))
            want = expected(
                lambda p, t=test: any(t(age(p.birth, when)) for _, _, when in p.diagnoses)
            )
            assert got(loaded, tree) == want, op

    def test_age_at_imaging_selects_series(self, loaded: Catalog) -> None:
        tree = lens((c(Field.AGE_AT_IMAGING, Op.BETWEEN, 60, 75),))
        in_range = lambda p, s: 60 <= age(p.birth, s.date) <= 75  # noqa: E731
        assert got(loaded, tree) == expected(
            lambda p: any(in_range(p, s) for s in p.series), in_range
        )

    def test_variables_numbers_codes_and_observations(self, loaded: Catalog) -> None:
        psa = lens((c(Field.VARIABLE, Op.BETWEEN, 4, 10, variable="prostate.psa"),))
        want = expected(lambda p: 4 <= float(p.variables.get("prostate.psa", -1)) <= 10)
        assert got(loaded, psa) == want
        stage = lens((c(Field.VARIABLE, Op.IN, "T2", "T3", variable="prostate.t_stage"),))
        assert got(loaded, stage) == expected(
            lambda p: p.variables.get("prostate.t_stage") in ("T2", "T3")
        )

    def test_a_variable_nobody_has_counts_nobody(self, loaded: Catalog) -> None:
        tree = lens((c(Field.VARIABLE, Op.GREATER_THAN, 0, variable="prostate.unknown"),))
        assert got(loaded, tree) == (0, 0, 0)
        either = Operation(Operand.OR, (tree, lens((c(Field.GENDER, Op.EQUALS, 8532),))))
        assert got(loaded, either) == expected(lambda p: p.gender == 8532)

    def test_not_equals_is_a_row_that_differs(self, loaded: Catalog) -> None:
        tree = lens((c(Field.MODALITY, Op.NOT_EQUALS, "CT"),))
        not_ct = lambda p, s: s.modality != "CT"  # noqa: E731
        assert got(loaded, tree) == expected(lambda p: any(not_ct(p, s) for s in p.series), not_ct)

    def test_manufacturer_matches_without_case_and_by_first_word(self, loaded: Catalog) -> None:
        philips = lambda p, s: s.manufacturer.startswith("Philips")  # noqa: E731
        want = expected(lambda p: any(philips(p, s) for s in p.series), philips)
        assert got(loaded, lens((c(Field.MANUFACTURER, Op.EQUALS, "philips"),))) == want
        assert got(loaded, lens((c(Field.MANUFACTURER, Op.CONTAINS, "MEDICAL SYS"),))) == expected(
            lambda p: any("medical sys" in s.manufacturer.lower() for s in p.series),
            lambda p, s: "medical sys" in s.manufacturer.lower(),
        )

    def test_an_or_across_entities(self, loaded: Catalog) -> None:
        tree = Operation(
            Operand.OR,
            (
                c(Field.GENDER, Op.EQUALS, 8532),
                Operation(Operand.AND, (c(Field.MODALITY, Op.EQUALS, "CT"),
                                        c(Field.CURATION_DECISION, Op.EQUALS, "approve"))),
            ),
        )  # fmt: skip
        ct_ok = lambda p, s: s.modality == "CT" and s.decision == "approve"  # noqa: E731
        want = expected(
            lambda p: p.gender == 8532 or any(ct_ok(p, s) for s in p.series),
            lambda p, s: p.gender == 8532 or ct_ok(p, s),
        )
        assert got(loaded, tree) == want

    def test_stratified_by_gender(self, loaded: Catalog) -> None:
        tree = lens((c(Field.MODALITY, Op.EQUALS, "MR"),))
        found = count_cohort(loaded, tree, [Stratum.GENDER])
        mr = lambda p, s: s.modality == "MR"  # noqa: E731
        assert (found.persons, found.studies, found.series) == expected(
            lambda p: any(mr(p, s) for s in p.series), mr
        )
        names = {8507: "male", 8532: "female", 0: "unknown"}
        by = {s.values["gender"]: (s.persons, s.studies, s.series) for s in found.strata}
        for gender, name in names.items():
            want = expected(
                lambda p, g=gender: p.gender == g and any(mr(p, s) for s in p.series), mr
            )
            assert by.get(name, (0, 0, 0)) == want

    def test_stratified_by_series_label_and_age_decade(self, loaded: Catalog) -> None:
        tree = Operation(Operand.AND, ())
        found = count_cohort(loaded, tree, [Stratum.SERIES_LABEL])
        by = {s.values["series_label"]: (s.persons, s.studies, s.series) for s in found.strata}
        for label in ("T2W", "T1W", "DWI"):
            has = lambda p, s, lab=label: s.label == lab  # noqa: E731
            assert by[label] == expected(lambda p, h=has: any(h(p, s) for s in p.series), has)
        assert by["unknown"][2] == sum(1 for p in PEOPLE for s in p.series if s.label is None)

        found = count_cohort(loaded, tree, [Stratum.AGE_DECADE])
        decades: dict[str, int] = {}
        for p in PEOPLE:
            first = min((when for _, _, when in p.diagnoses), default=None)
            key = (
                "unknown"
                if first is None
                else f"{age(p.birth, first) // 10 * 10}-{age(p.birth, first) // 10 * 10 + 9}"
            )
            decades[key] = decades.get(key, 0) + 1
        assert {s.values["age_decade"]: s.persons for s in found.strata} == decades

    def test_too_many_strata_are_refused(self, loaded: Catalog) -> None:
        with pytest.raises(InvalidQuery, match="at most 3"):
            count_cohort(loaded, Operation(Operand.AND, ()), list(Stratum)[:4])

    @pytest.mark.parametrize("stratum", [Stratum.GENDER, Stratum.MODALITY, Stratum.DIAGNOSIS])
    def test_an_or_with_series_criteria_stratified(self, loaded: Catalog, stratum: Stratum) -> None:
        # Women, or persons with an approved CT: persons without that series count too.
        tree = Operation(
            Operand.OR,
            (
                c(Field.GENDER, Op.EQUALS, 8532),
                Operation(Operand.AND, (c(Field.MODALITY, Op.EQUALS, "CT"),
                                        c(Field.CURATION_DECISION, Op.EQUALS, "approve"))),
            ),
        )  # fmt: skip
        ct_ok = lambda p, s: s.modality == "CT" and s.decision == "approve"  # noqa: E731
        chosen = [p for p in PEOPLE if p.gender == 8532 or any(ct_ok(p, s) for s in p.series)]
        rows = [(p, s) for p in chosen for s in p.series if p.gender == 8532 or ct_ok(p, s)]
        found = count_cohort(loaded, tree, [stratum])
        assert (found.persons, found.series) == (len(chosen), len(rows))
        by = {s.values[stratum.value]: (s.persons, s.series) for s in found.strata}
        names = {8507: "male", 8532: "female", 0: "unknown"}
        if stratum is Stratum.GENDER:
            want = {
                names[g]: (
                    sum(1 for p in chosen if p.gender == g),
                    sum(1 for p, _ in rows if p.gender == g),
                )
                for g in {p.gender for p in chosen}
            }
        elif stratum is Stratum.MODALITY:
            want = {
                m: (len({p.person_id for p, s in rows if s.modality == m}),
                    sum(1 for _, s in rows if s.modality == m))
                for m in {s.modality for _, s in rows}
            }  # fmt: skip
        else:
            concept_names = {
                PROSTATE: "Malignant tumor of prostate",
                4112853: "Malignant tumor of breast",
            }
            want = {}
            for p in chosen:
                labels = {concept_names.get(cid, code) for cid, code, _ in p.diagnoses} or {
                    "unknown"
                }
                for label in labels:
                    persons, series = want.get(label, (0, 0))
                    want[label] = (persons + 1, series + sum(1 for q, _ in rows if q is p))
        assert by == want

    def test_an_and_with_an_or_across_entities(self, loaded: Catalog) -> None:
        # Men or unknown, with a CT series or a prostate cancer: some have no series at all.
        tree = Operation(
            Operand.AND,
            (
                c(Field.GENDER, Op.IN, 8507, 0),
                Operation(Operand.OR, (c(Field.MODALITY, Op.EQUALS, "CT"),
                                       c(Field.DIAGNOSIS, Op.EQUALS, ConceptRef(code="C61")))),
            ),
        )  # fmt: skip
        c61 = lambda p: any(code == "C61" for _, code, _ in p.diagnoses)  # noqa: E731
        ct = lambda p: any(s.modality == "CT" for s in p.series)  # noqa: E731
        want = expected(
            lambda p: p.gender in (8507, 0) and (c61(p) or ct(p)),
            lambda p, s: c61(p) or s.modality == "CT",
        )
        assert any(p.gender in (8507, 0) and c61(p) and not p.series for p in PEOPLE)
        assert got(loaded, tree) == want
