"""The export API: STOW-RS fills OMOP on its own, and curators read the EUCAIM and MIABIS views."""

from __future__ import annotations

import time
from typing import Any

import pytest

from biobank.access import AccessService
from biobank.catalog.access import AccessEntry
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.api.conftest import Served, dicom_bytes, stow_body
from tests.catalog.factories import execute


@pytest.fixture(scope="module")
def stowed(served: Served) -> dict[str, str]:
    """One patient's CT and MR series stored over STOW-RS (the ingest service)."""
    phi = make_patient_phi(4, seed=17)
    datasets = make_ct_series(phi, 2, 16, 16) + make_mr_series(phi, 2, 16, 16)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    with served.client("up1") as client:
        response = client.post(
            "/dicomweb/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
    assert response.status_code == 200, response.text
    with served.node.open_catalog() as catalog:
        rows = execute(catalog, "SELECT series_instance_uid, modality FROM series")
    return {modality: uid for uid, modality in rows}


def _entries(served: Served, action: str) -> list[AccessEntry]:
    """Access log entries of ``action`` (the log is written asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        with served.node.open_catalog() as catalog:
            entries = AccessService(catalog).access_entries(limit=1000)
        found = [e for e in entries if e.action == action]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_stow_maps_the_series_to_omop_at_once(served: Served, stowed: dict[str, str]) -> None:
    with served.node.open_catalog() as catalog:
        rows = execute(
            catalog, "SELECT image_series_uid, modality_concept_id FROM image_occurrence"
        )
    assert dict(rows) == {stowed["CT"]: 2128009190, stowed["MR"]: 2128009230}


@pytest.mark.parametrize("user", ["cur", "admin"])
def test_curators_and_admins_get_the_eucaim_view(
    served: Served, stowed: dict[str, str], user: str
) -> None:
    with served.client(user) as client:
        response = client.get("/api/v1/exports/eucaim")
    assert response.status_code == 200, response.text
    (patient,) = response.json()
    studies: list[dict[str, Any]] = patient["imageStudy"]
    assert {s["imageModality"]["id"] for s in studies} == {"DCM:CT", "DCM:MR"}
    assert patient["disease"] == [] and "label" in patient["sex"]
    entries = _entries(served, "export.eucaim")
    assert entries and all(e.detail == "patients=1" for e in entries if e.status == 200)


@pytest.mark.parametrize(("user", "status"), [("res", 403), ("up1", 403), (None, 401)])
def test_others_may_not_export(
    served: Served, stowed: dict[str, str], user: str | None, status: int
) -> None:
    with served.client(user) as client:
        assert client.get("/api/v1/exports/eucaim").status_code == status
        assert client.get("/api/v1/exports/miabis").status_code == status


def test_the_miabis_descriptor(served: Served, stowed: dict[str, str]) -> None:
    with served.client("cur") as client:
        response = client.get("/api/v1/exports/miabis", params={"id": "bb:x", "name": "Demo"})
        default = client.get("/api/v1/exports/miabis")
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["ID"] == "bb:x" and found["Name"] == "Demo"
    assert found["Total number of subjects"] == 1
    assert found["Dataset type"] == ["Body (Radiological) image"]
    assert found["extensions"]["modalities"] == {"CT": 1, "MR": 1}
    assert default.status_code == 200
    assert default.json()["ID"] == served.node.config.node_id
    assert _entries(served, "export.miabis")
