"""The curation API (/api/v1) against a real server on loopback: roles, review, sheets, jobs."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from PIL import Image

from biobank.access import AccessService
from biobank.catalog.access import AccessEntry
from biobank.catalog.curation import CurationRecords, Decision
from biobank.catalog.jobs import JobRecords, JobState
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.api.conftest import Served, dicom_bytes, stow_body

CT_SLICES = 6
MR_SLICES = 3


@pytest.fixture(scope="module")
def series(served: Served) -> dict[str, str]:
    """A CT and an MR series stored over STOW-RS, both quarantined by the rules' QC."""
    phi = make_patient_phi(11, seed=5)
    datasets = make_ct_series(phi, CT_SLICES, 32, 32) + make_mr_series(phi, MR_SLICES, 32, 32)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    accept = {"Accept": "application/dicom+json"}
    with served.client("cur") as client:
        response = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type, **accept}
        )
        assert response.status_code == 200, response.text
        found = client.get("/dicomweb/series", headers=accept).json()
    uids = {match["00080060"]["Value"][0]: match["0020000E"]["Value"][0] for match in found}
    with served.node.open_catalog() as catalog:
        records = CurationRecords(catalog)
        for uid in uids.values():
            records.record_qc(uid, {"snr": 3.0}, Decision.QUARANTINE, ["low SNR"])
    return {"ct": uids["CT"], "mr": uids["MR"]}


def _queue(served: Served, user: str = "cur") -> list[str]:
    with served.client(user) as client:
        response = client.get("/api/v1/curation/queue", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [record["series_instance_uid"] for record in response.json()]


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


class TestRoles:
    def test_curators_and_admins_see_the_queue(
        self, served: Served, series: dict[str, str]
    ) -> None:
        assert series["mr"] in _queue(served, "cur")
        assert series["mr"] in _queue(served, "admin")

    @pytest.mark.parametrize("user", ["up1", "res"])
    def test_other_roles_are_refused_with_the_reason(
        self, served: Served, series: dict[str, str], user: str
    ) -> None:
        with served.client(user) as client:
            for method, path in (
                ("GET", "/api/v1/curation/queue"),
                ("GET", "/api/v1/curation/facets"),
                ("GET", f"/api/v1/curation/series/{series['mr']}"),
                ("GET", f"/api/v1/curation/series/{series['mr']}/sheet.png"),
                ("GET", "/api/v1/jobs"),
            ):
                response = client.request(method, path)
                assert response.status_code == 403, (path, response.text)
                assert "curator and admin roles" in response.json()["error"]
            response = client.post(
                f"/api/v1/curation/series/{series['mr']}/decision",
                json={"decision": "approve", "comment": "looks fine"},
            )
            assert response.status_code == 403
        with served.node.open_catalog() as catalog:
            assert CurationRecords(catalog).get(series["mr"]).decision is Decision.QUARANTINE

    def test_no_token_is_401(self, served: Served) -> None:
        with served.client(None) as client:
            response = client.get("/api/v1/curation/queue")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


class TestReview:
    def test_the_queue_filters_by_decision_and_pages(
        self, served: Served, series: dict[str, str]
    ) -> None:
        with served.client("cur") as client:
            excluded = client.get("/api/v1/curation/queue", params={"decision": "exclude"})
            first = client.get("/api/v1/curation/queue", params={"limit": 1})
            bad = client.get("/api/v1/curation/queue", params={"decision": "maybe"})
            too_many = client.get("/api/v1/curation/queue", params={"limit": 100_000})
        assert excluded.status_code == 200
        assert series["mr"] not in [r["series_instance_uid"] for r in excluded.json()]
        assert len(first.json()) == 1
        assert first.json()[0]["decision"] == "quarantine"
        assert first.json()[0]["decision_reasons"] == ["low SNR"]
        assert bad.status_code == 400 and "decision" in bad.json()["error"]
        assert too_many.status_code == 400 and "limit" in too_many.json()["error"]

    def test_a_series_comes_with_its_history(self, served: Served, series: dict[str, str]) -> None:
        with served.client("cur") as client:
            response = client.get(f"/api/v1/curation/series/{series['mr']}")
        assert response.status_code == 200
        record = response.json()
        assert record["series_instance_uid"] == series["mr"]
        assert record["qc"] == {"snr": 3.0}
        assert [event["action"] for event in record["history"]][-1] == "qc"
        assert record["history"][-1]["actor"] == "rules"

    def test_a_curator_decides_with_a_comment(self, served: Served, series: dict[str, str]) -> None:
        ct = series["ct"]
        assert ct in _queue(served)
        with served.client("cur") as client:
            response = client.post(
                f"/api/v1/curation/series/{ct}/decision",
                json={"decision": "approve", "comment": "noise acceptable for this protocol"},
            )
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["decision"] == "approve"
        assert record["decision_source"] == "curator"
        assert record["decided_by"] == "cur"
        assert record["history"][-1]["actor"] == "cur"
        assert record["history"][-1]["detail"] == {"comment": "noise acceptable for this protocol"}
        assert ct not in _queue(served)
        entries = _entries(served, lambda e: e.action == "curation.decide" and e.resource == ct)
        assert entries and entries[0].username == "cur" and entries[0].status == 200
        assert "noise" not in entries[0].detail  # comments stay in the history, not the log

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            ({"decision": "approve"}, "comment"),
            ({"decision": "approve", "comment": "   "}, "comment"),
            ({"decision": "pending", "comment": "why not"}, "decision"),
            ({"decision": "approve", "comment": "ok", "curator": "someone"}, "curator"),
        ],
    )
    def test_a_wrong_body_is_400_naming_the_field(
        self, served: Served, series: dict[str, str], body: dict[str, Any], named: str
    ) -> None:
        with served.client("cur") as client:
            response = client.post(f"/api/v1/curation/series/{series['mr']}/decision", json=body)
        assert response.status_code == 400, response.text
        assert f"body.{named}" in response.json()["error"]

    def test_an_unknown_series_is_404_and_logged(self, served: Served) -> None:
        unknown = "1.2.826.0.1.3680043.10.1234.999"
        with served.client("cur") as client:
            decided = client.post(
                f"/api/v1/curation/series/{unknown}/decision",
                json={"decision": "exclude", "comment": "wrong patient"},
            )
            read = client.get(f"/api/v1/curation/series/{unknown}")
            sheet = client.get(f"/api/v1/curation/series/{unknown}/sheet.png")
        assert decided.status_code == 404
        assert read.status_code == 404
        assert sheet.status_code == 404
        entries = _entries(served, lambda e: e.resource == unknown)
        assert {e.action for e in entries} >= {"curation.decide", "curation.series"}
        assert {e.status for e in entries} == {404}

    def test_a_curator_relabels(self, served: Served, series: dict[str, str]) -> None:
        mr = series["mr"]
        with served.client("cur") as client:
            response = client.post(
                f"/api/v1/curation/series/{mr}/label",
                json={"label": "T2W", "comment": "TR/TE say T2"},
            )
            too_long = client.post(
                f"/api/v1/curation/series/{mr}/label",
                json={"label": "X" * 17, "comment": "too long"},
            )
        assert response.status_code == 200, response.text
        assert response.json()["label"] == "T2W"
        event = response.json()["history"][-1]
        assert (event["actor"], event["action"], event["detail"]["to"]) == ("cur", "relabel", "T2W")
        assert too_long.status_code == 400 and "body.label" in too_long.json()["error"]
        assert _entries(served, lambda e: e.action == "curation.relabel" and e.resource == mr)

    def test_facets_count_by_decision_and_label(
        self, served: Served, series: dict[str, str]
    ) -> None:
        with served.node.open_catalog() as catalog:
            expected = CurationRecords(catalog).facets()
        with served.client("admin") as client:
            response = client.get("/api/v1/curation/facets")
        assert response.status_code == 200
        facets = response.json()
        assert facets == expected
        assert set(facets) == {"decision", "label", "manufacturer"}
        assert facets["decision"].get("quarantine", 0) >= 1


class TestSheet:
    def test_the_sheet_is_a_png_of_every_slice(
        self, served: Served, series: dict[str, str]
    ) -> None:
        with served.client("cur") as client:
            response = client.get(
                f"/api/v1/curation/series/{series['ct']}/sheet.png", params={"tile": 32}
            )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        columns, rows = 3, 2  # ceil(sqrt(6)) columns, 1-pixel separators
        assert image.format == "PNG"
        assert image.size == (columns * 33 + 1, rows * 33 + 1)
        entries = _entries(
            served, lambda e: e.action == "curation.sheet" and e.resource == series["ct"]
        )
        assert entries and f"images={CT_SLICES}" in entries[0].detail

    def test_columns_and_tile_are_checked(self, served: Served, series: dict[str, str]) -> None:
        url = f"/api/v1/curation/series/{series['mr']}/sheet.png"
        with served.client("cur") as client:
            one_row = client.get(url, params={"tile": 16, "columns": MR_SLICES})
            tiny = client.get(url, params={"tile": 8})
        assert Image.open(io.BytesIO(one_row.content)).size == (MR_SLICES * 17 + 1, 18)
        assert tiny.status_code == 400 and "tile" in tiny.json()["error"]


class TestJobs:
    @pytest.fixture
    def failed_job(self, served: Served) -> int:
        with served.node.open_catalog() as catalog:
            jobs = JobRecords(catalog)
            jobs.enqueue("api-test", ["1.2.3.4"], max_attempts=1)
            (job,) = jobs.claim("test-worker", kinds=["api-test"])
            assert jobs.fail(job.id, "it broke") is JobState.FAILED
        return job.id

    def test_curators_list_jobs(self, served: Served, failed_job: int) -> None:
        with served.client("cur") as client:
            response = client.get("/api/v1/jobs", params={"state": "failed", "kind": "api-test"})
            bad = client.get("/api/v1/jobs", params={"state": "stuck"})
        assert response.status_code == 200
        answer = response.json()
        assert set(answer["counts"]) == {state.value for state in JobState}
        assert answer["counts"]["failed"] >= 1
        assert [job["id"] for job in answer["jobs"]] == [failed_job]
        assert answer["jobs"][0]["error"] == "it broke"
        assert bad.status_code == 400 and "state" in bad.json()["error"]

    def test_only_admins_retry(self, served: Served, failed_job: int) -> None:
        with served.client("cur") as client:
            refused = client.post("/api/v1/jobs/retry", json={"ids": [failed_job]})
        assert refused.status_code == 403
        with served.client("admin") as client:
            retried = client.post("/api/v1/jobs/retry", json={"ids": [failed_job]})
            again = client.post("/api/v1/jobs/retry", json={"ids": [failed_job]})
            empty = client.post("/api/v1/jobs/retry", json={"ids": []})
        assert retried.status_code == 200 and retried.json() == {"retried": 1}
        assert again.json() == {"retried": 0}  # no longer failed
        assert empty.status_code == 400 and "body.ids" in empty.json()["error"]
        with served.node.open_catalog() as catalog:
            assert JobRecords(catalog).get(failed_job).state is JobState.PENDING
        assert _entries(
            served, lambda e: e.action == "curation.jobs.retry" and e.username == "admin"
        )
