"""The curated OMOP concept seed: its file, its lookups, and that it loads into the OHDSI DDL."""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from biobank.catalog.concepts import (
    CONCEPT_COLUMNS,
    DOMAINS,
    NO_MATCHING_CONCEPT,
    Concept,
    ConceptSeed,
)
from biobank.errors import InvalidInput

DDL = Path(__file__).resolve().parents[1] / "data" / "omop" / "OMOPCDM_sqlite_5.4_ddl.sql"
HEADER = ",".join(CONCEPT_COLUMNS)


def _seed_rows() -> list[list[str]]:
    text = resources.files("biobank.catalog").joinpath("data/omop_concepts.csv").read_text("utf-8")
    return list(csv.reader(text.splitlines()))


class TestSeedFile:
    def test_header_is_the_omop_concept_table(self) -> None:
        assert tuple(_seed_rows()[0]) == CONCEPT_COLUMNS

    def test_every_row_has_ten_cells_a_valid_domain_and_dates(self) -> None:
        rows = _seed_rows()[1:]
        assert 100 <= len(rows) <= 500
        for row in rows:
            assert len(row) == 10, row
            concept = dict(zip(CONCEPT_COLUMNS, row, strict=True))
            assert concept["domain_id"] in DOMAINS, row
            assert concept["vocabulary_id"] and concept["concept_class_id"], row
            assert concept["standard_concept"] in ("", "S", "C"), row
            start = dt.date.fromisoformat(concept["valid_start_date"])
            assert start < dt.date.fromisoformat(concept["valid_end_date"]), row

    def test_ids_and_keys_are_unique(self) -> None:
        rows = _seed_rows()[1:]
        ids = [int(row[0]) for row in rows]
        assert len(ids) == len(set(ids))
        keys = [(row[3], row[6]) for row in rows if row[6]]
        assert len(keys) == len(set(keys))

    def test_every_row_is_documented_in_the_sources_note(self) -> None:
        note = (
            resources.files("biobank.catalog")
            .joinpath("data/omop_concepts.SOURCES.md")
            .read_text("utf-8")
        )
        for vocabulary in {row[3] for row in _seed_rows()[1:]}:
            if vocabulary in ("Gender", "Visit", "None", "Type Concept", "Episode", "CDM"):
                continue  # named by concept, not vocabulary, in the note
            assert vocabulary in note, vocabulary


class TestLookups:
    @pytest.fixture
    def seed(self) -> ConceptSeed:
        return ConceptSeed.builtin()

    @pytest.mark.parametrize(
        ("key", "concept_id"),
        [
            ("Gender:M", 8507),
            ("Gender:F", 8532),
            ("Gender:female", 8532),
            ("Visit:IP", 9201),
            ("Visit:OP", 9202),
            ("Visit:ER", 9203),
            ("Type Concept:OMOP4976890", 32817),
            ("Type Concept:Case Report Form", 32809),
            ("type concept:registry", 32879),
            ("Episode:Disease First Occurrence", 32528),
            ("Episode:OMOP4822256", 32531),
            ("CDM:condition_occurrence.condition_occurrence_id", 1147127),
            ("CDM:measurement.measurement_id", 1147138),
            ("LOINC:2857-1", 3013603),
            ("LOINC:94734-1", 36660206),
            ("SNOMED:399068003", 4163261),
            ("SNOMED:254837009", 4112853),
            ("SNOMED:363406005", 4180790),
            ("SNOMED:276136004", 4172703),
            ("SNOMED:860744009", 3655246),
            ("ICD10:C61", 45547509),
            ("UCUM:ng/mL", 8842),
            ("UCUM:%", 8554),
            ("UCUM:mm", 8588),
            ("DICOM:00080060", 2128000041),
            ("DICOM:0008103e", 2128000153),
            ("DICOM:CT", 2128009190),
            ("DICOM:MR", 2128009230),
            ("None:No matching concept", 0),
        ],
    )
    def test_key_names_its_concept(self, seed: ConceptSeed, key: str, concept_id: int) -> None:
        assert seed.concept_id(key) == concept_id

    @pytest.mark.parametrize(
        "key",
        ["LOINC:0000-0", "SNOMED:", "LOINC", "", "Nonsense:2857-1", "UCUM:NG/ML", "Gender:X"],
    )
    def test_unknown_key_is_no_matching_concept(self, seed: ConceptSeed, key: str) -> None:
        assert seed.concept_id(key) == NO_MATCHING_CONCEPT
        assert key not in seed

    def test_absent_key_is_no_matching_concept(self, seed: ConceptSeed) -> None:
        assert seed.concept_id(None) == 0

    def test_name_of_a_concept(self, seed: ConceptSeed) -> None:
        assert seed.name(8507) == "MALE"
        assert seed.name(0) == "No matching concept"
        assert seed.name(3013603) == "Prostate specific Ag [Mass/volume] in Serum or Plasma"
        assert seed.name(123456789) is None

    def test_unknown_keys_are_listed_once_and_sorted(self, seed: ConceptSeed) -> None:
        assert seed.unknown_keys(["LOINC:2857-1", "X:1", "A:2", "X:1"]) == ["A:2", "X:1"]

    def test_builtin_seed_is_read_once_per_process(self) -> None:
        assert ConceptSeed.builtin() is ConceptSeed.builtin()

    def test_dicom_concepts_use_the_custom_id_range(self, seed: ConceptSeed) -> None:
        dicom = [c for c in seed if c.vocabulary_id == "DICOM"]
        assert len(dicom) >= 50
        assert all(c.concept_id > 2_000_000_000 for c in dicom)
        modalities = {c.concept_code for c in dicom if c.concept_class_id == "DICOM Value Sets"}
        assert {"CT", "MR", "PT", "US", "CR", "DX", "MG", "NM"} <= modalities

    def test_rows_are_column_dicts_ordered_by_id(self, seed: ConceptSeed) -> None:
        rows = seed.rows()
        assert len(rows) == len(seed)
        assert [r["concept_id"] for r in rows] == sorted(r["concept_id"] for r in rows)
        assert set(rows[0]) == set(CONCEPT_COLUMNS)
        assert rows[0]["concept_id"] == 0
        assert rows[0]["standard_concept"] is None
        assert isinstance(rows[0]["valid_start_date"], dt.date)


class TestReadingCsv:
    ROW = "3013603,PSA,Measurement,LOINC,Lab Test,S,2857-1,1970-01-01,2099-12-31,"

    def test_athena_dates_are_accepted(self) -> None:
        seed = ConceptSeed.from_csv(
            f"{HEADER}\n3013603,PSA,Measurement,LOINC,Lab Test,S,2857-1,19700101,20991231,\n"
        )
        concept = seed.by_id(3013603)
        assert concept is not None
        assert concept.valid_end_date == dt.date(2099, 12, 31)
        assert concept.key == "LOINC:2857-1"

    def test_wrong_header_is_rejected(self) -> None:
        with pytest.raises(InvalidInput, match="header must be exactly"):
            ConceptSeed.from_csv(f"concept_id,concept_name\n{self.ROW}\n")

    def test_unknown_domain_names_its_line(self) -> None:
        bad = self.ROW.replace("Measurement", "Labs")
        with pytest.raises(InvalidInput, match="line 3: domain_id 'Labs'"):
            ConceptSeed.from_csv(f"{HEADER}\n{self.ROW.replace('3013603', '1')}\n{bad}\n")

    def test_duplicate_id_is_rejected(self) -> None:
        with pytest.raises(InvalidInput, match="concept_id 3013603 appears twice"):
            ConceptSeed.from_csv(f"{HEADER}\n{self.ROW}\n{self.ROW}\n")

    @pytest.mark.parametrize(
        ("row", "message"),
        [
            ("x,PSA,Measurement,LOINC,Lab Test,S,2857-1,1970-01-01,2099-12-31,", "not an integer"),
            ("1,PSA,Measurement,LOINC,Lab Test,S,2857-1,1970-13-01,2099-12-31,", "not a date"),
            ("1,PSA,Measurement,LOINC,Lab Test,S,2857-1,1970-01-01", "8 cells, expected 10"),
            ("1,PSA,Measurement,LOINC,Lab Test,X,2857-1,1970-01-01,2099-12-31,", "S, C or empty"),
            ("1,,Measurement,LOINC,Lab Test,S,2857-1,1970-01-01,2099-12-31,", "concept_name"),
        ],
    )
    def test_bad_cells_are_named(self, row: str, message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            ConceptSeed.from_csv(f"{HEADER}\n{row}\n")

    def test_concept_row_round_trips(self) -> None:
        concept = Concept(
            8507, "MALE", "Gender", "Gender", "Gender", "S", "M", dt.date(1970, 1, 1),
            dt.date(2099, 12, 31),
        )  # fmt: skip
        assert ConceptSeed([concept]).rows() == [concept.row()]


class TestLoadsIntoTheOhdsiDdl:
    def test_seed_loads_into_the_sqlite_concept_table(self) -> None:
        seed = ConceptSeed.builtin()
        connection = sqlite3.connect(":memory:")
        try:
            connection.executescript(DDL.read_text(encoding="utf-8"))
            placeholders = ", ".join(f":{c}" for c in CONCEPT_COLUMNS)
            connection.executemany(
                f"INSERT INTO concept ({', '.join(CONCEPT_COLUMNS)}) VALUES ({placeholders})",
                [
                    {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}
                    for row in seed.rows()
                ],
            )
            (count,) = connection.execute("SELECT count(*) FROM concept").fetchone()
            psa = connection.execute(
                "SELECT concept_name, vocabulary_id, concept_code, valid_end_date "
                "FROM concept WHERE concept_id = 3013603"
            ).fetchone()
            nulls = connection.execute(
                "SELECT count(*) FROM concept WHERE concept_code IS NULL OR domain_id IS NULL"
            ).fetchone()[0]
        finally:
            connection.close()
        assert count == len(seed)
        assert psa == (
            "Prostate specific Ag [Mass/volume] in Serum or Plasma",
            "LOINC",
            "2857-1",
            "2099-12-31",
        )
        assert nulls == 0

    def test_ddl_copy_has_no_schema_placeholder(self) -> None:
        text = DDL.read_text(encoding="utf-8")
        assert "@cdmDatabaseSchema" not in text
        assert "CREATE TABLE concept (" in text
