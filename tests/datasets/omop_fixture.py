"""A small synthetic OMOP + catalogue cohort, as Python records and loaded into a catalogue.

60 persons with diagnoses, clinical variables (measurements and an observation) and imaging
series (catalogue ``patient``/``study``/``series``/``series_curation`` + MI-CDM
``image_occurrence``). Tests compute expected cohort counts from :data:`PEOPLE` with plain
Python and compare them with the compiler's.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from sqlalchemy import insert, select

from biobank.catalog import Catalog, cohort_series
from biobank.catalog.omop import (
    CONCEPT,
    CONDITION_OCCURRENCE,
    IMAGE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    PERSON,
)
from biobank.catalog.schema import PATIENT, SERIES, SERIES_CURATION, STUDY

PROSTATE = 4163261  # OMOP concept id used for prostate cancer in this fixture
BREAST = 4112853
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Series:
    uid: str
    study: str
    date: dt.date
    modality: str
    body_part: str
    manufacturer: str
    label: str | None
    orientation: str | None
    decision: str


@dataclass
class Person:
    person_id: int
    gender: int
    birth: dt.date
    diagnoses: list[tuple[int, str, dt.date]] = field(default_factory=list)
    variables: dict[str, float | str] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)


def age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def build_people() -> list[Person]:
    rng = random.Random(5)
    people = []
    for pid in range(1, 61):
        birth = dt.date(rng.randint(1935, 1985), rng.randint(1, 12), rng.randint(1, 28))
        person = Person(pid, rng.choice([8507, 8507, 8532, 0]), birth)
        if rng.random() < 0.8:
            concept, code = rng.choice([(PROSTATE, "C61"), (BREAST, "C50.9"), (0, "X99")])
            diagnosed = birth + dt.timedelta(days=rng.randint(40 * 365, 80 * 365))
            person.diagnoses.append((concept, code, diagnosed))
        if rng.random() < 0.7:
            person.variables["prostate.isup_grade"] = rng.randint(1, 5)
            person.variables["prostate.psa"] = round(rng.uniform(0.5, 40), 1)
        if rng.random() < 0.5:
            person.variables["prostate.t_stage"] = rng.choice(["T1", "T2", "T3"])
        for study in range(rng.randint(0, 3)):
            study_uid = f"1.2.3.{pid}.{study}"
            when = birth + dt.timedelta(days=rng.randint(40 * 365, 85 * 365))
            modality = rng.choice(["MR", "MR", "CT"])
            for n in range(rng.randint(1, 4)):
                person.series.append(
                    Series(
                        f"{study_uid}.{n}",
                        study_uid,
                        when,
                        modality,
                        rng.choice(["PROSTATE", "PELVIS", "BREAST"]),
                        rng.choice(["SIEMENS", "Philips Medical Systems", "GE MEDICAL SYSTEMS"]),
                        rng.choice(["T2W", "T1W", "DWI", None]) if modality == "MR" else None,
                        rng.choice(["axial", "sagittal", None]),
                        rng.choice(["approve", "pending", "exclude"]),
                    )
                )
        people.append(person)
    return people


PEOPLE = build_people()


def load(catalog: Catalog, people: list[Person]) -> None:
    with catalog._writing("loading the fixture") as conn:
        seeded = set(conn.execute(select(CONCEPT.c.concept_id)).scalars())
        rows = [
            {
                "concept_id": concept_id,
                "concept_name": name,
                "domain_id": "Condition",
                "vocabulary_id": "SNOMED",
                "concept_class_id": "Clinical Finding",
                "standard_concept": "S",
                "concept_code": code,
                "valid_start_date": dt.date(1970, 1, 1),
                "valid_end_date": dt.date(2099, 12, 31),
            }
            for concept_id, name, code in (
                (PROSTATE, "Malignant tumor of prostate", "399068003"),
                (BREAST, "Malignant tumor of breast", "254837009"),
            )
            if concept_id not in seeded  # the concept seed has them (same name, code)
        ]
        if rows:
            conn.execute(insert(CONCEPT), rows)
        for p in people:
            conn.execute(
                insert(PERSON).values(
                    person_id=p.person_id,
                    gender_concept_id=p.gender,
                    year_of_birth=p.birth.year,
                    month_of_birth=p.birth.month,
                    day_of_birth=p.birth.day,
                    race_concept_id=0,
                    ethnicity_concept_id=0,
                    person_source_value=f"PSN-{p.person_id}",
                )
            )
            patient_id = conn.execute(
                insert(PATIENT)
                .values(patient_pseudonym=f"PSN-{p.person_id}", created_at=NOW)
                .returning(PATIENT.c.id)
            ).scalar_one()
            for concept, code, when in p.diagnoses:
                conn.execute(
                    insert(CONDITION_OCCURRENCE).values(
                        person_id=p.person_id,
                        condition_concept_id=concept,
                        condition_start_date=when,
                        condition_type_concept_id=32809,
                        condition_source_value=code,
                    )
                )
            for name, value in p.variables.items():
                table, prefix = (
                    (MEASUREMENT, "measurement") if name != "prostate.t_stage" else
                    (OBSERVATION, "observation")
                )  # fmt: skip
                number = value if isinstance(value, int | float) else None
                conn.execute(
                    insert(table).values(
                        person_id=p.person_id,
                        **{
                            f"{prefix}_concept_id": 0,
                            f"{prefix}_date": dt.date(2020, 1, 1),
                            f"{prefix}_type_concept_id": 32809,
                            f"{prefix}_source_value": name,
                        },
                        value_as_number=number,
                        value_source_value=None if number is not None else value,
                    )
                )
            studies: dict[str, int] = {}
            for n, s in enumerate(p.series):
                if s.study not in studies:
                    studies[s.study] = conn.execute(
                        insert(STUDY)
                        .values(
                            study_instance_uid=s.study,
                            patient_id=patient_id,
                            study_date=s.date,
                            modalities_in_study=s.modality,
                            number_of_series=sum(1 for x in p.series if x.study == s.study),
                            created_at=NOW,
                            updated_at=NOW,
                        )
                        .returning(STUDY.c.id)
                    ).scalar_one()
                series_id = conn.execute(
                    insert(SERIES)
                    .values(
                        series_instance_uid=s.uid,
                        study_id=studies[s.study],
                        modality=s.modality,
                        body_part_examined=s.body_part,
                        series_date=s.date if n % 3 else None,  # else the study date
                        manufacturer=s.manufacturer,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                    .returning(SERIES.c.id)
                ).scalar_one()
                conn.execute(
                    insert(SERIES_CURATION).values(
                        series_id=series_id,
                        label=s.label,
                        orientation=s.orientation,
                        decision=s.decision,
                        decision_source="rules",
                        decision_reasons="[]",
                        decided_at=NOW,
                    )
                )
                conn.execute(
                    insert(IMAGE_OCCURRENCE).values(
                        person_id=p.person_id,
                        procedure_occurrence_id=1,
                        image_occurrence_date=s.date,
                        image_study_uid=s.study,
                        image_series_uid=s.uid,
                        modality_concept_id=0,
                    )
                )
        # A bulk load bypasses the write paths that keep cohort_series: rebuild it.
        cohort_series.rebuild(conn)
