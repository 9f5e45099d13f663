"""Ingested imaging in OMOP: image_occurrence, image_feature, procedures and persons."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from biobank.catalog import Catalog, InstanceRecord
from biobank.catalog.omop_imaging import (
    MEASUREMENT_TABLE_CONCEPT,
    OBSERVATION_TABLE_CONCEPT,
    TYPE_EHR,
    header_elements,
    sync_catalog_imaging,
    sync_imaging,
    sync_imaging_all,
)
from biobank.catalog.omop_person import ensure_persons, set_demographics
from biobank.dicom.synthetic import PlantedPHI, make_ct_series, make_mr_series, make_patient_phi
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import ingest
from tests.catalog.conftest import BACKENDS, new_database_url
from tests.catalog.factories import digest, execute, stored, uid

CT = 2128009190
MR = 2128009230
SLICE_THICKNESS = 2128000808
MANUFACTURER = 2128000047


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PlantedPHI]]:
    """Two patients, each with a CT study and an MR study of two slices."""
    root = tmp_path_factory.mktemp("omop-corpus")
    patients = [make_patient_phi(i, seed=21) for i in range(2)]
    for phi in patients:
        datasets = make_ct_series(phi, 2, rows=16, cols=16) + make_mr_series(phi, 2, 16, 16)
        for n, ds in enumerate(datasets):
            ds.save_as(root / f"{phi.patient_id}_{n}.dcm", enforce_file_format=True)
    return root, patients


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    """A site node on its own SQLite file, or on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield init_node(tmp_path / "home", site="A", role=NodeRole.SITE)
        return
    for url in new_database_url("postgresql", tmp_path):
        yield init_node(tmp_path / "home", site="A", role=NodeRole.SITE, database_url=url)


def _rows(catalog: Catalog, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return execute(catalog, sql, **params)


def _as_date(value: Any) -> datetime.date:
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(str(value))


class TestIngestFillsOmop:
    def test_every_series_gets_an_image_occurrence_with_its_features(
        self, node: Node, corpus: tuple[Path, list[PlantedPHI]]
    ) -> None:
        root, patients = corpus
        report = ingest(node, [root], jobs=1)
        assert report.counts["stored"] == 8
        with node.open_catalog() as catalog:
            series = _rows(
                catalog,
                "SELECT s.series_instance_uid, st.study_instance_uid, s.modality, st.study_date,"
                " p.patient_pseudonym, p.patient_sex FROM series s"
                " JOIN study st ON st.id = s.study_id JOIN patient p ON p.id = st.patient_id",
            )
            occurrences = {
                row[0]: row[1:]
                for row in _rows(
                    catalog,
                    "SELECT io.image_series_uid, io.image_study_uid, io.modality_concept_id,"
                    " io.image_occurrence_date, io.wadors_uri, io.local_path,"
                    " pe.person_source_value,"
                    " po.procedure_source_value, po.procedure_date, po.procedure_type_concept_id"
                    " FROM image_occurrence io JOIN person pe ON pe.person_id = io.person_id"
                    " JOIN procedure_occurrence po"
                    " ON po.procedure_occurrence_id = io.procedure_occurrence_id",
                )
            }
            persons = _rows(catalog, "SELECT person_source_value, gender_concept_id FROM person")
            procedures = _rows(catalog, "SELECT count(*) FROM procedure_occurrence")[0][0]
            periods = _rows(catalog, "SELECT count(*) FROM observation_period")[0][0]
        assert len(series) == 4 and set(occurrences) == {row[0] for row in series}
        for series_uid, study_uid, modality, study_date, pseudonym, sex in series:
            found = occurrences[series_uid]
            assert found[0] == study_uid
            assert found[1] == {"CT": CT, "MR": MR}[modality]
            assert _as_date(found[2]) == _as_date(study_date)
            assert found[3] == f"/dicomweb/studies/{study_uid}/series/{series_uid}"
            assert found[4] is None
            assert found[5] == pseudonym
            assert found[6] == modality and _as_date(found[7]) == _as_date(study_date)
            assert found[8] == TYPE_EHR
            assert (pseudonym, {"M": 8507, "F": 8532}.get(sex, 0)) in persons
        assert len(persons) == 2 and procedures == 4 and periods == 2
        assert all(p.patient_id not in str(persons) for p in patients)

    def test_features_point_at_their_values(
        self, node: Node, corpus: tuple[Path, list[PlantedPHI]]
    ) -> None:
        ingest(node, [corpus[0]], jobs=1)
        with node.open_catalog() as catalog:
            features = _rows(
                catalog,
                "SELECT f.image_feature_event_field_concept_id, f.image_feature_event_id,"
                " f.image_feature_concept_id, f.person_id, f.image_feature_type_concept_id,"
                " f.image_finding_concept_id, io.image_series_uid"
                " FROM image_feature f"
                " JOIN image_occurrence io ON io.image_occurrence_id = f.image_occurrence_id",
            )
            measurements = {
                row[0]: row[1:]
                for row in _rows(
                    catalog,
                    "SELECT measurement_id, measurement_concept_id, person_id, value_as_number,"
                    " measurement_source_value FROM measurement",
                )
            }
            observations = {
                row[0]: row[1:]
                for row in _rows(
                    catalog,
                    "SELECT observation_id, observation_concept_id, person_id, value_as_string,"
                    " observation_source_value FROM observation",
                )
            }
            headers = {
                uid_: json.loads(header)
                for uid_, header in _rows(
                    catalog,
                    "SELECT s.series_instance_uid, i.header FROM instance i"
                    " JOIN series s ON s.id = i.series_id",
                )
            }
        assert features and len(features) == len(measurements) + len(observations)
        slice_thickness = manufacturers = 0
        for field, event_id, concept, person, kind, finding, series_uid in features:
            assert kind == TYPE_EHR and finding == 0
            if field == MEASUREMENT_TABLE_CONCEPT:
                value_concept, value_person, number, keyword = measurements[event_id]
                assert (value_concept, value_person) == (concept, person)
                if concept == SLICE_THICKNESS:
                    assert keyword == "SliceThickness"
                    assert number == float(headers[series_uid]["00180050"]["Value"][0])
                    slice_thickness += 1
            else:
                assert field == OBSERVATION_TABLE_CONCEPT
                value_concept, value_person, text, keyword = observations[event_id]
                assert (value_concept, value_person) == (concept, person)
                if concept == MANUFACTURER:
                    assert keyword == "Manufacturer"
                    assert text == headers[series_uid]["00080070"]["Value"][0]
                    manufacturers += 1
        assert slice_thickness == 4 and manufacturers == 4

    def test_ingesting_again_adds_nothing(
        self, node: Node, corpus: tuple[Path, list[PlantedPHI]]
    ) -> None:
        ingest(node, [corpus[0]], jobs=1)
        with node.open_catalog() as catalog:
            before = _rows(catalog, "SELECT count(*) FROM image_feature")[0][0]
        again = ingest(node, [corpus[0]], jobs=1)
        assert again.counts["duplicate"] == 8
        with node.open_catalog() as catalog:
            assert sync_imaging_all(catalog).series == 0
            assert _rows(catalog, "SELECT count(*) FROM image_occurrence")[0][0] == 4
            assert _rows(catalog, "SELECT count(*) FROM image_feature")[0][0] == before

    def test_a_failed_sync_never_fails_the_ingest_and_is_caught_up(
        self,
        node: Node,
        corpus: tuple[Path, list[PlantedPHI]],
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        root, patients = corpus

        def broken(*args: object) -> object:
            raise RuntimeError(f"boom {patients[0].patient_id}")

        monkeypatch.setattr("biobank.catalog.omop_imaging._sync_chunk", broken)
        with caplog.at_level(logging.WARNING, logger="biobank.catalog.omop_imaging"):
            report = ingest(node, [root], jobs=1)
        assert report.counts["stored"] == 8 and not report.interrupted
        warnings = [r for r in caplog.records if r.name == "biobank.catalog.omop_imaging"]
        assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()
        for phi in patients:
            assert phi.patient_id not in caplog.text and phi.family_name not in caplog.text
        with node.open_catalog() as catalog:
            assert _rows(catalog, "SELECT count(*) FROM image_occurrence")[0][0] == 0
            monkeypatch.undo()
            assert sync_imaging_all(catalog).series == 4
            assert _rows(catalog, "SELECT count(*) FROM image_occurrence")[0][0] == 4


# -- the mapping, on catalogues built directly ------------------------------------------------


def _instance(
    n: int,
    *,
    series: str,
    study: str,
    patient: str = "PSN-A",
    header: dict[str, Any] | None = None,
    **fields: Any,
) -> InstanceRecord:
    sop = uid(9, n)
    data = {"00080018": {"vr": "UI", "Value": [sop]}, **(header or {})}
    return InstanceRecord(
        patient_pseudonym=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        blob_digest=digest(sop),
        blob_size=10,
        header_json=json.dumps(data),
        **fields,
    )


def _load(catalog: Catalog, *instances: InstanceRecord) -> None:
    batch = catalog.start_batch(role="central", sources=["test"], profile=None, key_id=None)
    catalog.record_items(batch, [stored(i) for i in instances])


class TestMapping:
    def test_series_of_one_study_share_a_procedure(self, catalog: Catalog) -> None:
        day = datetime.date(2021, 3, 4)
        _load(
            catalog,
            _instance(1, series=uid(1, 1), study=uid(1), modality="MR", study_date=day),
            _instance(2, series=uid(1, 2), study=uid(1), modality="MR", study_date=day),
        )
        assert sync_catalog_imaging(catalog, [uid(1, 1)]).series == 1
        _load(catalog, _instance(3, series=uid(1, 3), study=uid(1), modality="OT"))
        assert sync_catalog_imaging(catalog).series == 2
        rows = _rows(
            catalog,
            "SELECT image_series_uid, procedure_occurrence_id, modality_concept_id,"
            " image_occurrence_date FROM image_occurrence ORDER BY image_series_uid",
        )
        assert len({row[1] for row in rows}) == 1
        assert [row[2] for row in rows] == [MR, MR, 2128009246]
        assert {_as_date(row[3]) for row in rows} == {day}
        assert _rows(catalog, "SELECT count(*) FROM procedure_occurrence")[0][0] == 1

    def test_dates_fall_back_to_acquisition_then_to_cataloguing(self, catalog: Catalog) -> None:
        acquired = {"00080022": {"vr": "DA", "Value": ["20190102"]}}
        _load(
            catalog,
            _instance(1, series=uid(2, 1), study=uid(2), modality="CT", header=acquired),
            _instance(2, series=uid(3, 1), study=uid(3), modality="XX"),
        )
        sync_catalog_imaging(catalog)
        rows = dict(
            _rows(catalog, "SELECT image_series_uid, image_occurrence_date FROM image_occurrence")
        )
        assert _as_date(rows[uid(2, 1)]) == datetime.date(2019, 1, 2)
        today = datetime.datetime.now(datetime.UTC).date()
        assert abs((_as_date(rows[uid(3, 1)]) - today).days) <= 1
        modality = _rows(
            catalog,
            "SELECT modality_concept_id FROM image_occurrence WHERE image_series_uid = :s",
            s=uid(3, 1),
        )
        assert modality == [(0,)]

    def test_imaging_fills_only_unknown_demographics(self, catalog: Catalog) -> None:
        with catalog._writing("test") as conn:
            known = ensure_persons(conn, ["PSN-K"])["PSN-K"]
            set_demographics(
                conn, known, {"gender_concept_id": 8532, "year_of_birth": 1960}, only_unknown=False
            )
        aged = {"00101010": {"vr": "AS", "Value": ["057Y"]}}
        _load(
            catalog,
            _instance(
                1,
                series=uid(4, 1),
                study=uid(4),
                patient="PSN-K",
                patient_sex="M",
                patient_birth_date=datetime.date(1950, 1, 1),
            ),
            _instance(
                2,
                series=uid(5, 1),
                study=uid(5),
                patient="PSN-U",
                patient_sex="M",
                study_date=datetime.date(2020, 5, 1),
                header=aged,
            ),
        )
        with catalog._writing("test") as conn:
            assert sync_imaging(conn).series == 2
            assert sync_imaging(conn).series == 0
        persons = {
            row[0]: row[1:]
            for row in _rows(
                catalog, "SELECT person_source_value, gender_concept_id, year_of_birth FROM person"
            )
        }
        assert persons == {"PSN-K": (8532, 1960), "PSN-U": (8507, 1963)}

    def test_contrast_agent_is_recorded_as_presence_only(self, catalog: Catalog) -> None:
        agent = {"00180010": {"vr": "LO", "Value": ["Gadovist 7.5 ml Dr Smith"]}}
        _load(catalog, _instance(1, series=uid(6, 1), study=uid(6), header=agent))
        sync_catalog_imaging(catalog)
        rows = _rows(
            catalog,
            "SELECT observation_source_value, value_as_string, value_source_value FROM observation",
        )
        assert rows == [("ContrastBolusAgent", "YES", "YES")]


def test_header_elements_decodes_only_the_wanted_elements() -> None:
    header = json.dumps(
        {
            "00080060": {"vr": "CS", "Value": ["MR"]},
            "00180050": {"vr": "DS", "Value": [1.5]},
            "00181314": {"vr": "DS", "Value": ["90"]},
            "52009229": {
                "vr": "SQ",
                "Value": [{"00180087": {"vr": "DS", "Value": [3.0]}}],
            },
        },
        indent=1,
    )
    found = header_elements(header, ["00180050", "00181314", "00180087", "00180080"])
    assert found == {
        "00180050": {"vr": "DS", "Value": [1.5]},
        "00181314": {"vr": "DS", "Value": ["90"]},
        "00180087": {"vr": "DS", "Value": [3.0]},  # from the functional groups
    }
    assert header_elements('{"00180050": {"vr": "DS", "Val', ["00180050"]) == {}
    assert header_elements("", ["00180050"]) == {}
