"""``cohort_series`` follows every write path its values come from (both backends).

Each step writes through the path a node uses — the OMOP sync of new series, a curator's
relabel and decisions, a clinical birth date, a new person from a clinical record — and
checks a cohort count before and after, and that the table equals a fresh rebuild.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from sqlalchemy import select

from biobank.catalog import Catalog, InstanceRecord, cohort_series
from biobank.catalog.cohort import (
    CohortCounts,
    Criterion,
    Field,
    Op,
    Operand,
    Operation,
    count_cohort,
)
from biobank.catalog.curation import CurationRecords, Decision
from biobank.catalog.omop import COHORT_SERIES
from biobank.catalog.omop_imaging import sync_catalog_imaging, sync_imaging_all
from biobank.catalog.omop_person import ensure_persons, set_demographics
from tests.catalog.factories import digest, stored, uid

IMAGED = datetime.date(2020, 6, 1)


def _instance(n: int, *, series: str, study: str, patient: str) -> InstanceRecord:
    sop = uid(9, n)
    return InstanceRecord(
        patient_pseudonym=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        blob_digest=digest(sop),
        blob_size=10,
        header_json=json.dumps({"00080018": {"vr": "UI", "Value": [sop]}}),
        modality="MR",
        body_part_examined="PROSTATE",
        study_date=IMAGED,
    )


def _load(catalog: Catalog, *instances: InstanceRecord) -> None:
    batch = catalog.start_batch(role="central", sources=["test"], profile=None, key_id=None)
    catalog.record_items(batch, [stored(i) for i in instances])


def _count(catalog: Catalog, *criteria: Criterion) -> CohortCounts:
    return count_cohort(catalog, Operation(Operand.AND, criteria))


def _rows(catalog: Catalog) -> list[tuple[Any, ...]]:
    with catalog._reading("test") as conn:
        return [tuple(row) for row in conn.execute(select(COHORT_SERIES))]


def _assert_fresh(catalog: Catalog) -> None:
    """The maintained table equals what a rebuild computes from the sources."""
    kept = sorted(_rows(catalog), key=lambda row: row[0])
    with catalog._reading("test") as conn:
        computed = sorted(
            (tuple(row) for row in conn.execute(cohort_series.source())), key=lambda r: r[0]
        )
    assert kept == computed


MR = Criterion(Field.MODALITY, Op.EQUALS, ("MR",))
T2W = Criterion(Field.SERIES_LABEL, Op.EQUALS, ("T2W",))
APPROVED = Criterion(Field.CURATION_DECISION, Op.EQUALS, ("approve",))


def _aged(years: int) -> Criterion:
    return Criterion(Field.AGE_AT_IMAGING, Op.BETWEEN, (years, years))


def test_the_table_follows_every_write_path(catalog: Catalog) -> None:
    a1, a2 = uid(1, 1), uid(1, 2)
    _load(
        catalog,
        _instance(1, series=a1, study=uid(1), patient="PSN-A"),
        _instance(2, series=a2, study=uid(1), patient="PSN-A"),
    )
    # Catalogued but not yet in OMOP: no person, no row, not counted (as before the table).
    assert _rows(catalog) == []
    assert _count(catalog, MR) == CohortCounts(0, 0, 0)

    # A new series (the OMOP sync at ingest creates the person and the rows).
    assert sync_catalog_imaging(catalog).series == 2
    assert _count(catalog, MR) == CohortCounts(1, 1, 2)
    _assert_fresh(catalog)

    # A curator's relabel.
    curation = CurationRecords(catalog)
    assert _count(catalog, MR, T2W) == CohortCounts(0, 0, 0)
    curation.relabel(a1, "T2W", actor="curator", comment="axial T2")
    assert _count(catalog, MR, T2W) == CohortCounts(1, 1, 1)
    _assert_fresh(catalog)

    # Decisions: one series, then the whole study.
    assert _count(catalog, APPROVED) == CohortCounts(0, 0, 0)
    curation.decide(a2, Decision.APPROVE, actor="curator", comment="fine")
    assert _count(catalog, APPROVED) == CohortCounts(1, 1, 1)
    assert curation.decide_study(uid(1), Decision.APPROVE, actor="curator", comment="ok") == 2
    assert _count(catalog, APPROVED) == CohortCounts(1, 1, 2)
    curation.decide(a1, Decision.EXCLUDE, actor="curator", comment="motion")
    assert _count(catalog, APPROVED, T2W) == CohortCounts(0, 0, 0)
    _assert_fresh(catalog)

    # Automatic results (a classification) go through the same refresh.
    curation.record_classification(a2, {"label": "DWI", "orientation": "axial"})
    dwi = Criterion(Field.SERIES_LABEL, Op.EQUALS, ("DWI",))
    assert _count(catalog, dwi) == CohortCounts(1, 1, 1)
    _assert_fresh(catalog)

    # A clinical birth date, then a corrected one: the age at imaging follows.
    with catalog._writing("test") as conn:
        person = ensure_persons(conn, ["PSN-A"])["PSN-A"]
        set_demographics(
            conn,
            person,
            {"year_of_birth": 1950, "month_of_birth": 1, "day_of_birth": 1},
            only_unknown=False,
        )
    assert _count(catalog, _aged(70)) == CohortCounts(1, 1, 2)
    assert _count(catalog, _aged(60)) == CohortCounts(0, 0, 0)
    with catalog._writing("test") as conn:
        set_demographics(
            conn,
            person,
            {"year_of_birth": 1960, "month_of_birth": 6, "day_of_birth": 2},
            only_unknown=False,
        )
    assert _count(catalog, _aged(70)) == CohortCounts(0, 0, 0)
    assert _count(catalog, _aged(59)) == CohortCounts(1, 1, 2)  # a day short of 60
    _assert_fresh(catalog)

    # Another new series of the same person, in a new study.
    _load(catalog, _instance(3, series=uid(2, 1), study=uid(2), patient="PSN-A"))
    assert sync_catalog_imaging(catalog).series == 1
    assert _count(catalog, MR) == CohortCounts(1, 2, 3)
    _assert_fresh(catalog)

    # A person created by a clinical record after their series were catalogued.
    _load(catalog, _instance(4, series=uid(3, 1), study=uid(3), patient="PSN-B"))
    assert _count(catalog, MR) == CohortCounts(1, 2, 3)
    with catalog._writing("test") as conn:
        ensure_persons(conn, ["PSN-B"])
    assert _count(catalog, MR) == CohortCounts(2, 3, 4)
    _assert_fresh(catalog)


def test_rebuild_repairs_the_table(catalog: Catalog) -> None:
    _load(catalog, _instance(1, series=uid(1, 1), study=uid(1), patient="PSN-A"))
    sync_catalog_imaging(catalog)
    expected = _rows(catalog)
    assert len(expected) == 1
    with catalog._writing("test") as conn:
        conn.execute(COHORT_SERIES.delete())
    assert _count(catalog, MR) == CohortCounts(0, 0, 0)
    sync_imaging_all(catalog)  # `biobank omop sync` rebuilds it
    assert _rows(catalog) == expected
    assert _count(catalog, MR) == CohortCounts(1, 1, 1)
