"""The OMOP CSV dump loads back into the OHDSI DDL (SQLite and PostgreSQL), values intact."""

from __future__ import annotations

import csv
import datetime
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert

from biobank.catalog import Catalog, InstanceRecord
from biobank.catalog.omop import (
    CONDITION_OCCURRENCE,
    EPISODE,
    MEASUREMENT,
    OBSERVATION,
    OMOP_TABLES,
    PROCEDURE_OCCURRENCE,
)
from biobank.catalog.omop_export import (
    CONDITION_FIELD_CONCEPT,
    TREATMENT_REGIMEN,
    collection_facts,
    export_omop_csv,
    patient_facts,
)
from biobank.catalog.omop_imaging import sync_catalog_imaging
from biobank.catalog.omop_person import ensure_persons, set_demographics
from biobank.errors import InvalidInput
from tests.catalog.conftest import new_database_url
from tests.catalog.factories import digest, execute, stored, uid

DATA = Path(__file__).resolve().parents[1] / "data" / "omop"
PSA = 3013603
C61 = 45547509
BREAST_CANCER = 4112853
GRADE_GROUP_2 = 3655245
PROSTATECTOMY = 4096783


def _instance(n: int, series: str, study: str, patient: str, **fields: Any) -> InstanceRecord:
    sop = uid(7, n)
    header = {
        "00080018": {"vr": "UI", "Value": [sop]},
        "00180050": {"vr": "DS", "Value": [3.0]},
    }
    return InstanceRecord(
        patient_pseudonym=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        blob_digest=digest(sop),
        blob_size=10,
        header_json=json.dumps(header),
        **fields,
    )


def populate(catalog: Catalog) -> None:
    """Two imaged patients (A: prostate MR + CT, B: mammography) and a clinical-only C.

    A has prostate cancer (ICD-10 C61) with PSA 7.5, ISUP grade group 2 (linked to the
    diagnosis), PI-RADS 4, a biopsy and a prostatectomy (a Treatment Regimen); C has breast
    cancer with ER positive and Ki-67 20.
    """
    mr, ct, mg = datetime.date(2021, 3, 1), datetime.date(2021, 5, 1), datetime.date(2020, 1, 1)
    a = {"patient": "PSN-A", "patient_sex": "M", "patient_birth_date": datetime.date(1955, 6, 1)}
    prostate = {"body_part_examined": "PROSTATE", "manufacturer": "SIEMENS", "study_date": mr}
    instances = [
        _instance(1, uid(1, 1), uid(1), modality="MR", **a, **prostate),
        _instance(2, uid(1, 2), uid(1), modality="MR", **a, **prostate),
        _instance(3, uid(2, 1), uid(2), modality="CT", study_date=ct, **a),
        _instance(
            4,
            uid(3, 1),
            uid(3),
            "PSN-B",
            modality="MG",
            patient_sex="F",
            study_date=mg,
            body_part_examined="BREAST",
            manufacturer="GE",
        ),
    ]
    batch = catalog.start_batch(role="central", sources=["test"], profile=None, key_id=None)
    catalog.record_items(batch, [stored(i) for i in instances])
    sync_catalog_imaging(catalog)
    diagnosis = datetime.date(2021, 2, 1)
    with catalog._writing("test: clinical rows") as conn:
        persons = ensure_persons(conn, ["PSN-A", "PSN-C"])
        set_demographics(
            conn,
            persons["PSN-C"],
            {"gender_concept_id": 8532, "year_of_birth": 1970},
            only_unknown=False,
        )
        condition = conn.execute(
            insert(CONDITION_OCCURRENCE).returning(CONDITION_OCCURRENCE.c.condition_occurrence_id),
            {
                "person_id": persons["PSN-A"],
                "condition_concept_id": C61,
                "condition_start_date": diagnosis,
                "condition_type_concept_id": 32809,
                "condition_source_value": "C61",
            },
        ).scalar_one()
        conn.execute(
            insert(CONDITION_OCCURRENCE),
            {
                "person_id": persons["PSN-C"],
                "condition_concept_id": BREAST_CANCER,
                "condition_start_date": datetime.date(2019, 5, 5),
                "condition_type_concept_id": 32809,
                "condition_source_value": "C50.9",
            },
        )
        base: dict[str, Any] = {
            "measurement_type_concept_id": 32809,
            "value_as_number": None,
            "value_as_concept_id": None,
            "value_source_value": None,
            "measurement_event_id": None,
            "meas_event_field_concept_id": None,
        }
        conn.execute(
            insert(MEASUREMENT),
            [
                {
                    **base,
                    "person_id": persons["PSN-A"],
                    "measurement_concept_id": PSA,
                    "measurement_date": diagnosis,
                    "value_as_number": 7.5,
                    "measurement_source_value": "prostate.psa",
                },
                {
                    **base,
                    "person_id": persons["PSN-A"],
                    "measurement_concept_id": 0,
                    "measurement_date": diagnosis,
                    "value_as_concept_id": GRADE_GROUP_2,
                    "value_source_value": "2",
                    "measurement_source_value": "prostate.isup_grade",
                    "measurement_event_id": condition,
                    "meas_event_field_concept_id": CONDITION_FIELD_CONCEPT,
                },
                {
                    **base,
                    "person_id": persons["PSN-A"],
                    "measurement_concept_id": 0,
                    "measurement_date": diagnosis,
                    "value_as_number": 4,
                    "value_source_value": "4",
                    "measurement_source_value": "prostate.pirads",
                },
                {
                    **base,
                    "person_id": persons["PSN-C"],
                    "measurement_concept_id": 0,
                    "measurement_date": datetime.date(2019, 5, 5),
                    "value_as_number": 20,
                    "measurement_source_value": "breast.ki67",
                },
            ],
        )
        conn.execute(
            insert(OBSERVATION),
            {
                "person_id": persons["PSN-C"],
                "observation_concept_id": 0,
                "observation_date": datetime.date(2019, 5, 5),
                "observation_type_concept_id": 32809,
                "value_as_string": "positive",
                "observation_source_value": "breast.er",
            },
        )
        procedures = [
            {
                "person_id": persons["PSN-A"],
                "procedure_concept_id": concept,
                "procedure_date": day,
                "procedure_type_concept_id": 32809,
                "procedure_source_value": source,
            }
            for concept, day, source in (
                (0, datetime.date(2021, 1, 20), "targeted"),  # a biopsy: not a treatment
                (PROSTATECTOMY, datetime.date(2021, 6, 1), "radical_prostatectomy"),
            )
        ]
        conn.execute(insert(PROCEDURE_OCCURRENCE), procedures)
        conn.execute(
            insert(EPISODE),
            {
                "person_id": persons["PSN-A"],
                "episode_concept_id": TREATMENT_REGIMEN,
                "episode_start_date": datetime.date(2021, 6, 1),
                "episode_object_concept_id": PROSTATECTOMY,
                "episode_type_concept_id": 32809,
            },
        )


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _fields(line: str) -> list[str | None]:
    """One CSV record as PostgreSQL's COPY reads it: unquoted empty is NULL, ``""`` is ''."""
    fields: list[str | None] = []
    at = 0
    while True:
        if line.startswith('"', at):
            value, at = [], at + 1
            while True:
                end = line.index('"', at)
                value.append(line[at:end])
                if line.startswith('"', end + 1):
                    value.append('"')
                    at = end + 2
                    continue
                at = end + 1
                break
            fields.append("".join(value))
        else:
            end = line.find(",", at)
            end = len(line) if end < 0 else end
            fields.append(line[at:end] or None)
            at = end
        if at >= len(line):
            return fields
        at += 1  # the comma


def _records(path: Path) -> tuple[list[str], list[list[str | None]]]:
    """The header and the records of a dump file (no field of the test data spans lines)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split(","), [_fields(line) for line in lines[1:]]


def _count(catalog: Catalog, table: str) -> int:
    return int(execute(catalog, f"SELECT count(*) FROM {table}")[0][0])


class TestDump:
    def test_one_file_per_table_with_the_ohdsi_columns(
        self, catalog: Catalog, tmp_path: Path
    ) -> None:
        populate(catalog)
        counts = export_omop_csv(catalog, tmp_path / "dump")
        assert list(counts) == [table.name for table in OMOP_TABLES]
        for table in OMOP_TABLES:
            header, rows = _csv_rows(tmp_path / "dump" / f"{table.name}.csv")
            assert header == [column.name for column in table.columns]
            assert len(rows) == counts[table.name] == _count(catalog, table.name)
        assert counts["image_occurrence"] == 4 and counts["person"] == 3
        header, rows = _csv_rows(tmp_path / "dump" / "measurement.csv")
        psa = next(r for r in rows if r[header.index("measurement_source_value")] == "prostate.psa")
        assert psa[header.index("value_as_number")] == "7.5"
        assert psa[header.index("measurement_date")] == "2021-02-01"
        assert psa[header.index("range_low")] == ""  # NULL
        lines = (tmp_path / "dump" / "measurement.csv").read_text().splitlines()
        assert ",," in lines[1] and '""' not in lines[1]  # NULL is empty, not quoted
        for line in (tmp_path / "dump" / "concept.csv").read_text().splitlines()[1:]:
            fields = _fields(line)
            assert len(fields) == 10 and fields[6] is not None  # concept_code: NOT NULL

    def test_a_file_in_the_way_is_refused(self, catalog: Catalog, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(InvalidInput, match="not a directory"):
            export_omop_csv(catalog, tmp_path / "file")

    def test_the_dump_loads_into_the_ohdsi_sqlite_ddl(
        self, catalog: Catalog, tmp_path: Path
    ) -> None:
        populate(catalog)
        counts = export_omop_csv(catalog, tmp_path)
        db = sqlite3.connect(":memory:")
        db.executescript((DATA / "OMOPCDM_sqlite_5.4_ddl.sql").read_text())
        db.executescript((DATA / "MICDM_sqlite_5.4_ddl.sql").read_text())
        for table, expected in counts.items():
            header, records = _records(tmp_path / f"{table}.csv")
            marks = ", ".join("?" for _ in header)
            db.executemany(f"INSERT INTO {table} ({', '.join(header)}) VALUES ({marks})", records)
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == expected
        found = db.execute(
            "SELECT p.person_source_value, io.modality_concept_id, io.image_occurrence_date"
            " FROM image_occurrence io JOIN person p ON p.person_id = io.person_id"
            " WHERE io.image_series_uid = ?",
            (uid(3, 1),),
        ).fetchone()
        assert found == ("PSN-B", 2128009228, "2020-01-01")
        assert db.execute(
            "SELECT value_as_number FROM measurement WHERE measurement_source_value = ?",
            ("prostate.psa",),
        ).fetchone() == (7.5,)

    @pytest.mark.postgres
    def test_the_dump_loads_into_the_ohdsi_postgresql_ddl_with_copy(
        self, catalog: Catalog, tmp_path: Path
    ) -> None:
        populate(catalog)
        counts = export_omop_csv(catalog, tmp_path / "dump")
        for url in new_database_url("postgresql", tmp_path):
            with psycopg.connect(url.replace("+psycopg", "")) as db:
                db.execute((DATA / "OMOPCDM_postgresql_5.4_ddl.sql").read_text())
                db.execute((DATA / "MICDM_postgresql_5.4_ddl.sql").read_text())
                for table, expected in counts.items():
                    data = (tmp_path / "dump" / f"{table}.csv").read_bytes()
                    with db.cursor().copy(
                        f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
                    ) as copy:
                        copy.write(data)
                    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
                    assert row is not None and row[0] == expected
                found = db.execute(
                    "SELECT p.person_source_value, io.modality_concept_id,"
                    " io.image_occurrence_date FROM image_occurrence io"
                    " JOIN person p ON p.person_id = io.person_id"
                    " WHERE io.image_series_uid = %s",
                    (uid(1, 2),),
                ).fetchone()
                assert found == ("PSN-A", 2128009230, datetime.date(2021, 3, 1))
                psa = db.execute(
                    "SELECT value_as_number, range_low FROM measurement"
                    " WHERE measurement_source_value = 'prostate.psa'"
                ).fetchone()
                assert psa is not None and float(psa[0]) == 7.5 and psa[1] is None


class TestFacts:
    def test_patient_facts_gather_diagnoses_variables_treatments_studies(
        self, catalog: Catalog
    ) -> None:
        populate(catalog)
        facts = {person.pseudonym: person for person in patient_facts(catalog)}
        assert list(facts) == ["PSN-A", "PSN-B", "PSN-C"]
        a = facts["PSN-A"]
        assert [c.diagnosis.code for c in a.conditions] == ["C61"]
        assert {v.variable for v in a.variables} == {
            "prostate.psa",
            "prostate.isup_grade",
            "prostate.pirads",
        }
        isup = next(v for v in a.variables if v.variable == "prostate.isup_grade")
        assert isup.condition_occurrence_id == a.conditions[0].condition_occurrence_id
        assert a.treatments == [datetime.date(2021, 6, 1)]
        assert [(s.modalities, s.series) for s in a.studies] == [(("MR",), 2), (("CT",), 1)]
        assert facts["PSN-C"].studies == [] and facts["PSN-B"].conditions == []

    def test_collection_facts_count_the_node(self, catalog: Catalog) -> None:
        populate(catalog)
        facts = collection_facts(catalog)
        assert (facts.persons, facts.studies, facts.series) == (3, 3, 4)
        assert facts.sexes == {8507: 1, 8532: 2}
        assert facts.modalities == {"CT": 1, "MG": 1, "MR": 2}
        assert facts.body_parts["PROSTATE"] == 2 and facts.clinical
        assert (facts.age_low, facts.age_high) == (49, 66)
        assert {(t.vocabulary, t.code): n for t, n in facts.diagnoses} == {
            ("ICD10", "C61"): 1,
            ("SNOMED", "254837009"): 1,
        }
