"""``POST /api/v1/cohorts/count`` on a real server: researchers protected, curators exact."""

from __future__ import annotations

import time
from typing import Any

import pytest

from biobank.access import AccessService
from biobank.datasets import protect
from tests.api.conftest import Served
from tests.datasets.omop_fixture import PEOPLE, load

PATH = "/api/v1/cohorts/count"

MR = {
    "id": "q-mr",
    "ast": {
        "operand": "OR",
        "children": [
            {
                "operand": "AND",
                "children": [
                    {"operand": "OR", "children": [
                        {"key": "RID10311", "type": "EQUALS", "system": "", "value": "RID10312"}]},
                ],
            }
        ],
    },
    "stratify": ["gender"],
}  # fmt: skip


def mr_counts(gender: int | None = None) -> tuple[int, int, int]:
    persons = [
        p
        for p in PEOPLE
        if any(s.modality == "MR" for s in p.series) and (gender is None or p.gender == gender)
    ]
    series = [s for p in persons for s in p.series if s.modality == "MR"]
    return len(persons), len({s.study for s in series}), len(series)


@pytest.fixture(scope="module")
def loaded(served: Served) -> Served:
    with served.node.open_catalog() as catalog:
        load(catalog, PEOPLE)
    return served


def post(served: Served, user: str | None, body: Any) -> Any:
    with served.client(user) as client:
        return client.post(PATH, json=body)


class TestCohortCount:
    @pytest.mark.parametrize("user", ["cur", "admin"])
    def test_curators_and_admins_get_exact_counts(self, loaded: Served, user: str) -> None:
        response = post(loaded, user, MR)
        assert response.status_code == 200, response.text
        found = response.json()
        persons, studies, series = mr_counts()
        assert found["id"] == "q-mr" and found["protected"] is False
        assert found["persons"] == {"value": persons, "precision": "exact"}
        assert (found["studies"]["value"], found["series"]["value"]) == (studies, series)
        by = {s["values"]["gender"]: s["persons"]["value"] for s in found["strata"]}
        assert by["male"] == mr_counts(8507)[0] and by["female"] == mr_counts(8532)[0]

    @pytest.mark.parametrize("user", ["res", "up1"])
    def test_everyone_else_gets_protected_counts_in_every_stratum(
        self, loaded: Served, user: str
    ) -> None:
        response = post(loaded, user, MR)
        assert response.status_code == 200, response.text
        found = response.json()
        persons, studies, series = mr_counts()
        assert found["protected"] is True
        assert found["persons"] == protect(persons).to_json()
        assert found["series"] == protect(series).to_json()
        for stratum in found["strata"]:
            gender = {"male": 8507, "female": 8532, "unknown": 0}[stratum["values"]["gender"]]
            assert stratum["persons"] == protect(mr_counts(gender)[0]).to_json()
            assert stratum["persons"]["precision"] in ("imprecise", "rounded")
            assert stratum["persons"]["value"] >= 10

    def test_a_beacon_body_gets_a_beacon_response(self, loaded: Served) -> None:
        body = {
            "meta": {"apiVersion": "v2.0"},
            "query": {
                "filters": [{"id": "modality", "operator": "=", "value": "MR"}],
                "requestedGranularity": "count",
            },
        }
        exact = post(loaded, "cur", body).json()
        assert exact["meta"]["returnedGranularity"] == "count"
        assert exact["meta"]["beaconId"] == loaded.node.config.node_id
        assert exact["meta"]["receivedRequestSummary"]["filters"] == ["modality"]
        assert exact["responseSummary"] == {
            "exists": True,
            "numTotalResults": mr_counts()[0],
            "countPrecision": "exact",
        }
        protected = post(loaded, "res", body).json()["responseSummary"]
        assert protected["numTotalResults"] == protect(mr_counts()[0]).value
        assert protected["countPrecision"] == protect(mr_counts()[0]).precision.value
        assert protected["countAdjustedTo"] == [10]
        boolean = post(loaded, "res", {"query": {"requestedGranularity": "boolean"}}).json()
        assert boolean["responseSummary"] == {"exists": True}
        assert boolean["meta"]["returnedGranularity"] == "boolean"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"ast": {"operand": "AND", "children": [
                {"key": "colour", "type": "EQUALS", "value": "red"}]}}, "unknown key 'colour'"),
            ({"ast": {"operand": "AND", "children": [
                {"key": "age_at_diagnosis", "type": "BETWEEN", "value": {"min": "abc"}}]}},
             "is not a number"),
            ({"query": {"requestedGranularity": "record"}}, "record-level"),
            (["not", "an", "object"], "expected a JSON object"),
        ],
    )  # fmt: skip
    def test_a_bad_query_is_a_400_with_the_reason(
        self, loaded: Served, body: Any, message: str
    ) -> None:
        response = post(loaded, "res", body)
        assert response.status_code == 400
        assert message in response.text

    def test_no_token_is_401(self, loaded: Served) -> None:
        assert post(loaded, None, MR).status_code == 401

    def test_counts_are_in_the_access_log_without_values(self, loaded: Served) -> None:
        post(loaded, "res", MR)
        deadline = time.monotonic() + 10
        while True:
            with loaded.node.open_catalog() as catalog:
                entries = AccessService(catalog).access_entries(limit=1000)
            found = [
                e
                for e in entries
                if e.action == "cohorts.count" and e.username == "res" and e.status == 200
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        details = [e.detail for e in found]
        assert "exact=false format=lens strata=1" in details
        assert not any("RID10312" in d or "MR" in d for d in details)
