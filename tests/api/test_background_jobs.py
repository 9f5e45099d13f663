"""While serving, new series are classified in the background (jobs queued by ingest)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from biobank.access import AccessService, Role
from biobank.api import ServiceOptions, create_app
from biobank.catalog.curation import CurationRecords
from biobank.catalog.jobs import JobRecords, JobState
from biobank.curation.jobs import classify_series_job
from biobank.dicom.synthetic import make_mr_series, make_patient_phi
from biobank.errors import NotFound
from biobank.ingest.node import NodeRole, init_node
from tests.api.conftest import ServerThread, dicom_bytes, stow_body


def test_a_stored_series_is_classified_while_serving(tmp_path: Path) -> None:
    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    with node.open_catalog() as catalog:
        access = AccessService(catalog)
        access.create_user("up", Role.UPLOADER)
        token = access.create_token("up", "t")[1]
    options = ServiceOptions(jobs=1, job_handlers={"classify-series": classify_series_job})
    body, content_type = stow_body(
        [dicom_bytes(ds) for ds in make_mr_series(make_patient_phi(3, seed=1), 3, 16, 16)]
    )
    with ServerThread(create_app(node, options=options)) as port:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/dicomweb/studies",
            content=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        series = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        series_uid = series.split("/series/")[1].split("/")[0]
        deadline = time.monotonic() + 60
        with node.open_catalog() as catalog:
            while True:
                try:
                    record = CurationRecords(catalog).get(series_uid)
                    break
                except NotFound:
                    assert time.monotonic() < deadline, "the series was never classified"
                    time.sleep(0.2)
            jobs = {j.kind: j.state for j in JobRecords(catalog).find(subject=series_uid)}
    assert record.label is not None and record.classification is not None
    assert jobs["classify-series"] is JobState.DONE
    assert jobs["qc-series"] is JobState.PENDING  # no handler here: it waits for `jobs run`
