"""OMOP persons: one per patient pseudonym, shared by imaging and clinical data.

A person is created by whichever arrives first — a clinical record or a series — and found
again by its pseudonym (``person.person_source_value``, unique). Demographics have an owner:
the clinical form sets sex and birth (it is the curated source); imaging fills them only
while they are unknown (``gender_concept_id`` 0, ``year_of_birth`` 0).

``year_of_birth`` is NOT NULL in OMOP. A person known only from images without a birth date
or age gets 0 ("unknown"): THEMIS would drop such a person, but their images must stay
searchable, so we keep them and age criteria simply never match them.

``observation_period`` is derived, one row per person, spanning every dated row of the
person (clinical events and images); :func:`refresh_observation_periods` recomputes it after
a write. Its type is 32817 ("EHR").
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Date, delete, func, insert, select, union_all, update

from biobank.catalog import cohort_series
from biobank.catalog.omop import (
    CONDITION_OCCURRENCE,
    DEATH,
    DRUG_EXPOSURE,
    EPISODE,
    IMAGE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    OBSERVATION_PERIOD,
    PERSON,
    PROCEDURE_OCCURRENCE,
    SPECIMEN,
    VISIT_OCCURRENCE,
)

UNKNOWN = 0
"""Concept 0 ("No matching concept"), and the year of birth of a person of unknown age."""
PERIOD_TYPE_EHR = 32817
_BIRTH = frozenset({"year_of_birth", "month_of_birth", "day_of_birth"})
"""Person columns that ``cohort_series`` derives ages from."""


def ensure_persons(conn: Connection, pseudonyms: Iterable[str]) -> dict[str, int]:
    """Return ``person_id`` for each pseudonym, creating the persons not yet known.

    New persons have unknown sex, race and ethnicity (concept 0) and year of birth 0.
    Call inside a write transaction.
    """
    wanted = sorted(set(pseudonyms))
    found = _person_ids(conn, wanted)
    missing = [pseudonym for pseudonym in wanted if pseudonym not in found]
    if missing:
        conn.execute(
            insert(PERSON),
            [
                {
                    "gender_concept_id": UNKNOWN,
                    "year_of_birth": UNKNOWN,
                    "race_concept_id": UNKNOWN,
                    "ethnicity_concept_id": UNKNOWN,
                    "person_source_value": pseudonym,
                }
                for pseudonym in missing
            ],
        )
        found.update(_person_ids(conn, missing))
        # cohort_series: series catalogued before their person existed get their rows.
        cohort_series.refresh_persons(conn, (found[pseudonym] for pseudonym in missing))
    return found


def _person_ids(conn: Connection, pseudonyms: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(pseudonyms), 500):
        chunk = pseudonyms[start : start + 500]
        rows = conn.execute(
            select(PERSON.c.person_source_value, PERSON.c.person_id).where(
                PERSON.c.person_source_value.in_(chunk)
            )
        )
        found.update({str(source): int(person_id) for source, person_id in rows})
    return found


def set_demographics(
    conn: Connection,
    person_id: int,
    values: dict[str, object],
    *,
    only_unknown: bool,
) -> None:
    """Write person columns (``gender_concept_id``, ``year_of_birth``, ...).

    ``only_unknown`` (imaging) leaves a known sex or year of birth alone; the clinical form
    passes ``False`` and overwrites.
    """
    values = {k: v for k, v in values.items() if k != "person_id" and k in PERSON.c}
    if not values:
        return
    statement = update(PERSON).where(PERSON.c.person_id == person_id)
    if only_unknown:
        for column in ("gender_concept_id", "year_of_birth"):
            if column in values:
                conn.execute(
                    statement.where(PERSON.c[column] == UNKNOWN).values({column: values[column]})
                )
        rest = {
            k: v
            for k, v in values.items()
            if k not in ("gender_concept_id", "year_of_birth") and v is not None
        }
        if rest:
            conn.execute(statement.values(rest))
    else:
        conn.execute(statement.values(values))
    if _BIRTH & values.keys():  # cohort_series holds ages at imaging: recompute them
        cohort_series.refresh_persons(conn, [person_id])


_DATED = (
    (CONDITION_OCCURRENCE, "condition_start_date"),
    (PROCEDURE_OCCURRENCE, "procedure_date"),
    (MEASUREMENT, "measurement_date"),
    (OBSERVATION, "observation_date"),
    (DRUG_EXPOSURE, "drug_exposure_start_date"),
    (SPECIMEN, "specimen_date"),
    (DEATH, "death_date"),
    (EPISODE, "episode_start_date"),
    (VISIT_OCCURRENCE, "visit_start_date"),
    (IMAGE_OCCURRENCE, "image_occurrence_date"),
)


def refresh_observation_periods(conn: Connection, person_ids: Iterable[int]) -> None:
    """Recompute the observation period of each person from all their dated rows."""
    ids = sorted(set(person_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        dates = union_all(
            *(
                select(
                    table.c.person_id.label("person_id"),
                    table.c[column].label("day"),
                ).where(table.c.person_id.in_(chunk))
                for table, column in _DATED
            )
        ).subquery()
        spans = conn.execute(
            select(
                dates.c.person_id,
                func.min(dates.c.day, type_=Date()),
                func.max(dates.c.day, type_=Date()),
            )
            .where(dates.c.day.is_not(None))
            .group_by(dates.c.person_id)
        ).all()
        conn.execute(delete(OBSERVATION_PERIOD).where(OBSERVATION_PERIOD.c.person_id.in_(chunk)))
        if spans:
            conn.execute(
                insert(OBSERVATION_PERIOD),
                [
                    {
                        "person_id": person_id,
                        "observation_period_start_date": first,
                        "observation_period_end_date": last,
                        "period_type_concept_id": PERIOD_TYPE_EHR,
                    }
                    for person_id, first, last in spans
                ],
            )


__all__ = [
    "PERIOD_TYPE_EHR",
    "UNKNOWN",
    "ensure_persons",
    "refresh_observation_periods",
    "set_demographics",
]
