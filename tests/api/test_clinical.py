"""The clinical API (/api/v1/clinical) against a real server: import codes, records, curation,
data queries, roles and the access log."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from biobank.access import AccessService
from biobank.api import clinical as clinical_api
from biobank.catalog.access import AccessEntry
from tests.api.conftest import Served

ISSUER = "API-TEST-HOSPITAL"
PSA = [4.2, 5.1, 6.3, 7.0, 8.4, 5.5, 6.1, 4.8, 9.2, 7.7, 5.9, 480.0]


def prostate(n: int, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "patient_id": f"API{n:04d}",
        "issuer_of_patient_id": ISSUER,
        "sex": "male",
        "birth_date": "1955-04-02",
        "diagnosis_date": "2022-03-10",
        "histology": "acinar_adenocarcinoma",
        "psa": PSA[n % len(PSA)],
        "psa_date": "2022-02-01",
        "treatment_type": "watchful_waiting",
    }
    record.update(values)
    return {key: value for key, value in record.items() if value is not None}


def post(served: Served, user: str, form: str, body: Any, **kwargs: Any) -> httpx.Response:
    with served.client(user) as client:
        if "content" in kwargs:
            return client.post(f"/api/v1/clinical/{form}", **kwargs)
        return client.post(f"/api/v1/clinical/{form}", json=body, **kwargs)


@pytest.fixture(scope="module")
def imported(served: Served) -> dict[str, Any]:
    """Twelve prostate records (the last with an outlying PSA), imported by up1."""
    response = post(served, "up1", "prostate", {"records": [prostate(n) for n in range(12)]})
    assert response.status_code == 200, response.text
    report = response.json()
    ids = [result["record_id"] for result in report["results"]]
    return {"report": report, "ids": ids}


def entries(served: Served, action: str, status: int) -> list[AccessEntry]:
    """Access log entries of ``action`` once one has ``status`` (the writer is asynchronous)."""
    deadline = time.monotonic() + 10
    while True:
        with served.node.open_catalog() as catalog:
            found = [
                e for e in AccessService(catalog).access_entries(limit=1000) if e.action == action
            ]
        if any(e.status == status for e in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_forms_are_listed_and_shown(served: Served) -> None:
    with served.client("res") as client:
        listed = client.get("/api/v1/clinical/forms")
        shown = client.get("/api/v1/clinical/forms/prostate")
        missing = client.get("/api/v1/clinical/forms/lung")
    assert listed.status_code == 200
    names = [form["name"] for form in listed.json()]
    assert {"prostate", "prostate_followup", "breast"} <= set(names)
    form = shown.json()
    psa = next(v for v in form["variables"] if v["name"] == "psa")
    assert (psa["type"], psa["unit"], psa["maximum"]) == ("number", "ng/mL", 10000)
    assert "source" not in form and form["rules"]
    assert missing.status_code == 404 and "known forms: breast" in missing.json()["error"]


def test_import_stores_valid_records(served: Served, imported: dict[str, Any]) -> None:
    report = imported["report"]
    assert (report["received"], report["created"], report["rejected"]) == (12, 12, 0)
    assert report["issues"] == []
    first = report["results"][0]
    assert first["outcome"] == "created" and first["patient_pseudonym"].startswith("P")
    again = post(served, "up1", "prostate", prostate(0))  # one object, not a list
    assert again.status_code == 200 and again.json()["unchanged"] == 1


def test_import_reports_every_problem_with_422(served: Served) -> None:
    bad = prostate(40, psa="lots", pirads=6, treatment_type="radical_prostatectomy")
    response = post(served, "up1", "prostate", [prostate(41), bad])
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["created"], body["rejected"]) == (1, 1)
    assert [r["outcome"] for r in body["results"]] == ["created", "rejected"]
    problems = {(i["record"], i["field"], i["rule"]) for i in body["issues"]}
    assert (1, "psa", "type") in problems
    assert (1, "pirads", "range") in problems
    assert (1, "treatment_start_date", "required_when") in problems
    psa = next(i for i in body["issues"] if i["field"] == "psa")
    assert psa["value"] == "lots" and psa["message"] and psa["hint"]
    detail = entries(served, "clinical.import", 422)
    assert any(e.status == 422 and "rejected=1" in (e.detail or "") for e in detail)
    assert not any("lots" in (e.detail or "") for e in detail)  # values never logged


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "words"),
    [
        (b"a,b\n1,2", {"Content-Type": "text/csv"}, 415, "application/json"),
        (b"{not json", JSON, 400, "not valid JSON"),
        (b"[1, 2]", JSON, 400, "not an object"),
        (b"[]", JSON, 400, "no record"),
    ],
)
def test_import_refuses_what_is_not_records(
    served: Served, content: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    response = post(served, "up1", "prostate", None, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_import_codes_for_form_size_and_roles(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = post(served, "up1", "lung", prostate(50))
    assert unknown.status_code == 404 and "prostate" in unknown.json()["error"]
    for user in ("res", "cur"):
        refused = post(served, user, "prostate", prostate(51))
        assert refused.status_code == 403, user
        assert "uploader" in refused.json()["error"]
    assert post(served, "admin", "prostate", prostate(52)).status_code == 200
    monkeypatch.setattr(clinical_api, "MAX_IMPORT_BYTES", 200)
    big = post(served, "up1", "prostate", [prostate(n) for n in range(53, 60)])
    assert big.status_code == 413 and "several requests" in big.json()["error"]


def test_records_with_history_after_a_correction(served: Served, imported: dict[str, Any]) -> None:
    record_id = imported["ids"][3]
    with served.client("cur") as client:
        listed = client.get("/api/v1/clinical/records", params={"form": "prostate", "limit": 5})
        assert listed.status_code == 200
        assert listed.json()["total"] >= 12 and len(listed.json()["records"]) == 5
        site = client.get("/api/v1/clinical/records", params={"site": "elsewhere"}).json()
        assert site["total"] == 0
    corrected = post(served, "up1", "prostate", prostate(3, psa=7.5))
    assert corrected.status_code == 200 and corrected.json()["updated"] == 1
    with served.client("up2") as client:
        record = client.get(f"/api/v1/clinical/records/{record_id}").json()
    assert record["version"] == 2 and record["values"]["psa"] == 7.5
    assert "patient_id" not in record["values"]
    assert [v["version"] for v in record["history"]] == [1, 2]
    assert record["history"][1]["changed_fields"] == ["psa"]
    with served.client("res") as client:
        assert client.get(f"/api/v1/clinical/records/{record_id}").status_code == 403
    with served.client("cur") as client:
        assert client.get("/api/v1/clinical/records/999999").status_code == 404


def test_summary_and_outliers_for_curators(served: Served, imported: dict[str, Any]) -> None:
    with served.client("cur") as client:
        summary = client.get("/api/v1/clinical/summary/prostate").json()
        found = client.get("/api/v1/clinical/outliers/prostate", params={"field": "psa"}).json()
        strict = client.get("/api/v1/clinical/outliers/prostate", params={"threshold": 1000})
        wrong = client.get("/api/v1/clinical/outliers/prostate", params={"field": "sex"})
    variables = {v["name"]: v for v in summary["variables"]}
    assert summary["records"] >= 12 and "test" in summary["sites"]
    assert variables["psa"]["completeness"]["ratio"] == 1.0
    assert variables["pirads"]["completeness"]["conditional"] is True
    assert variables["treatment_type"]["distribution"]["counts"]["watchful_waiting"] >= 12
    assert [(o["field"], o["value"], o["direction"]) for o in found["outliers"]] == [
        ("psa", 480.0, "high")
    ]
    assert found["outliers"][0]["record_id"] == imported["ids"][11]
    assert strict.json()["outliers"] == []
    assert wrong.status_code == 400 and "not a numeric variable" in wrong.json()["error"]
    with served.client("up1") as client:
        assert client.get("/api/v1/clinical/summary/prostate").status_code == 403
        assert client.get("/api/v1/clinical/outliers/prostate").status_code == 403


def test_data_query_workflow(served: Served, imported: dict[str, Any]) -> None:
    record_id = imported["ids"][11]
    with served.client("cur") as cur, served.client("up1") as up:
        raised = cur.post(
            "/api/v1/clinical/queries",
            json={"record_id": record_id, "field": "psa", "message": "PSA 480: a typo?"},
        )
        assert raised.status_code == 201, raised.text
        query = raised.json()
        assert (query["state"], query["field"], query["site"]) == ("open", "psa", "test")
        qid = query["id"]
        assert up.post("/api/v1/clinical/queries", json={"record_id": record_id,
                       "message": "x"}).status_code == 403  # fmt: skip
        bad = cur.post(
            "/api/v1/clinical/queries",
            json={"record_id": record_id, "field": "pas", "message": "x"},
        )
        assert bad.status_code == 400 and "not a variable of form prostate" in bad.json()["error"]
        answered = up.post(f"/api/v1/clinical/queries/{qid}/answer", json={"text": "yes, 4.8"})
        assert answered.status_code == 200 and answered.json()["state"] == "answered"
        assert (
            cur.post(f"/api/v1/clinical/queries/{qid}/answer", json={"text": "x"}).status_code
            == 403
        )
        closed = cur.post(f"/api/v1/clinical/queries/{qid}/close", json={"text": "fixing"})
        assert closed.json()["state"] == "closed"
        late = up.post(f"/api/v1/clinical/queries/{qid}/answer", json={"text": "again"})
        assert late.status_code == 409 and "reopen" in late.json()["error"]
        reopened = cur.post(f"/api/v1/clinical/queries/{qid}/reopen", json={"text": "not fixed"})
        assert reopened.json()["state"] == "open"
        # the data provider corrects the record: the open query becomes answered
        fixed = post(served, "up1", "prostate", prostate(11, psa=4.8))
        assert fixed.status_code == 200 and fixed.json()["updated"] == 1
        shown = cur.get(f"/api/v1/clinical/queries/{qid}").json()
        assert shown["state"] == "answered"
        actions = [(e["action"], e["actor"], e["record_version"]) for e in shown["history"]]
        assert actions == [
            ("raise", "cur", 1),
            ("answer", "up1", 1),
            ("close", "cur", 1),
            ("reopen", "cur", 1),
            ("correct", "up1", 2),
        ]
        assert cur.post(f"/api/v1/clinical/queries/{qid}/close").json()["state"] == "closed"
        listed = up.get("/api/v1/clinical/queries", params={"site": "test", "state": "closed"})
        body = listed.json()
        assert [q["id"] for q in body["queries"]] == [qid]
        assert body["counts"]["test"]["closed"] >= 1
        assert up.get("/api/v1/clinical/queries", params={"state": "nonsense"}).status_code == 400
        record = up.get(f"/api/v1/clinical/records/{record_id}").json()
        assert [q["id"] for q in record["queries"]] == [qid]
    with served.client("res") as client:
        assert client.get("/api/v1/clinical/queries").status_code == 403
    logged = entries(served, "clinical.query.raise", 201)
    assert any(e.status == 201 for e in logged) and not any(
        "480" in (e.detail or "") for e in logged
    )
    assert shown["message"] == shown["history"][0]["text"] == "PSA 480: a typo?"
