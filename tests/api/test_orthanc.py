"""Exchanges with a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) both ways.

(a) our node → Orthanc: ``biobank push`` to Orthanc's STOW-RS; (b) Orthanc → our node:
Orthanc's DICOMweb client sends a study to our STOW-RS (our site node de-identifies it);
(c) Orthanc as a DICOMweb client of our node: QIDO-RS and WADO-RS retrieve into Orthanc.
Orthanc runs on ephemeral loopback ports with a temporary configuration, started the way
the ingest benchmark starts it (``bench/peers.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.peers import (
    ORTHANC_EXE,
    OrthancServer,
    PeerUnavailable,
    _die_with_parent,
    dicomweb_plugin,
    free_port,
    orthanc_config,
    stop_process,
)
from typer.testing import CliRunner

from biobank.cli.main import app
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.ingest.node import NodeRole, init_node
from tests.api.conftest import Served, dicom_bytes, serve_node, stow_body

pytestmark = pytest.mark.peer

SERVER = "biobank"  # our node's name in Orthanc's DicomWeb.Servers
runner = CliRunner()


def _value(element: dict[str, Any], tag: str) -> Any:
    return element.get(tag, {}).get("Value", [None])[0]


@dataclass
class Peers:
    ours: Served
    orthanc: OrthancServer

    def orthanc_post(self, path: str, body: Any) -> Any:
        response = httpx.post(f"{self.orthanc.url}{path}", json=body, timeout=60)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def orthanc_study(self, study_uid: str) -> str | None:
        """Orthanc's ID of the study with this Study Instance UID, if it holds it."""
        found = httpx.post(f"{self.orthanc.url}/tools/lookup", content=study_uid).json()
        return next((f["ID"] for f in found if f["Type"] == "Study"), None)


def _start_orthanc(folder: Path, our_url: str, token: str) -> OrthancServer:
    exe = shutil.which(ORTHANC_EXE) or shutil.which("Orthanc")
    if exe is None:
        pytest.fail(
            "Orthanc is not installed: run `make system-deps` (apt-get install orthanc "
            "orthanc-dicomweb); the peer tests need it and are never skipped"
        )
    try:
        plugin = dicomweb_plugin()
    except PeerUnavailable as exc:
        pytest.fail(f"{exc}; run `make system-deps`")
    folder.mkdir(parents=True)
    port = free_port()
    config = orthanc_config(folder, port, plugin)
    config.update(
        {
            "Name": "biobank-peer-test",
            "DicomPort": free_port(),  # the DICOM server stays off: HTTP only
            "HttpTimeout": 60,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "Servers": {
                    SERVER: {
                        "Url": f"{our_url}/dicomweb/",
                        "HttpHeaders": {"Authorization": f"Bearer {token}"},
                    }
                },
            },
        }
    )
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [exe, str(path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            preexec_fn=_die_with_parent,  # started before any server thread of ours
        )
    server = OrthancServer(f"http://127.0.0.1:{port}", process, folder, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"Orthanc did not start:\n{server.log_tail()}")
        try:
            if "dicom-web" in httpx.get(f"{server.url}/plugins", timeout=2).json():
                return server
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = tmp_path_factory.mktemp("orthanc")
    node = init_node(root / "site", site="test", role=NodeRole.SITE)
    thread, tokens = serve_node(node, jobs=1)  # users and tokens now, the server later
    port = free_port()
    ours = Served(f"http://127.0.0.1:{port}", tokens, node)
    orthanc = _start_orthanc(root / "orthanc", ours.url, tokens["cur"])
    try:
        thread.server.config.port = port
        with thread as bound:
            assert bound == port
            yield Peers(ours, orthanc)
    finally:
        stop_process(orthanc.process)


def _our_studies(peers: Peers) -> dict[str, dict[str, Any]]:
    with peers.ours.client("cur") as client:
        found = client.get("/dicomweb/studies", params={"includefield": "all"}).json()
    return {_value(s, "0020000D"): s for s in found}


def test_a_push_from_our_node_lands_in_orthanc(peers: Peers) -> None:
    datasets = make_ct_series(make_patient_phi(31, seed=4), 7, rows=32, cols=32)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    with peers.ours.client("up1") as client:
        stored = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
    assert stored.status_code == 200
    url = _value(stored.json()["00081199"]["Value"][0], "00081190")
    study = url.split("/studies/")[1].split("/")[0]
    home = str(peers.ours.node.home)
    args = ["push", "--to", f"{peers.orthanc.url}/dicom-web", "--study", study, "--home", home]
    result = runner.invoke(app, [*args, "--json", "--batch", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["pushed"] == 1 and summary["instances_sent"] == 7
    orthanc_id = peers.orthanc_study(study)
    assert orthanc_id is not None
    instances = httpx.get(f"{peers.orthanc.url}/studies/{orthanc_id}/instances").json()
    assert len(instances) == 7
    # Orthanc keeps what it received: the bytes of our blob.
    one = instances[0]
    sop = one["MainDicomTags"]["SOPInstanceUID"]
    catalog = peers.ours.node.open_catalog()
    try:
        (ours,) = catalog.find_instances(sop_instance_uid=sop)
    finally:
        catalog.close()
    theirs = httpx.get(f"{peers.orthanc.url}/instances/{one['ID']}/file").content
    assert theirs == peers.ours.node.open_store().get(ours.blob_digest)
    # Again: the push asks Orthanc (QIDO-RS) and sends nothing.
    again = runner.invoke(app, [*args, "--json", "--recheck"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)["summary"]
    assert summary["instances_sent"] == 0 and summary["already_present"] == 7


def test_orthanc_sends_a_study_to_our_node_which_de_identifies_it(peers: Peers) -> None:
    phi = make_patient_phi(32, seed=4)
    datasets = make_ct_series(phi, 5, rows=32, cols=32)
    for ds in datasets:  # Orthanc as the hospital's PACS holds the original
        answer = httpx.post(
            f"{peers.orthanc.url}/instances",
            content=dicom_bytes(ds),
            headers={"Content-Type": "application/dicom"},
        ).json()
        assert answer["Status"] == "Success"
    orthanc_id = answer["ParentStudy"]
    before = set(_our_studies(peers))
    peers.orthanc_post(f"/dicom-web/servers/{SERVER}/stow", {"Resources": [orthanc_id]})
    after = _our_studies(peers)
    (new,) = set(after) - before
    study = after[new]
    assert new != str(datasets[0].StudyInstanceUID)
    assert _value(study, "00201208") == 5 and _value(study, "00120062") == "YES"
    text = json.dumps(study)
    for value in (phi.patient_name, phi.patient_id, phi.family_name):
        assert value not in text


def test_orthanc_queries_and_retrieves_a_study_from_our_node(peers: Peers) -> None:
    phi = make_patient_phi(33, seed=4)
    datasets = make_ct_series(phi, 4, rows=32, cols=32)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    with peers.ours.client("up1") as client:
        stored = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
    url = _value(stored.json()["00081199"]["Value"][0], "00081190")
    study = url.split("/studies/")[1].split("/")[0]
    assert peers.orthanc_study(study) is None
    found = peers.orthanc_post(
        f"/dicom-web/servers/{SERVER}/qido",
        {"Uri": "/studies", "Arguments": {"StudyInstanceUID": study}},
    )
    # Orthanc answers in its own shape: {"0020000D": {"Name": ..., "Value": "1.2..."}}.
    assert [s["0020000D"]["Value"] for s in found] == [study]
    # Orthanc 1.10 keeps IS values only when they are JSON strings; ours are JSON numbers
    # (PS3.18 F.2.3): NumberOfStudyRelatedInstances arrives without a value. The rest does.
    assert "00201208" in found[0]
    assert found[0]["00080061"]["Value"] == "CT"
    assert found[0]["00081190"]["Value"] == f"{peers.ours.url}/dicomweb/studies/{study}"
    peers.orthanc_post(f"/dicom-web/servers/{SERVER}/retrieve", {"Resources": [{"Study": study}]})
    orthanc_id = peers.orthanc_study(study)
    assert orthanc_id is not None
    instances = httpx.get(f"{peers.orthanc.url}/studies/{orthanc_id}/instances").json()
    assert len(instances) == 4
    tags = httpx.get(f"{peers.orthanc.url}/instances/{instances[0]['ID']}/simplified-tags")
    assert tags.json()["PatientIdentityRemoved"] == "YES"
    assert phi.family_name not in tags.text and phi.patient_id not in tags.text
