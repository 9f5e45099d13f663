"""OMOP persons shared by imaging and clinical data, and their observation periods."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, insert, select

from biobank.catalog import Catalog
from biobank.catalog.omop import (
    CONDITION_OCCURRENCE,
    IMAGE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION_PERIOD,
    PERSON,
    PROCEDURE_OCCURRENCE,
)
from biobank.catalog.omop_person import (
    PERIOD_TYPE_EHR,
    ensure_persons,
    refresh_observation_periods,
    set_demographics,
)

CRF = 32809


def _measure(person_id: int, day: dt.date) -> dict[str, object]:
    return {
        "person_id": person_id,
        "measurement_concept_id": 0,
        "measurement_date": day,
        "measurement_type_concept_id": CRF,
    }


class TestPersons:
    def test_one_person_per_pseudonym_whoever_comes_first(self, catalog: Catalog) -> None:
        with catalog._writing("test") as conn:
            first = ensure_persons(conn, ["PB", "PA", "PA"])
            again = ensure_persons(conn, ["PA", "PC"])
            rows = conn.execute(
                select(PERSON.c.person_source_value, PERSON.c.gender_concept_id)
            ).all()
        assert set(first) == {"PA", "PB"} and len(set(first.values())) == 2
        assert again["PA"] == first["PA"] and again["PC"] not in first.values()
        assert sorted(rows) == [("PA", 0), ("PB", 0), ("PC", 0)]

    def test_clinical_demographics_win_imaging_only_fills_unknowns(self, catalog: Catalog) -> None:
        with catalog._writing("test") as conn:
            person = ensure_persons(conn, ["PA"])["PA"]
            set_demographics(
                conn, person, {"gender_concept_id": 8507, "year_of_birth": 1950}, only_unknown=True
            )
            set_demographics(
                conn, person, {"gender_concept_id": 8532, "year_of_birth": 1960}, only_unknown=True
            )
            imaging = conn.execute(select(PERSON.c.gender_concept_id, PERSON.c.year_of_birth)).one()
            set_demographics(
                conn, person, {"gender_concept_id": 8532, "year_of_birth": 1951}, only_unknown=False
            )
            clinical = conn.execute(
                select(PERSON.c.gender_concept_id, PERSON.c.year_of_birth)
            ).one()
        assert tuple(imaging) == (8507, 1950)
        assert tuple(clinical) == (8532, 1951)


class TestObservationPeriods:
    def test_spans_every_dated_row_and_follows_changes(self, catalog: Catalog) -> None:
        with catalog._writing("test") as conn:
            ids = ensure_persons(conn, ["PA", "PB"])
            pa, pb = ids["PA"], ids["PB"]
            conn.execute(insert(MEASUREMENT), [_measure(pa, dt.date(2020, 1, 2))])
            conn.execute(
                insert(CONDITION_OCCURRENCE).values(
                    person_id=pa,
                    condition_concept_id=0,
                    condition_start_date=dt.date(2019, 5, 2),
                    condition_type_concept_id=CRF,
                )
            )
            procedure = conn.execute(
                insert(PROCEDURE_OCCURRENCE)
                .values(
                    person_id=pa,
                    procedure_concept_id=0,
                    procedure_date=dt.date(2021, 3, 4),
                    procedure_type_concept_id=32817,
                )
                .returning(PROCEDURE_OCCURRENCE.c.procedure_occurrence_id)
            ).scalar_one()
            conn.execute(
                insert(IMAGE_OCCURRENCE).values(
                    person_id=pa,
                    procedure_occurrence_id=procedure,
                    image_occurrence_date=dt.date(2022, 7, 8),
                    image_study_uid="1.2.3",
                    image_series_uid="1.2.3.4",
                    modality_concept_id=0,
                )
            )
            refresh_observation_periods(conn, [pa, pb])
            periods = conn.execute(
                select(
                    OBSERVATION_PERIOD.c.person_id,
                    OBSERVATION_PERIOD.c.observation_period_start_date,
                    OBSERVATION_PERIOD.c.observation_period_end_date,
                    OBSERVATION_PERIOD.c.period_type_concept_id,
                )
            ).all()
            assert [tuple(p) for p in periods] == [
                (pa, dt.date(2019, 5, 2), dt.date(2022, 7, 8), PERIOD_TYPE_EHR)
            ]  # PB has no dated row: no period

            conn.execute(delete(IMAGE_OCCURRENCE))
            conn.execute(delete(CONDITION_OCCURRENCE))
            refresh_observation_periods(conn, [pa])
            spans = conn.execute(
                select(
                    OBSERVATION_PERIOD.c.observation_period_start_date,
                    OBSERVATION_PERIOD.c.observation_period_end_date,
                )
            ).all()
        assert [tuple(s) for s in spans] == [(dt.date(2020, 1, 2), dt.date(2021, 3, 4))]
