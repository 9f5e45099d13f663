"""The clinical record repository on each backend: versions, OMOP rows, imports, reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from biobank.catalog import Catalog
from biobank.catalog.clinical import (
    CREATED,
    UNCHANGED,
    UPDATED,
    ClinicalRecords,
    RecordInput,
    RowRef,
    decode_values,
    encode_values,
)
from biobank.catalog.omop import (
    CLINICAL_RECORD,
    CLINICAL_RECORD_ROW,
    CLINICAL_RECORD_VERSION,
    CONDITION_OCCURRENCE,
    DEATH,
    EPISODE,
    EPISODE_EVENT,
    MEASUREMENT,
    OBSERVATION_PERIOD,
    PERSON,
)
from biobank.errors import InvalidInput, NotFound, StorageError

DIAGNOSIS = dt.date(2019, 5, 4)


def _rows(diagnosis: dt.date, psa: float, *, with_stage: bool = True) -> dict[str, Any]:
    """Rows like the mapping's: a condition, its episode and event, PSA, a stage."""
    rows: dict[str, Any] = {
        # listed before what they point at: the repository orders the inserts
        "episode_event": [
            {
                "episode_id": RowRef("histology:episode"),
                "event_id": RowRef("histology"),
                "episode_event_field_concept_id": 1147127,
            }
        ],
        "measurement": [
            {
                "_name": "psa",
                "measurement_concept_id": 3013603,
                "measurement_date": diagnosis,
                "measurement_type_concept_id": 32851,
                "value_as_number": psa,
                "measurement_source_value": "prostate.psa",
            }
        ],
        "condition_occurrence": [
            {
                "_name": "histology",
                "condition_concept_id": 4163261,
                "condition_start_date": diagnosis,
                "condition_type_concept_id": 32851,
                "condition_source_value": "acinar_adenocarcinoma",
            }
        ],
        "episode": [
            {
                "_name": "histology:episode",
                "episode_concept_id": 32528,
                "episode_start_date": diagnosis,
                "episode_object_concept_id": 4163261,
                "episode_type_concept_id": 32851,
            }
        ],
        "person": [{"gender_concept_id": 8507, "year_of_birth": 1950, "month_of_birth": 3}],
    }
    if with_stage:
        rows["measurement"].append(
            {
                "measurement_concept_id": 1634213,
                "measurement_date": diagnosis,
                "measurement_type_concept_id": 32851,
                "measurement_event_id": RowRef("histology"),
                "meas_event_field_concept_id": 1147127,
                "value_source_value": "T2",
            }
        )
    return rows


def _record(
    pseudonym: str = "PAAAA",
    *,
    sha: str = "a" * 64,
    psa: float = 7.5,
    form: str = "prostate",
    key: str = "",
    rows: dict[str, Any] | None = None,
    site: str = "site-a",
    sealed: bytes | None = None,
) -> RecordInput:
    return RecordInput(
        form=form,
        form_version=1,
        patient_pseudonym=pseudonym,
        record_key=key,
        site=site,
        values={"diagnosis_date": DIAGNOSIS, "psa": psa, "sex": "male", "adt": False},
        raw_digest=sha,
        rows=_rows(DIAGNOSIS, psa) if rows is None else rows,
        raw_sealed=sealed,
        warnings=[{"field": "psa", "rule": "psa-high", "severity": "warning"}],
    )


def _count(catalog: Catalog, table: Any, *where: Any) -> int:
    engine = create_engine(catalog.url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )
    finally:
        engine.dispose()


def _select(catalog: Catalog, stmt: Any) -> list[Any]:
    engine = create_engine(catalog.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt).all())
    finally:
        engine.dispose()


def test_values_round_trip_with_dates() -> None:
    values = {"d": dt.date(2020, 2, 29), "n": 1.5, "i": 3, "b": True, "s": "x", "none": None}
    text = encode_values(values)
    assert '{"$date":"2020-02-29"}' in text
    assert decode_values(text) == values
    assert decode_values(None) == {}


class TestClinicalRecords:
    def test_create_stores_record_version_person_and_rows(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        import_id = records.start_import("prostate", "api", "alice", "site-a")

        outcome = records.save_record(_record(), submitter="alice", import_id=import_id)

        assert outcome.outcome == CREATED
        assert outcome.version == 1
        stored = records.get(outcome.record_id)
        assert stored.values == {
            "diagnosis_date": DIAGNOSIS,
            "psa": 7.5,
            "sex": "male",
            "adt": False,
        }
        assert isinstance(stored.values["diagnosis_date"], dt.date)
        assert stored.import_id == import_id
        assert stored.submitter == "alice"
        assert stored.warnings == [{"field": "psa", "rule": "psa-high", "severity": "warning"}]
        person = _select(catalog, select(PERSON).where(PERSON.c.person_id == stored.person_id))
        assert person[0].person_source_value == "PAAAA"
        assert (person[0].gender_concept_id, person[0].year_of_birth) == (8507, 1950)
        rows = records.rows(outcome.record_id)
        assert {name: len(ids) for name, ids in rows.items()} == {
            "condition_occurrence": 1,
            "episode": 1,
            "measurement": 2,
        }
        # references resolved to the inserted ids
        condition_id = rows["condition_occurrence"][0]
        stage = _select(
            catalog,
            select(MEASUREMENT.c.measurement_event_id).where(
                MEASUREMENT.c.measurement_event_id.is_not(None)
            ),
        )
        assert stage == [(condition_id,)]
        events = _select(catalog, select(EPISODE_EVENT))
        assert [(e.episode_id, e.event_id) for e in events] == [(rows["episode"][0], condition_id)]
        period = _select(catalog, select(OBSERVATION_PERIOD))
        assert [
            (p.observation_period_start_date, p.observation_period_end_date) for p in period
        ] == [(DIAGNOSIS, DIAGNOSIS)]
        history = records.history(outcome.record_id)
        assert [(v.version, v.submitter, v.raw_digest) for v in history] == [(1, "alice", "a" * 64)]
        assert history[0].changed_fields == []

    def test_same_hash_is_unchanged_and_writes_nothing(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        first = records.save_record(_record(), submitter="alice")
        before = records.rows(first.record_id)

        again = records.save_record(_record(psa=99.0), submitter="bob")

        assert (again.outcome, again.record_id, again.version) == (UNCHANGED, first.record_id, 1)
        assert records.rows(first.record_id) == before
        assert records.get(first.record_id).submitter == "alice"
        assert records.get(first.record_id).values["psa"] == 7.5
        assert len(records.history(first.record_id)) == 1
        assert _count(catalog, MEASUREMENT) == 2

    def test_new_hash_is_a_new_version_that_replaces_the_rows(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        first = records.save_record(_record(), submitter="alice")

        second = records.save_record(
            _record(sha="b" * 64, psa=9.25, rows=_rows(DIAGNOSIS, 9.25, with_stage=False)),
            submitter="bob",
        )

        assert (second.outcome, second.record_id, second.version) == (
            UPDATED,
            first.record_id,
            2,
        )
        assert second.changed_fields == ("psa",)
        new_rows = records.rows(first.record_id)
        assert {name: len(ids) for name, ids in new_rows.items()} == {
            "condition_occurrence": 1,
            "episode": 1,
            "measurement": 1,
        }
        # no leftovers: only the new rows exist (SQLite may reuse the freed ids)
        for table, name in (
            (MEASUREMENT, "measurement"),
            (CONDITION_OCCURRENCE, "condition_occurrence"),
            (EPISODE, "episode"),
        ):
            assert _count(catalog, table) == len(new_rows[name])
        assert _count(catalog, MEASUREMENT, MEASUREMENT.c.measurement_event_id.is_not(None)) == 0
        assert _count(catalog, EPISODE_EVENT) == 1
        assert _count(catalog, CLINICAL_RECORD_ROW) == 3
        values = _select(catalog, select(MEASUREMENT.c.value_as_number))
        assert values == [(9.25,)]
        history = records.history(first.record_id)
        assert [(v.version, v.submitter, v.changed_fields) for v in history] == [
            (1, "alice", []),
            (2, "bob", ["psa"]),
        ]
        assert history[0].values["psa"] == 7.5
        assert history[1].values["psa"] == 9.25
        stored = records.get(first.record_id)
        assert (stored.version, stored.submitter, stored.raw_digest) == (2, "bob", "b" * 64)

    def test_a_batch_is_one_transaction(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        good = _record("PGOOD")
        bad = _record("PBAD", rows={"measurement": [{"no_such_column": 1}]})

        with pytest.raises(InvalidInput, match="no_such_column"):
            records.save_records([good, bad], submitter="alice")

        assert _count(catalog, CLINICAL_RECORD) == 0
        assert _count(catalog, PERSON) == 0
        assert _count(catalog, MEASUREMENT) == 0

    def test_a_batch_sees_its_own_earlier_records(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        outcomes = records.save_records(
            [
                _record("P1"),
                _record("P2"),
                _record("P1"),
                _record("P1", sha="c" * 64, psa=1.0),
                _record("P1", form="prostate_followup", key="followup_date=2021-01-01"),
            ],
            submitter="alice",
        )

        assert [(o.outcome, o.version) for o in outcomes] == [
            (CREATED, 1),
            (CREATED, 1),
            (UNCHANGED, 1),
            (UPDATED, 2),
            (CREATED, 1),
        ]
        assert outcomes[0].record_id == outcomes[2].record_id == outcomes[3].record_id
        assert _count(catalog, CLINICAL_RECORD) == 3
        assert _count(catalog, PERSON) == 2
        assert _count(catalog, OBSERVATION_PERIOD) == 2

    def test_unresolvable_reference_is_refused(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        rows = {
            "measurement": [
                {
                    "measurement_concept_id": 1,
                    "measurement_date": DIAGNOSIS,
                    "measurement_type_concept_id": 32851,
                    "measurement_event_id": RowRef("missing"),
                }
            ]
        }
        with pytest.raises(InvalidInput, match="missing"):
            records.save_record(_record(rows=rows), submitter="alice")
        assert _count(catalog, CLINICAL_RECORD) == 0

    def test_unknown_table_is_refused(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        with pytest.raises(InvalidInput, match="unknown table"):
            records.save_record(_record(rows={"patient": [{}]}), submitter="alice")

    def test_death_is_one_per_person_and_moves_to_the_latest_record(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)

        def death(day: int, key: str) -> RecordInput:
            return _record(
                form="prostate_followup",
                key=key,
                sha=key.ljust(64, "0")[:64],
                rows={"death": [{"death_date": dt.date(2022, 1, day), "cause_concept_id": 0}]},
            )

        first = records.save_record(death(1, "k1"), submitter="alice")
        second = records.save_record(death(9, "k2"), submitter="alice")

        assert _select(catalog, select(DEATH.c.death_date)) == [(dt.date(2022, 1, 9),)]
        assert records.rows(first.record_id) == {}
        assert records.rows(second.record_id) == {"death": [records.get(first.record_id).person_id]}

    def test_corrected_record_without_death_removes_it(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        rows = {"death": [{"death_date": dt.date(2022, 1, 1)}]}
        first = records.save_record(_record(rows=rows), submitter="alice")
        records.save_record(_record(sha="d" * 64, rows={}), submitter="alice")
        assert _count(catalog, DEATH) == 0
        assert records.rows(first.record_id) == {}

    def test_reads(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        records.save_records(
            [
                _record("P1"),
                _record("P2", site="site-b"),
                _record("P1", form="prostate_followup", key="followup_date=2021-01-01"),
                _record("P1", form="prostate_followup", key="followup_date=2022-01-01"),
            ],
            submitter="alice",
        )

        followups = records.stored_records("prostate_followup", "P1")
        assert [r.record_key for r in followups] == [
            "followup_date=2021-01-01",
            "followup_date=2022-01-01",
        ]
        assert followups[0].values["diagnosis_date"] == DIAGNOSIS
        assert records.stored_records("prostate", "P9") == []
        assert [r.patient_pseudonym for r in records.records("prostate")] == ["P1", "P2"]
        assert [r.patient_pseudonym for r in records.records(site="site-b")] == ["P2"]
        assert len(records.records(limit=2, offset=3)) == 1
        assert records.count("prostate_followup") == 2
        values = records.form_values("prostate")
        assert [(pseudonym, site) for _id, pseudonym, site, _v in values] == [
            ("P1", "site-a"),
            ("P2", "site-b"),
        ]
        assert values[0][3]["diagnosis_date"] == DIAGNOSIS
        found = records.find("prostate_followup", "P1", "followup_date=2022-01-01")
        assert found is not None and found.form == "prostate_followup"
        assert records.find("prostate", "P1", "other") is None
        assert records.get(values[0][0]).to_json()["values"]["diagnosis_date"] == "2019-05-04"

    def test_missing_records_raise_not_found(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        with pytest.raises(NotFound):
            records.get(12345)
        with pytest.raises(NotFound):
            records.history(12345)
        with pytest.raises(NotFound):
            records.sealed(12345)
        with pytest.raises(NotFound):
            records.finish_import("0" * 32, {}, [])

    def test_sealed_versions(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        first = records.save_record(_record(sealed=b"one"), submitter="alice")
        records.save_record(_record(sha="e" * 64, sealed=b"two"), submitter="alice")

        assert records.sealed(first.record_id) == ("PAAAA", b"two")
        assert records.sealed(first.record_id, 1) == ("PAAAA", b"one")
        with pytest.raises(NotFound, match="version 3"):
            records.sealed(first.record_id, 3)
        assert [v.sealed for v in records.history(first.record_id)] == [True, True]

    def test_imports_keep_counts_and_problems_without_values(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        import_id = records.start_import("prostate", "cli", "alice", "site-a")
        records.finish_import(
            import_id,
            {"received": 3, "created": 1, "updated": 1, "unchanged": 0, "rejected": 1},
            [
                {
                    "record": 2,
                    "field": "psa",
                    "rule": "range",
                    "value": "SECRET-VALUE",
                    "message": "psa is SECRET-VALUE",
                    "record_key": "followup_date=1999-01-01",
                    "severity": "error",
                }
            ],
        )

        (summary,) = records.imports()
        assert summary.id == import_id
        assert summary.counts == {
            "received": 3,
            "created": 1,
            "updated": 1,
            "unchanged": 0,
            "rejected": 1,
        }
        assert summary.problems == [
            {"record": 2, "field": "psa", "rule": "range", "severity": "error"}
        ]
        assert summary.finished_at is not None
        assert "SECRET" not in str(summary.to_json())
        assert "1999" not in str(summary.to_json())
        assert records.get_import(import_id).channel == "cli"
        raw = _select(catalog, select(CLINICAL_RECORD_VERSION))
        assert raw == []

    def test_start_import_checks_lengths(self, catalog: Catalog) -> None:
        records = ClinicalRecords(catalog)
        with pytest.raises(InvalidInput, match="submitter"):
            records.start_import("prostate", "api", "x" * 129, "site-a")
        with pytest.raises(InvalidInput, match="channel"):
            records.start_import("prostate", "", "alice", "site-a")


def test_database_failure_is_a_storage_error(tmp_path: Any) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'never-migrated.sqlite'}")
    try:
        with pytest.raises(StorageError, match="saving 1 clinical record"):
            ClinicalRecords(catalog).save_record(_record(), submitter="alice")
    finally:
        catalog.close()
