"""The EUCAIM search view and the MIABIS collection descriptor, checked against their schemas."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from biobank.catalog import Catalog
from biobank.datasets.exports import eucaim_collection, eucaim_view, miabis_collection
from biobank.errors import InvalidInput
from tests.catalog.conftest import BACKENDS, new_database_url
from tests.catalog.factories import uid
from tests.catalog.test_omop_export import populate

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated, empty catalogue on each backend (a new database per test)."""
    for url in new_database_url(request.param, tmp_path):
        with Catalog.open(url) as opened:
            yield opened


def _eucaim_fields(entity: str, *, required_only: bool = True) -> set[str]:
    with (DATA / "eucaim_federated_query_fields.csv").open(encoding="utf-8") as handle:
        return {
            row["field"]
            for row in csv.DictReader(handle)
            if row["entity"] == entity and (row["required"] == "True" or not required_only)
        }


def _miabis_collection_names() -> list[str]:
    with (DATA / "miabis_attributes.csv").open(encoding="utf-8") as handle:
        return [
            row["name"]
            for row in csv.DictReader(handle)
            if row["code"].startswith("MIABIS-COLLECTION-")
        ]


def _by_id(view: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {patient["patientId"]: patient for patient in view}


class TestEucaim:
    def test_every_required_field_is_present(self, catalog: Catalog) -> None:
        populate(catalog)
        view = eucaim_view(catalog)
        assert [p["patientId"] for p in view] == ["PSN-A", "PSN-B", "PSN-C"]
        diseases = tumors = studies = 0
        for patient in view:
            assert _eucaim_fields("patient") <= set(patient)
            for disease in patient["disease"]:
                assert _eucaim_fields("disease") <= set(disease)
                assert set(disease) <= _eucaim_fields("disease", required_only=False)
                diseases += 1
                if "tumorMetadata" in disease:
                    tumor = disease["tumorMetadata"]
                    assert _eucaim_fields("tumor") <= set(tumor)
                    assert set(tumor) <= _eucaim_fields("tumor", required_only=False)
                    tumors += 1
            for study in patient["imageStudy"]:
                assert _eucaim_fields("image_study") == set(study)
                studies += 1
        assert (diseases, tumors, studies) == (2, 2, 3)

    def test_values_come_from_omop_and_the_catalogue(self, catalog: Catalog) -> None:
        populate(catalog)
        patients = _by_id(eucaim_view(catalog))
        a = patients["PSN-A"]
        assert a["sex"] == {"id": "SNOMED:248153007", "label": "Male"}
        (disease,) = a["disease"]
        assert disease["diagnosis"]["id"] == "ICD10:C61"
        assert disease["ageAtDiagnosis"] == {"iso8601duration": "P66Y"}
        assert disease["yearOfDiagnosis"] == 2021
        assert disease["dateOfFirstTreatment"] == "2021-06-01"
        tumor = disease["tumorMetadata"]
        assert tumor["PSA"] == 7.5
        assert tumor["histologicGradeISUP"]["id"] == "SNOMED:860743003"
        assert tumor["tumorPIRADSAssesment"] == {"id": "prostate.pirads:4", "label": "4"}
        mr, ct = a["imageStudy"]
        assert mr["imageStudyId"] == uid(1) and ct["imageStudyId"] == uid(2)
        assert mr["imageModality"]["id"] == "DCM:MR" and ct["imageModality"]["id"] == "DCM:CT"
        assert mr["imageBodyPart"] == {"id": "SNOMED:41216001", "label": "Prostate"}
        assert mr["imageManufacturer"]["label"] == "SIEMENS"
        assert mr["dateOfImageAcquisition"] == "2021-03-01"
        assert mr["disease"]["diseaseId"] == disease["diseaseId"]
        b, c = patients["PSN-B"], patients["PSN-C"]
        assert b["sex"]["label"] == "Female" and b["disease"] == []
        assert b["imageStudy"][0]["disease"] is None
        assert b["imageStudy"][0]["imageModality"]["id"] == "DCM:MG"
        assert c["imageStudy"] == []
        c_tumor = c["disease"][0]["tumorMetadata"]
        assert c_tumor["KI67"] == 20.0 and c_tumor["ER"]["label"] == "positive"

    def test_an_empty_node_has_an_empty_view(self, catalog: Catalog) -> None:
        assert eucaim_view(catalog) == []

    def test_the_collection_object_has_the_required_fields(self, catalog: Catalog) -> None:
        populate(catalog)
        found = eucaim_collection(catalog, collection_id="c1", name="N", description="D")
        assert _eucaim_fields("collection") == set(found)
        assert (found["subjectsCount"], found["studiesCount"]) == (3, 3)
        assert found["modalities"] == ["CT", "MG", "MR"]
        assert found["gender"] == ["Male", "Female"]


class TestMiabis:
    def test_attributes_are_the_miabis_collection_attributes(self, catalog: Catalog) -> None:
        populate(catalog)
        found = miabis_collection(
            catalog, collection_id="bb:c1", name="Prostate MR", description="Test collection"
        )
        names = _miabis_collection_names()
        assert len(names) == 23
        assert set(found) - {"extensions"} == set(names)
        assert found["ID"] == "bb:c1" and found["Name"] == "Prostate MR"
        assert found["Sex"] == ["Male", "Female"]
        assert found["Dataset type"] == ["Body (Radiological) image", "Clinical dataset"]
        assert found["Sample type"] == "Digital sample"
        assert found["Total number of subjects"] == 3
        assert (found["Age Low"], found["Age High"]) == (49, 66)
        assert found["Age Low Unit"] == found["Age High Unit"] == "Years"
        codes = {(d["system"], d["code"]) for d in found["Disease"]}
        assert codes == {("ICD-10", "C61"), ("SNOMED CT", "254837009")}
        assert found["extensions"]["modalities"] == {"CT": 1, "MG": 1, "MR": 2}
        assert found["extensions"]["numberOfImageStudies"] == 3

    def test_allowed_values_are_miabis_values(self, catalog: Catalog) -> None:
        populate(catalog)
        found = miabis_collection(catalog, collection_id="c", name="n", description="d")
        with (DATA / "miabis_attributes.csv").open(encoding="utf-8") as handle:
            allowed = {
                row["name"]: row["allowed_values"]
                for row in csv.DictReader(handle)
                if row["code"].startswith("MIABIS-COLLECTION-")
            }
        for name in ("Sex", "Dataset type", "Collection design", "Inclusion criteria"):
            for value in found[name]:
                assert value in allowed[name], (name, value)
        for name in ("Sample type", "Sample collection setting", "Collection status"):
            assert found[name] in allowed[name], name

    def test_required_text_is_required(self, catalog: Catalog) -> None:
        with pytest.raises(InvalidInput, match="name is required"):
            miabis_collection(catalog, collection_id="c", name=" ", description="d")
