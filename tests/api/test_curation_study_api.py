"""The curation API's studies and facet search: /api/v1/curation/studies, /curation/series."""

from __future__ import annotations

import time
from typing import Any

import pytest

from biobank.access import AccessService
from biobank.catalog.access import AccessEntry
from biobank.catalog.curation import CurationFilter, CurationRecords, Decision
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.api.conftest import Served, dicom_bytes, stow_body


@pytest.fixture(scope="module")
def stored(served: Served) -> dict[str, Any]:
    """One patient's CT and MR series, stored over STOW-RS; their study and series UIDs."""
    phi = make_patient_phi(21, seed=7)
    datasets = make_ct_series(phi, 4, 32, 32) + make_mr_series(phi, 3, 32, 32)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    accept = {"Accept": "application/dicom+json"}
    with served.client("cur") as client:
        response = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type, **accept}
        )
        assert response.status_code == 200, response.text
        found = client.get("/dicomweb/series", headers=accept).json()
    series = {match["00080060"]["Value"][0]: match["0020000E"]["Value"][0] for match in found}
    studies = {match["0020000D"]["Value"][0] for match in found}
    with served.node.open_catalog() as catalog:
        records = CurationRecords(catalog)
        records.record_classification(series["MR"], {"label": "T2W", "needs_review": False})
        records.record_qc(series["MR"], {"snr_dietrich": 3.0}, Decision.QUARANTINE, ["low SNR"])
    return {"series": series, "studies": sorted(studies)}


def _entries(served: Served, wanted: Any) -> list[AccessEntry]:
    """Access log entries matching ``wanted``, waiting for the log's writer (asynchronous)."""
    deadline = time.monotonic() + 10
    while True:
        with served.node.open_catalog() as catalog:
            entries = AccessService(catalog).access_entries(limit=1000)
        found = [e for e in entries if wanted(e)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


class TestSearch:
    def test_series_are_searched_by_facet_and_paged(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        mr = stored["series"]["MR"]
        with served.client("cur") as client:
            t2w = client.get("/api/v1/curation/series", params={"label": "t2w"})
            page = client.get("/api/v1/curation/series", params={"limit": 1, "offset": 0})
            none = client.get(
                "/api/v1/curation/series", params={"label": "T2W", "manufacturer": "ACME"}
            )
            bad = client.get("/api/v1/curation/series", params={"decision": "maybe"})
            review = client.get("/api/v1/curation/series", params={"needs_review": "yes"})
        assert t2w.status_code == 200, t2w.text
        answer = t2w.json()
        assert answer["filters"] == {"label": "t2w"}
        assert [r["series_instance_uid"] for r in answer["records"]] == [mr]
        assert answer["total"] == 1 and answer["records"][0]["label"] == "T2W"
        assert page.json()["limit"] == 1 and len(page.json()["records"]) == 1
        assert page.json()["total"] >= 1
        assert none.json() == {
            "total": 0, "limit": 100, "offset": 0,
            "filters": {"label": "T2W", "manufacturer": "ACME"}, "records": [],
        }  # fmt: skip
        assert bad.status_code == 400 and "decision" in bad.json()["error"]
        assert review.status_code == 200  # "yes" is a boolean to FastAPI
        vendor = answer["records"][0]["manufacturer"]
        with served.client("cur") as client:
            by_vendor = client.get(
                "/api/v1/curation/series", params={"manufacturer": vendor.lower(), "label": "T2W"}
            )
        assert [r["series_instance_uid"] for r in by_vendor.json()["records"]] == [mr]
        entries = _entries(served, lambda e: e.action == "curation.search")
        assert entries and all(e.username == "cur" for e in entries)

    def test_facets_count_by_manufacturer_too_and_filter(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        with served.node.open_catalog() as catalog:
            records = CurationRecords(catalog)
            expected = records.facets()
            t2w = records.facets(CurationFilter(label="T2W"))
        with served.client("cur") as client:
            every = client.get("/api/v1/curation/facets")
            narrowed = client.get("/api/v1/curation/facets", params={"label": "T2W"})
        assert every.json() == expected
        assert set(expected) == {"decision", "label", "manufacturer"}
        assert narrowed.json() == t2w and t2w["label"] == {"T2W": 1}

    def test_the_queue_takes_the_facet_filters(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        mr = stored["series"]["MR"]
        with served.client("cur") as client:
            queued = client.get("/api/v1/curation/queue", params={"label": "T2W"})
            other = client.get("/api/v1/curation/queue", params={"label": "FLAIR"})
        assert mr in [r["series_instance_uid"] for r in queued.json()]
        assert other.json() == []


class TestStudies:
    def test_a_curator_reads_and_decides_a_study(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        study = stored["studies"][0]
        with served.client("cur") as client:
            before = client.get(f"/api/v1/curation/studies/{study}")
            decided = client.post(
                f"/api/v1/curation/studies/{study}/decision",
                json={"decision": "approve", "comment": "reviewed the whole study"},
            )
        assert before.status_code == 200, before.text
        assert before.json()["study_instance_uid"] == study
        assert decided.status_code == 200, decided.text
        state = decided.json()
        assert state["state"] == "approve" and state["uncurated"] == []
        assert state["series"] and {s["decided_by"] for s in state["series"]} == {"cur"}
        assert state["counts"]["approve"] == len(state["series"])
        with served.node.open_catalog() as catalog:
            records = CurationRecords(catalog)
            for series in state["series"]:
                last = records.history(series["series_instance_uid"])[-1]
                assert last.detail == {"comment": "reviewed the whole study", "study": study}
        entries = _entries(
            served, lambda e: e.action == "curation.decide_study" and e.resource == study
        )
        assert entries and entries[0].status == 200
        assert "reviewed" not in entries[0].detail  # the comment stays out of the log
        assert f"series={len(state['series'])}" in entries[0].detail

    def test_wrong_bodies_unknown_studies_and_other_roles(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        study = stored["studies"][0]
        unknown = "1.2.826.0.1.3680043.10.1234.998"
        with served.client("cur") as client:
            no_comment = client.post(
                f"/api/v1/curation/studies/{study}/decision", json={"decision": "exclude"}
            )
            missing = client.get(f"/api/v1/curation/studies/{unknown}")
            missing_decision = client.post(
                f"/api/v1/curation/studies/{unknown}/decision",
                json={"decision": "exclude", "comment": "x"},
            )
        assert no_comment.status_code == 400 and "body.comment" in no_comment.json()["error"]
        assert missing.status_code == 404 and missing_decision.status_code == 404
        assert {e.status for e in _entries(served, lambda e: e.resource == unknown)} == {404}
        for user in ("res", "up1"):
            with served.client(user) as client:
                read = client.get(f"/api/v1/curation/studies/{study}")
                decide = client.post(
                    f"/api/v1/curation/studies/{study}/decision",
                    json={"decision": "exclude", "comment": "no"},
                )
                search = client.get("/api/v1/curation/series")
            assert (read.status_code, decide.status_code, search.status_code) == (403, 403, 403)
