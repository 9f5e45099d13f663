"""DICOMweb against a real server on loopback: STOW-RS, QIDO-RS, WADO-RS, roles, errors."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from biobank import errors
from biobank.access import AccessService
from biobank.api.errors import STATUS, status_of
from biobank.dicom.multipart import MultipartReader, parse_content_type
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.api.conftest import Served, dicom_bytes, stow_body

JSON = {"Accept": "application/dicom+json"}


def _parts(response: Any) -> list[tuple[str, bytes]]:
    media, params = parse_content_type(response.headers["content-type"])
    assert media == "multipart/related"
    reader = MultipartReader(params["boundary"], max_part_bytes=1 << 30)
    parts = reader.feed(response.content) + reader.close()
    return [(p.content_type, p.body) for p in parts]


def _value(element: dict[str, Any], tag: str) -> Any:
    return element.get(tag, {}).get("Value", [None])[0]


@pytest.fixture(scope="module")
def phi() -> Any:
    return make_patient_phi(7, seed=42)


@pytest.fixture(scope="module")
def stored(served: Served, phi: Any) -> dict[str, Any]:
    """A CT series (8 slices) and an MR series (3) stored by up1 over STOW-RS."""
    datasets = make_ct_series(phi, 8, rows=64, cols=64) + make_mr_series(phi, 3, 32, 32)
    body, content_type = stow_body([dicom_bytes(ds) for ds in datasets])
    with served.client("up1") as client:
        response = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type, **JSON}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    refs = answer["00081199"]["Value"]
    urls = [_value(ref, "00081190") for ref in refs]
    study = urls[0].split("/studies/")[1].split("/")[0]
    return {"answer": answer, "study": study, "urls": urls, "datasets": datasets}


class TestAuthentication:
    def test_healthz_needs_no_token_and_says_who_it_is(self, served: Served) -> None:
        with served.client(None) as client:
            response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok" and response.json()["role"] == "site"

    def test_no_token_or_a_bad_one_is_401(self, served: Served) -> None:
        with served.client(None) as client:
            missing = client.get("/dicomweb/studies")
            bad = client.get("/dicomweb/studies", headers={"Authorization": "Bearer bb_x_y"})
        assert missing.status_code == 401 and bad.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "error" in missing.json()

    def test_a_researcher_reads_nothing_yet(self, served: Served, stored: dict[str, Any]) -> None:
        with served.client("res") as client:
            response = client.get("/dicomweb/studies")
        assert response.status_code == 403
        assert "dataset" in response.json()["error"]

    def test_a_researcher_cannot_store(self, served: Served, phi: Any) -> None:
        body, content_type = stow_body([dicom_bytes(make_ct_series(phi, 1, 16, 16)[0])])
        with served.client("res") as client:
            response = client.post(
                "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
            )
        assert response.status_code == 403

    def test_uploaders_see_only_their_own_studies(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        study = stored["study"]
        with served.client("up1") as mine, served.client("up2") as other:
            assert study in mine.get("/dicomweb/studies").text
            assert other.get("/dicomweb/studies").json() == []
            assert other.get(f"/dicomweb/studies/{study}/metadata").status_code == 404
            assert other.get(f"/dicomweb/studies/{study}").status_code == 404
        with served.client("cur") as curator:
            assert study in curator.get("/dicomweb/studies").text

    def test_metrics_are_for_admins(self, served: Served, stored: dict[str, Any]) -> None:
        with served.client("cur") as curator, served.client("admin") as admin:
            assert curator.get("/metrics").status_code == 403
            text = admin.get("/metrics").text
        assert 'biobank_ingest_items_total{channel="stow-rs",outcome="stored"}' in text
        assert "/dicomweb/studies/{study}" in text or "/dicomweb/studies" in text


class TestStow:
    def test_stored_data_are_de_identified(
        self, served: Served, stored: dict[str, Any], phi: Any
    ) -> None:
        assert len(stored["urls"]) == 11
        with served.client("cur") as client:
            studies = client.get("/dicomweb/studies", params={"includefield": "all"}).text
            metadata = client.get(f"/dicomweb/studies/{stored['study']}/metadata").text
        for value in (phi.patient_name, phi.patient_id, phi.family_name):
            assert value not in studies and value not in metadata
        original = str(stored["datasets"][0].StudyInstanceUID)
        assert stored["study"] != original

    def test_a_bad_part_never_drops_the_good_ones(self, served: Served, phi: Any) -> None:
        other = make_patient_phi(8, seed=42)  # same patient's UIDs with other pixels: conflicts
        good = [dicom_bytes(ds) for ds in make_ct_series(other, 2, 16, 16)]
        body, content_type = stow_body([good[0], b"this is not DICOM at all", good[1]])
        with served.client("up1") as client:
            response = client.post(
                "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
            )
        assert response.status_code == 202
        answer = response.json()
        assert len(answer["00081199"]["Value"]) == 2
        (failed,) = answer["00081198"]["Value"]
        assert _value(failed, "00081197") == 0xC000
        assert "part 2" in _value(failed, "00091001")

    def test_all_parts_failing_is_409(self, served: Served) -> None:
        body, content_type = stow_body([b"junk", b""])
        with served.client("up1") as client:
            response = client.post(
                "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
            )
        assert response.status_code == 409
        assert len(response.json()["00081198"]["Value"]) == 2

    def test_a_part_of_another_study_is_refused_on_a_study_url(
        self, served: Served, phi: Any
    ) -> None:
        ds = make_ct_series(make_patient_phi(9, seed=42), 1, 16, 16)[0]
        body, content_type = stow_body([dicom_bytes(ds)])
        with served.client("up1") as client:
            response = client.post(
                "/dicomweb/studies/1.2.3.4", content=body, headers={"Content-Type": content_type}
            )
        assert response.status_code == 409
        (failed,) = response.json()["00081198"]["Value"]
        assert _value(failed, "00081197") == 0xA900
        assert _value(response.json(), "00081190").endswith("/studies/1.2.3.4")

    def test_wrong_media_types_and_broken_bodies(self, served: Served, phi: Any) -> None:
        with served.client("up1") as client:
            assert (
                client.post(
                    "/dicomweb/studies", content=b"x", headers={"Content-Type": "application/json"}
                ).status_code
                == 415
            )
            body, content_type = stow_body([dicom_bytes(make_ct_series(phi, 1, 16, 16)[0])])
            cut = client.post(
                "/dicomweb/studies", content=body[:-30], headers={"Content-Type": content_type}
            )
            assert cut.status_code == 400
            assert "interrupted" in cut.json()["error"]
            json_part = stow_body([b"{}"], part_type="application/dicom+json")
            typed = client.post(
                "/dicomweb/studies", content=json_part[0], headers={"Content-Type": json_part[1]}
            )
            assert typed.status_code == 409
            assert "application/dicom parts" in typed.text

    def test_re_sending_is_idempotent(self, served: Served, stored: dict[str, Any]) -> None:
        body, content_type = stow_body([dicom_bytes(ds) for ds in stored["datasets"][:3]])
        with served.client("up1") as client:
            response = client.post(
                "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
            )
        assert response.status_code == 200
        urls = [_value(ref, "00081190") for ref in response.json()["00081199"]["Value"]]
        assert set(urls) <= set(stored["urls"])


class TestQido:
    def test_studies_by_patient_id_and_wildcard_names(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        with served.client("cur") as client:
            (study,) = [
                s
                for s in client.get("/dicomweb/studies", headers=JSON).json()
                if _value(s, "0020000D") == stored["study"]
            ]
            pid = _value(study, "00100020")
            name = _value(study, "00100010")["Alphabetic"]
            by_id = client.get("/dicomweb/studies", params={"PatientID": pid}).json()
            # httpx percent-encodes '*' as %2A, as dicomweb-client does: it must still match.
            prefix = client.get("/dicomweb/studies", params={"PatientName": name[:3] + "*"})
            fuzzy = client.get(
                "/dicomweb/studies",
                params={"PatientName": name[:3].lower(), "fuzzymatching": "true"},
            )
        # The synthetic CT and MR of a patient are two studies.
        assert len(by_id) == 2 and stored["study"] in [_value(s, "0020000D") for s in by_id]
        ct = next(s for s in by_id if _value(s, "0020000D") == stored["study"])
        assert _value(ct, "00201206") == 1 and _value(ct, "00201208") == 8
        assert ct["00080061"]["Value"] == ["CT"]
        assert stored["study"] in prefix.text and stored["study"] in fuzzy.text
        assert _value(ct, "00081190").endswith(f"/dicomweb/studies/{stored['study']}")

    def test_series_and_instances_of_the_hierarchy(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        study = stored["study"]
        with served.client("cur") as client:
            series = client.get(f"/dicomweb/studies/{study}/series").json()
            assert [_value(s, "00080060") for s in series] == ["CT"]
            ct = series[0]
            uid = _value(ct, "0020000E")
            instances = client.get(f"/dicomweb/studies/{study}/series/{uid}/instances").json()
            page = client.get(
                f"/dicomweb/studies/{study}/series/{uid}/instances",
                params={"limit": 3, "offset": 2},
            ).json()
            across = client.get("/dicomweb/series", params={"Modality": "MR"}).json()
        assert _value(ct, "00201209") == 8
        numbers = [_value(i, "00200013") for i in instances]
        assert numbers == sorted(numbers) and len(numbers) == 8
        assert page == instances[2:5]
        assert all(_value(i, "00280010") == 64 for i in instances)
        assert len(across) == 1 and _value(across[0], "00201209") == 3

    def test_includefield_all_and_by_name(self, served: Served, stored: dict[str, Any]) -> None:
        study = stored["study"]
        with served.client("cur") as client:
            plain = client.get("/dicomweb/studies", params={"StudyInstanceUID": study}).json()[0]
            full = client.get(
                "/dicomweb/studies", params={"StudyInstanceUID": study, "includefield": "all"}
            ).json()[0]
            named = client.get(
                "/dicomweb/studies",
                params={"StudyInstanceUID": study, "includefield": "PatientIdentityRemoved"},
            ).json()[0]
        assert "00120062" not in plain
        assert _value(full, "00120062") == "YES" and _value(named, "00120062") == "YES"
        assert len(full) > len(plain)

    def test_bad_queries_are_400_with_the_reason(self, served: Served) -> None:
        with served.client("cur") as client:
            unknown = client.get("/dicomweb/studies", params={"PatientNmae": "x"})
            date = client.get("/dicomweb/studies", params={"StudyDate": "2024-13"})
            limit = client.get("/dicomweb/studies", params={"limit": "many"})
            xml = client.get("/dicomweb/studies", headers={"Accept": "application/dicom+xml"})
        assert unknown.status_code == 400 and "PatientNmae" in unknown.json()["error"]
        assert date.status_code == 400 and "date" in date.json()["error"]
        assert limit.status_code == 400
        assert xml.status_code == 406

    def test_unsupported_keys_are_ignored_with_a_warning(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        with served.client("cur") as client:
            response = client.get("/dicomweb/studies", params={"PatientComments": "x*"})
        assert response.status_code == 200
        assert "00104000" in response.headers["warning"]
        assert stored["study"] in response.text


class TestWado:
    def test_series_retrieval_returns_the_stored_bytes(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        url = stored["urls"][0].split("/instances/")[0]
        with served.client("cur") as client:
            response = client.get(
                url, headers={"Accept": 'multipart/related; type="application/dicom"'}
            )
        assert response.status_code == 200
        parts = _parts(response)
        assert len(parts) >= 3
        catalog = served.node.open_catalog()
        try:
            store = served.node.open_store()
            for content_type, body in parts:
                assert content_type.startswith("application/dicom")
                ds = pydicom.dcmread(io.BytesIO(body))
                (instance,) = catalog.find_instances(sop_instance_uid=ds.SOPInstanceUID)
                assert store.get(instance.blob_digest) == body
        finally:
            catalog.close()

    def test_metadata_bulk_data_and_frames_agree(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        instance_url = stored["urls"][0]
        series_url = instance_url.split("/instances/")[0]
        with served.client("cur") as client:
            metadata = client.get(f"{series_url}/metadata", headers=JSON).json()
            one = next(m for m in metadata if instance_url.endswith(_value(m, "00080018")))
            bulk_uri = one["7FE00010"]["BulkDataURI"]
            assert bulk_uri.startswith("http://127.0.0.1") and bulk_uri.endswith("/7FE00010")
            (bulk,) = _parts(client.get(bulk_uri))
            (frame,) = _parts(
                client.get(
                    f"{instance_url}/frames/1",
                    headers={"Accept": 'multipart/related; type="application/octet-stream"'},
                )
            )
            dicom = _parts(client.get(instance_url))[0][1]
            missing = client.get(f"{instance_url}/frames/2")
        assert frame[0].startswith("application/octet-stream")
        assert bulk[1] == frame[1]
        pixels = pydicom.dcmread(io.BytesIO(dicom)).pixel_array
        assert np.frombuffer(frame[1], dtype=pixels.dtype).reshape(pixels.shape).tolist() == (
            pixels.tolist()
        )
        assert missing.status_code == 404 and "1 frame" in missing.json()["error"]

    def test_rendered_and_thumbnails(self, served: Served, stored: dict[str, Any]) -> None:
        instance_url = stored["urls"][0]
        study_url = instance_url.split("/series/")[0]
        with served.client("cur") as client:
            png = client.get(
                f"{instance_url}/rendered",
                headers={"Accept": "image/png"},
                params={"window": "40,400,LINEAR", "viewport": "32,32"},
            )
            jpeg = client.get(f"{instance_url}/frames/1/rendered")
            thumb = client.get(f"{study_url}/thumbnail", headers={"Accept": "image/png"})
            bad = client.get(f"{instance_url}/rendered", params={"window": "wide"})
            tiff = client.get(f"{instance_url}/rendered", headers={"Accept": "image/tiff"})
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (32, 32)
        assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
        assert Image.open(io.BytesIO(thumb.content)).format == "PNG"
        assert bad.status_code == 400 and tiff.status_code == 406

    def test_a_series_rendered_is_one_image_per_instance(
        self, served: Served, stored: dict[str, Any]
    ) -> None:
        series_url = stored["urls"][0].split("/instances/")[0]
        with served.client("cur") as client:
            response = client.get(
                f"{series_url}/rendered",
                headers={"Accept": 'multipart/related; type="image/png"'},
                params={"viewport": "16,16"},
            )
        parts = _parts(response)
        assert len(parts) == 8
        assert all(t == "image/png" for t, _ in parts)
        assert {Image.open(io.BytesIO(b)).size for _, b in parts} == {(16, 16)}

    def test_unknown_objects_are_404(self, served: Served, stored: dict[str, Any]) -> None:
        with served.client("cur") as client:
            assert client.get("/dicomweb/studies/1.2.3/metadata").status_code == 404
            assert client.get(f"/dicomweb/studies/{stored['study']}/series/9.9").status_code == 404


class TestAccessLog:
    def test_reads_and_writes_are_logged_without_phi(
        self, served: Served, stored: dict[str, Any], phi: Any
    ) -> None:
        with served.client("cur") as client:
            client.get("/dicomweb/studies", params={"PatientName": phi.family_name})
            client.get(f"/dicomweb/studies/{stored['study']}/metadata")
            client.get("/healthz")
        catalog = served.node.open_catalog()
        try:
            import time

            deadline = time.monotonic() + 10
            while True:
                entries = AccessService(catalog).access_entries(limit=10_000)
                actions = {(e.username, e.action) for e in entries}
                if ("cur", "wado.study.metadata") in actions or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            catalog.close()
        assert ("up1", "stow") in actions
        assert ("res", "refused") in actions  # the researcher's refused reads are logged
        assert ("cur", "qido.study") in actions
        assert ("cur", "wado.study.metadata") in actions
        text = json.dumps(
            [vars(e) if hasattr(e, "__dict__") else str(e) for e in entries], default=str
        )
        for value in (phi.family_name, phi.patient_id, phi.patient_name):
            assert value not in text


def test_every_error_class_has_a_status() -> None:
    def walk(cls: type) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__() for c in walk(sub)]

    for cls in walk(errors.BiobankError):
        assert any(base in STATUS for base in cls.__mro__), cls
    assert status_of(errors.AuthenticationFailed("x")) == 401
    assert status_of(errors.PermissionDenied("x")) == 403
    assert status_of(errors.InvalidDicom("x")) == 400


def test_no_phi_reaches_the_logs(
    served: Served, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    """Known PHI through STOW-RS, a failing part, searches by name and by ID: no log line has it."""
    phi = make_patient_phi(31, seed=9)
    datasets = make_mr_series(phi, 2, 16, 16)
    broken = dicom_bytes(datasets[1])[:600]  # a truncated header carrying the planted values
    body, content_type = stow_body([dicom_bytes(datasets[0]), broken])
    with caplog.at_level(logging.DEBUG), served.client("up1") as client:
        client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
        client.get("/dicomweb/studies", params={"PatientName": phi.patient_name})
        client.get("/dicomweb/studies", params={"PatientID": phi.patient_id, "x": "1"})
        client.get(f"/dicomweb/studies/{phi.patient_id}/metadata")
    client_side = ("httpx", "httpcore")  # this test's own HTTP client logs its URLs
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(client_side))
    requests = [r.getMessage() for r in caplog.records if r.name == "biobank.api.requests"]
    assert any('"user": "up1"' in line and '"status": 200' in line for line in requests)
    for value in (phi.patient_name, phi.family_name, phi.patient_id, phi.given_name):
        assert value not in text


def test_every_route_but_healthz_needs_a_token(served: Served) -> None:
    """Every operation of the OpenAPI description answers 401 without a token."""
    with served.client(None) as client:
        paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    with served.client(None) as client:
        for path, operations in paths.items():
            if path == "/healthz":
                continue
            for method in sorted(m.upper() for m in operations):
                url = path.replace("{path:path}", "7FE00010")
                for name in ("study", "series", "sop", "frames", "frame"):
                    url = url.replace("{" + name + "}", "1" if "frame" in name else "1.2.3")
                response = client.request(method, url)
                assert response.status_code == 401, (method, path, response.status_code)
                checked += 1
    assert checked >= 24  # STOW 2, QIDO 6, WADO 15, metrics
