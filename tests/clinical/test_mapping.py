"""Mapping validated clinical records to OMOP CDM rows (forms built in Python here)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from biobank.catalog.concepts import ConceptSeed
from biobank.clinical import builtin_form, builtin_form_names
from biobank.clinical.mapping import SOURCE_VALUE_LENGTH, map_record
from biobank.clinical.models import (
    Code,
    Form,
    OmopRef,
    OmopRows,
    OmopTable,
    OmopTarget,
    Value,
    Variable,
    VariableType,
)
from biobank.errors import InvalidClinicalRecord

T = OmopTable
V = VariableType
CRF = 32809
PSEUDONYM = "PSN-4F2A9C"
LONG_CODE = "intraductal_carcinoma_with_a_very_long_local_code_name_exceeding_fifty"


def _var(name: str, kind: VariableType, omop: OmopTarget | None = None, **kw: Any) -> Variable:
    return Variable(name=name, type=kind, omop=omop, **kw)


PROSTATE = Form(
    name="prostate",
    version=1,
    title="Prostate cancer",
    description="test form",
    date="diagnosis_date",
    variables=(
        _var(
            "sex",
            V.CODE,
            OmopTarget(T.PERSON, column="gender_concept_id"),
            codes=(Code("M", concept="Gender:M"), Code("F", concept="Gender:F")),
        ),
        _var("birth_date", V.DATE, OmopTarget(T.PERSON, column="year_of_birth")),
        _var("diagnosis_date", V.DATE),
        _var(
            "histology",
            V.CODE,
            OmopTarget(T.CONDITION_OCCURRENCE, concept="SNOMED:399068003", date="diagnosis_date"),
            codes=(
                Code("acinar_adenocarcinoma", concept="SNOMED:399490008"),
                Code("other"),
                Code(LONG_CODE),
            ),
        ),
        _var(
            "psa",
            V.NUMBER,
            OmopTarget(T.MEASUREMENT, concept="LOINC:2857-1", unit="UCUM:ng/mL", date="psa_date"),
            unit="ng/mL",
        ),
        _var("psa_date", V.DATE),
        _var(
            "isup_grade",
            V.CODE,
            OmopTarget(T.MEASUREMENT, concept="LOINC:94734-1", event="histology"),
            codes=tuple(
                Code(str(i), concept=f"SNOMED:{c}")
                for i, c in enumerate(
                    ("860742008", "860743003", "860744009", "860745005", "860746006"), 1
                )
            ),
        ),
        _var(
            "gleason_score",
            V.INTEGER,
            OmopTarget(T.MEASUREMENT, concept="LOINC:35266-6", event="histology"),
        ),
        _var(
            "ct",
            V.CODE,
            OmopTarget(T.MEASUREMENT, event="histology"),
            codes=(Code("T2c"), Code("T3a")),
        ),
        _var("biopsy_date", V.DATE),
        _var("biopsy", V.BOOLEAN, OmopTarget(T.SPECIMEN, date="biopsy_date")),
        _var(
            "treatment_type",
            V.CODE,
            OmopTarget(T.PROCEDURE_OCCURRENCE, date="treatment_start_date"),
            codes=(
                Code("radical_prostatectomy", concept="SNOMED:26294005"),
                Code("radiotherapy", concept="SNOMED:33195004"),
            ),
        ),
        _var("treatment_start_date", V.DATE),
        _var("adt", V.BOOLEAN, OmopTarget(T.DRUG_EXPOSURE, date="treatment_start_date")),
        _var("comment", V.STRING, OmopTarget(T.OBSERVATION)),
        _var("family_history", V.BOOLEAN, OmopTarget(T.OBSERVATION)),
        _var("notes", V.STRING),
    ),
)

FOLLOW_UP = Form(
    name="prostate_followup",
    version=1,
    title="Follow-up",
    description="test form",
    date="followup_date",
    variables=(
        _var("followup_date", V.DATE),
        _var(
            "disease_status",
            V.CODE,
            OmopTarget(T.EPISODE, concept="SNOMED:399068003"),
            codes=(
                Code("recurrence", concept="Episode:Disease Recurrence"),
                Code("progression", concept="Episode:Disease Progression"),
                Code("stable"),
            ),
        ),
        _var("death_date", V.DATE, OmopTarget(T.DEATH, column="death_date")),
        _var(
            "cause_of_death",
            V.CODE,
            OmopTarget(T.DEATH, column="cause_concept_id"),
            codes=(Code("prostate_cancer", concept="SNOMED:399068003"), Code("other")),
        ),
        _var(
            "psa",
            V.NUMBER,
            OmopTarget(T.MEASUREMENT, concept="LOINC:2857-1", unit="UCUM:ng/mL"),
            unit="ng/mL",
        ),
    ),
)

RECORD: dict[str, Value] = {
    "patient_pseudonym": PSEUDONYM,
    "sex": "M",
    "birth_date": dt.date(1951, 3, 14),
    "diagnosis_date": dt.date(2021, 5, 3),
    "histology": "acinar_adenocarcinoma",
    "psa": 7.2,
    "psa_date": dt.date(2021, 4, 20),
    "isup_grade": "3",
    "gleason_score": 7,
    "ct": "T2c",
    "biopsy_date": dt.date(2021, 4, 28),
    "biopsy": True,
    "treatment_type": "radical_prostatectomy",
    "treatment_start_date": dt.date(2021, 7, 1),
    "adt": True,
    "comment": "well tolerated",
    "family_history": False,
    "notes": "not mapped",
}


@pytest.fixture(scope="module")
def seed() -> ConceptSeed:
    return ConceptSeed.builtin()


def _map(form: Form, values: dict[str, Value], seed: ConceptSeed) -> OmopRows:
    return map_record(form, values, seed=seed, site="site-a")


def _one(rows: OmopRows, table: OmopTable, **match: Any) -> dict[str, Any]:
    found = [r for r in rows.rows.get(table, []) if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (table, match, rows.rows.get(table))
    return found[0]


class TestRealisticRecord:
    @pytest.fixture
    def rows(self, seed: ConceptSeed) -> OmopRows:
        return _map(PROSTATE, RECORD, seed)

    def test_person_partial_row(self, rows: OmopRows) -> None:
        assert rows.rows[T.PERSON] == [
            {
                "person_source_value": PSEUDONYM,
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "gender_concept_id": 8507,
                "gender_source_value": "M",
                "year_of_birth": 1951,
                "month_of_birth": 3,
                "day_of_birth": 14,
                "birth_datetime": dt.datetime(1951, 3, 14),
            }
        ]

    def test_diagnosis_is_a_condition_with_the_code_concept(self, rows: OmopRows) -> None:
        condition = _one(rows, T.CONDITION_OCCURRENCE)
        assert condition == {
            "_name": "histology",
            "condition_concept_id": 4161028,  # Adenocarcinoma of prostate (the code's concept)
            "condition_start_date": dt.date(2021, 5, 3),
            "condition_type_concept_id": CRF,
            "condition_source_value": "acinar_adenocarcinoma",
            "condition_source_concept_id": 0,
        }

    def test_diagnosis_opens_a_disease_first_occurrence_episode(self, rows: OmopRows) -> None:
        episode = _one(rows, T.EPISODE, episode_concept_id=32528)
        assert episode["episode_object_concept_id"] == 4161028
        assert episode["episode_start_date"] == dt.date(2021, 5, 3)
        assert episode["episode_type_concept_id"] == CRF
        assert episode["episode_source_value"] == "prostate.histology"
        link = _one(rows, T.EPISODE_EVENT, event_id=OmopRef("histology"))
        assert link == {
            "episode_id": OmopRef(episode["_name"]),
            "event_id": OmopRef("histology"),
            "episode_event_field_concept_id": 1147127,
        }

    def test_psa_is_a_numeric_measurement_with_unit(self, rows: OmopRows) -> None:
        psa = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.psa")
        assert psa == {
            "measurement_concept_id": 3013603,
            "measurement_date": dt.date(2021, 4, 20),
            "measurement_type_concept_id": CRF,
            "measurement_source_value": "prostate.psa",
            "measurement_source_concept_id": 0,
            "value_source_value": "7.2",
            "value_as_number": 7.2,
            "operator_concept_id": 4172703,
            "unit_concept_id": 8842,
            "unit_source_value": "ng/mL",
            "_name": "psa",
        }

    def test_grade_points_at_the_diagnosis(self, rows: OmopRows) -> None:
        isup = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.isup_grade")
        assert isup["measurement_concept_id"] == 36660206
        assert isup["value_as_concept_id"] == 3655246  # Gleason grade group 3
        assert isup["value_source_value"] == "3"
        assert isup["measurement_event_id"] == OmopRef("histology")
        assert isup["meas_event_field_concept_id"] == 1147127
        assert isup["measurement_date"] == dt.date(2021, 5, 3)  # the form's date

    def test_unknown_concepts_are_zero_and_the_source_is_kept(self, rows: OmopRows) -> None:
        gleason = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.gleason_score")
        assert gleason["measurement_concept_id"] == 0  # LOINC 35266-6 is not in the seed
        assert gleason["value_as_number"] == 7.0
        assert gleason["value_source_value"] == "7"
        assert gleason["measurement_event_id"] == OmopRef("histology")
        stage = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.ct")
        assert stage["measurement_concept_id"] == 0
        assert stage["value_as_concept_id"] == 0
        assert stage["value_source_value"] == "T2c"

    def test_surgery_procedure_and_biopsy_specimen(self, rows: OmopRows) -> None:
        surgery = _one(rows, T.PROCEDURE_OCCURRENCE)
        assert surgery["procedure_concept_id"] == 4096783
        assert surgery["procedure_date"] == dt.date(2021, 7, 1)
        assert surgery["procedure_source_value"] == "radical_prostatectomy"
        specimen = _one(rows, T.SPECIMEN)
        assert specimen["specimen_date"] == dt.date(2021, 4, 28)
        assert specimen["specimen_type_concept_id"] == CRF
        assert specimen["specimen_source_value"] == "prostate.biopsy"

    def test_drug_opens_a_treatment_regimen_episode(self, rows: OmopRows) -> None:
        drug = _one(rows, T.DRUG_EXPOSURE)
        assert drug["drug_concept_id"] == 0
        assert drug["drug_exposure_start_date"] == drug["drug_exposure_end_date"]
        assert drug["drug_source_value"] == "prostate.adt"
        regimen = _one(rows, T.EPISODE, episode_concept_id=32531)
        link = _one(rows, T.EPISODE_EVENT, episode_id=OmopRef(regimen["_name"]))
        assert link["event_id"] == OmopRef("adt")
        assert link["episode_event_field_concept_id"] == 1147094
        # the record has a biopsy specimen, so its procedure is not taken for a treatment
        assert len(rows.rows[T.EPISODE]) == 2

    def test_observations(self, rows: OmopRows) -> None:
        comment = _one(rows, T.OBSERVATION, observation_source_value="prostate.comment")
        assert comment["value_as_string"] == "well tolerated"
        assert comment["observation_concept_id"] == 0
        assert "operator_concept_id" not in comment
        history = _one(rows, T.OBSERVATION, observation_source_value="prostate.family_history")
        assert history["value_as_number"] == 0.0
        assert history["value_source_value"] == "false"

    def test_variables_without_omop_and_refs_are_consistent(self, rows: OmopRows) -> None:
        names = {r["_name"] for table in rows.rows.values() for r in table if "_name" in r}
        refs = {
            v.name
            for table in rows.rows.values()
            for r in table
            for v in r.values()
            if isinstance(v, OmopRef)
        }
        assert refs <= names  # every reference resolves inside the record
        assert "not mapped" not in repr(rows.rows)
        assert T.OBSERVATION_PERIOD not in rows.rows


class TestEdgeCases:
    def test_procedure_without_specimen_is_a_treatment(self, seed: ConceptSeed) -> None:
        values = {**RECORD, "biopsy": None, "adt": False, "treatment_type": "radiotherapy"}
        rows = _map(PROSTATE, values, seed)
        radiotherapy = _one(rows, T.PROCEDURE_OCCURRENCE)
        assert radiotherapy["procedure_concept_id"] == 0  # SNOMED 33195004 not verified
        assert radiotherapy["procedure_source_value"] == "radiotherapy"
        regimen = _one(rows, T.EPISODE, episode_concept_id=32531)
        link = _one(rows, T.EPISODE_EVENT, episode_id=OmopRef(regimen["_name"]))
        assert link["episode_event_field_concept_id"] == 1147082
        assert T.DRUG_EXPOSURE not in rows.rows  # "no" ADT is no drug exposure
        assert T.SPECIMEN not in rows.rows

    def test_code_without_concept_falls_back_to_the_target(self, seed: ConceptSeed) -> None:
        rows = _map(PROSTATE, {**RECORD, "histology": "other"}, seed)
        condition = _one(rows, T.CONDITION_OCCURRENCE)
        assert condition["condition_concept_id"] == 4163261  # the target: SNOMED 399068003
        assert condition["condition_source_value"] == "other"

    def test_long_source_values_are_truncated(self, seed: ConceptSeed) -> None:
        rows = _map(PROSTATE, {**RECORD, "histology": LONG_CODE}, seed)
        condition = _one(rows, T.CONDITION_OCCURRENCE)
        assert len(LONG_CODE) > SOURCE_VALUE_LENGTH
        assert condition["condition_source_value"] == LONG_CODE[:SOURCE_VALUE_LENGTH]

    def test_absent_event_leaves_no_dangling_link(self, seed: ConceptSeed) -> None:
        rows = _map(PROSTATE, {**RECORD, "histology": None}, seed)
        assert T.CONDITION_OCCURRENCE not in rows.rows
        isup = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.isup_grade")
        assert "measurement_event_id" not in isup
        assert "meas_event_field_concept_id" not in isup

    def test_an_empty_own_date_falls_back_to_the_record_date(self, seed: ConceptSeed) -> None:
        rows = _map(PROSTATE, {**RECORD, "psa_date": None}, seed)
        psa = _one(rows, T.MEASUREMENT, measurement_source_value="prostate.psa")
        assert psa["measurement_date"] == RECORD["diagnosis_date"]

    def test_event_without_date_is_skipped_and_logged_without_values(
        self, seed: ConceptSeed, caplog: pytest.LogCaptureFixture
    ) -> None:
        values = {**RECORD, "psa_date": None, "diagnosis_date": None, "psa": 123.456}
        with caplog.at_level(logging.WARNING, logger="biobank.clinical.mapping"):
            rows = _map(PROSTATE, values, seed)
        sources = {r["measurement_source_value"] for r in rows.rows.get(T.MEASUREMENT, [])}
        assert "prostate.psa" not in sources
        assert "prostate.psa has no date" in caplog.text
        assert "123.456" not in caplog.text
        assert PSEUDONYM not in caplog.text

    def test_record_without_pseudonym_is_refused(self, seed: ConceptSeed) -> None:
        values = {k: v for k, v in RECORD.items() if k != "patient_pseudonym"}
        with pytest.raises(InvalidClinicalRecord, match="without a patient_pseudonym") as info:
            _map(PROSTATE, values, seed)
        assert "1951" not in str(info.value)


class TestFollowUp:
    def _values(self, **extra: Value) -> dict[str, Value]:
        return {"patient_pseudonym": PSEUDONYM, "followup_date": dt.date(2023, 2, 1), **extra}

    def test_recurrence_is_an_episode(self, seed: ConceptSeed) -> None:
        rows = _map(FOLLOW_UP, self._values(disease_status="recurrence"), seed)
        episode = _one(rows, T.EPISODE)
        assert episode["episode_concept_id"] == 32529
        assert episode["episode_object_concept_id"] == 4163261
        assert episode["episode_start_date"] == dt.date(2023, 2, 1)
        assert episode["episode_source_value"] == "prostate_followup.disease_status"

    def test_unverified_episode_concept_is_zero(self, seed: ConceptSeed) -> None:
        rows = _map(FOLLOW_UP, self._values(disease_status="progression"), seed)
        assert _one(rows, T.EPISODE)["episode_concept_id"] == 0

    def test_stable_disease_is_no_episode(self, seed: ConceptSeed) -> None:
        rows = _map(FOLLOW_UP, self._values(disease_status="stable"), seed)
        assert T.EPISODE not in rows.rows

    def test_death(self, seed: ConceptSeed) -> None:
        values = self._values(death_date=dt.date(2023, 1, 20), cause_of_death="prostate_cancer")
        death = _one(_map(FOLLOW_UP, values, seed), T.DEATH)
        assert death == {
            "death_date": dt.date(2023, 1, 20),
            "cause_concept_id": 4163261,
            "cause_source_value": "prostate_cancer",
            "death_type_concept_id": CRF,
        }

    def test_cause_without_date_is_no_death_row(self, seed: ConceptSeed) -> None:
        rows = _map(FOLLOW_UP, self._values(cause_of_death="other"), seed)
        assert T.DEATH not in rows.rows

    def test_measurement_takes_the_form_date(self, seed: ConceptSeed) -> None:
        rows = _map(FOLLOW_UP, self._values(psa=0.04), seed)
        psa = _one(rows, T.MEASUREMENT)
        assert psa["measurement_date"] == dt.date(2023, 2, 1)
        assert "measurement_event_id" not in psa


UNMAPPED_FORM_KEYS = {
    "LOINC:16112-5",  # oestrogen receptor
    "LOINC:16113-3",  # progesterone receptor
    "LOINC:48676-1",  # HER2
    "LOINC:2039-6",  # CEA
    "LOINC:35266-6",  # Gleason score
    "LOINC:44641-9",  # Gleason primary pattern
    "LOINC:44642-7",  # Gleason secondary pattern
    "SNOMED:33195004",  # external beam radiotherapy
    "SNOMED:424313000",  # active surveillance
    "SNOMED:363351006",  # malignant tumour of rectum
    "SNOMED:438949009",  # alive
    "SNOMED:419099009",  # dead
    "UCUM:mo",  # month
}
"""Codes the built-in forms use without a verified OMOP concept (they map to concept 0)."""


class TestBuiltinForms:
    def test_every_concept_key_of_every_builtin_form_is_seeded_or_declared_unmapped(
        self, seed: ConceptSeed
    ) -> None:
        # The forms name standard codes (LOINC, SNOMED, UCUM) even where no OMOP concept_id
        # could be verified here: those map to concept 0 with the code kept as the source
        # value (omop_concepts.SOURCES.md, "Left out"). A key that is neither seeded nor in
        # this reviewed list is a typo or a new code to verify.
        used: dict[str, list[str]] = {}
        for name in builtin_form_names():
            form = builtin_form(name)
            for variable in form.variables:
                keys = [code.concept for code in variable.codes if code.concept]
                if variable.omop is not None:
                    keys += [k for k in (variable.omop.concept, variable.omop.unit) if k]
                for key in keys:
                    used.setdefault(key, []).append(f"{name}.{variable.name}")
        unknown = set(seed.unknown_keys(used))
        assert unknown == UNMAPPED_FORM_KEYS, {key: used.get(key) for key in unknown}
        assert all(seed.concept_id(key) == 0 for key in UNMAPPED_FORM_KEYS)

    @pytest.mark.parametrize("name", ["prostate", "prostate_followup", "breast", "colorectal"])
    def test_builtin_form_maps_a_full_record(self, seed: ConceptSeed, name: str) -> None:
        form = builtin_form(name)
        values: dict[str, Value] = {"patient_pseudonym": PSEUDONYM}
        for variable in form.variables:
            values[variable.name] = _sample(variable)
        rows = _map(form, values, seed)
        assert rows.rows[T.PERSON][0]["person_source_value"] == PSEUDONYM
        dates = {
            T.CONDITION_OCCURRENCE: "condition_start_date",
            T.MEASUREMENT: "measurement_date",
            T.OBSERVATION: "observation_date",
            T.PROCEDURE_OCCURRENCE: "procedure_date",
            T.DRUG_EXPOSURE: "drug_exposure_start_date",
            T.SPECIMEN: "specimen_date",
            T.EPISODE: "episode_start_date",
        }
        mapped = sum(len(rows.rows.get(table, [])) for table in dates)
        assert mapped >= 3
        for table, column in dates.items():
            for row in rows.rows.get(table, []):
                assert isinstance(row[column], dt.date), (table, row)
                type_column = next(c for c in row if c.endswith("_type_concept_id"))
                assert row[type_column] == CRF
                for key, value in row.items():
                    if key.endswith("_source_value"):
                        assert len(value) <= SOURCE_VALUE_LENGTH


def _sample(variable: Variable) -> Value:
    if variable.type is V.CODE:
        return variable.codes[0].value
    if variable.type is V.DATE:
        return dt.date(2021, 6, 1)
    if variable.type is V.BOOLEAN:
        return True
    if variable.type is V.INTEGER:
        return int(variable.minimum) if variable.minimum is not None else 1
    if variable.type is V.NUMBER:
        return float(variable.minimum) if variable.minimum is not None else 1.5
    return "text"


class TestAbsentCodes:
    """A code that says the event did not happen writes no event row."""

    @pytest.mark.parametrize(
        ("form", "variable", "done", "value"),
        [
            ("breast", "surgery", "mastectomy", "none"),
            ("prostate", "treatment_type", "radical_prostatectomy", "none"),
        ],
    )
    def test_no_event_row_for_an_absent_code(
        self, seed: ConceptSeed, form: str, variable: str, done: str, value: str
    ) -> None:
        definition = builtin_form(form)
        values: dict[str, Value] = {"patient_pseudonym": PSEUDONYM}
        for each in definition.variables:
            values[each.name] = _sample(each)
        values[variable] = done
        present = _map(definition, values, seed)
        sources = [
            row["procedure_source_value"] for row in present.rows.get(T.PROCEDURE_OCCURRENCE, [])
        ]
        assert any(source != "none" for source in sources)  # a real procedure maps
        values[variable] = value
        absent = _map(definition, values, seed)
        assert "none" not in [
            row["procedure_source_value"] for row in absent.rows.get(T.PROCEDURE_OCCURRENCE, [])
        ]
        assert len(absent.rows.get(T.PROCEDURE_OCCURRENCE, [])) == len(sources) - 1
