"""Compressed instances over WADO-RS: as stored, decompressed on request, frames both ways."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from biobank.api.deps import HttpSettings
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.errors import InvalidInput
from tests.api.conftest import Served, dicom_bytes, stow_body
from tests.api.test_dicomweb import _parts, _value


@pytest.fixture(scope="module")
def rle(served: Served) -> dict[str, Any]:
    ds = make_ct_series(make_patient_phi(21, seed=5), 1, 32, 32)[0]
    ds.compress(RLELossless)
    body, content_type = stow_body([dicom_bytes(ds)])
    with served.client("up1") as client:
        answer = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        ).json()
    (ref,) = answer["00081199"]["Value"]
    return {"url": _value(ref, "00081190"), "pixels": ds.pixel_array}


def test_an_instance_is_sent_as_stored_or_decompressed(served: Served, rle: dict[str, Any]) -> None:
    with served.client("cur") as client:
        stored = _parts(client.get(rle["url"]))
        explicit = _parts(
            client.get(
                rle["url"],
                headers={
                    "Accept": 'multipart/related; type="application/dicom"; '
                    f"transfer-syntax={ExplicitVRLittleEndian}"
                },
            )
        )
        jpeg = client.get(
            rle["url"],
            headers={
                "Accept": 'multipart/related; type="application/dicom"; '
                "transfer-syntax=1.2.840.10008.1.2.4.50"
            },
        )
    assert stored[0][0].endswith(f"transfer-syntax={RLELossless}")
    plain = pydicom.dcmread(io.BytesIO(explicit[0][1]))
    assert plain.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(plain.pixel_array, rle["pixels"])
    assert jpeg.status_code == 406 and "Explicit VR Little Endian" in jpeg.json()["error"]


def test_frames_as_stored_or_native(served: Served, rle: dict[str, Any]) -> None:
    frames = rle["url"] + "/frames/1"
    with served.client("cur") as client:
        as_stored = _parts(
            client.get(frames, headers={"Accept": 'multipart/related; type="image/dicom-rle"'})
        )
        anything = _parts(
            client.get(
                frames,
                headers={
                    "Accept": 'multipart/related; type="application/octet-stream"; '
                    "transfer-syntax=*"
                },
            )
        )
        native = _parts(
            client.get(
                frames, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
            )
        )
        refused = client.get(frames, headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert as_stored[0][0].startswith("image/dicom-rle")
    assert anything[0][0].startswith("image/dicom-rle")
    assert native[0][0] == "application/octet-stream"
    pixels = rle["pixels"]
    decoded = np.frombuffer(native[0][1], dtype=pixels.dtype).reshape(pixels.shape)
    assert np.array_equal(decoded, pixels)
    assert refused.status_code == 406


def test_http_settings_are_validated() -> None:
    assert HttpSettings.from_mapping({}, "node.yaml") == HttpSettings()
    with pytest.raises(InvalidInput, match="http.max_upload"):
        HttpSettings.from_mapping({"max_upload_bytes": -1}, "node.yaml")
    with pytest.raises(InvalidInput, match="unknown key http.port"):
        HttpSettings.from_mapping({"port": 1}, "node.yaml")
    with pytest.raises(InvalidInput, match="cors_origins"):
        HttpSettings.from_mapping({"cors_origins": "*"}, "node.yaml")
    settings = HttpSettings.from_mapping(
        {"base_url": "https://b.example.org/", "cors_origins": ["http://localhost:3000"]}, "x"
    )
    assert settings.base_url == "https://b.example.org"
    assert settings.cors_origins == ("http://localhost:3000",)


def test_base_url_and_cors_for_a_browser_viewer(tmp_path: Any) -> None:
    from biobank.ingest.node import NodeRole, init_node
    from tests.api.conftest import serve_node

    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    text = node.config_path.read_text() + (
        "http:\n  base_url: https://viewer.example.org\n  cors_origins: [http://localhost:3000]\n"
    )
    node.config_path.write_text(text)
    from biobank.ingest.node import open_node

    node = open_node(node.home)
    thread, tokens = serve_node(node, jobs=1)
    with thread as port:
        url = f"http://127.0.0.1:{port}"
        preflight = httpx.options(
            f"{url}/dicomweb/studies",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        other = httpx.options(
            f"{url}/dicomweb/studies",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "access-control-allow-origin" not in other.headers


def test_too_large_uploads_are_413(tmp_path: Any) -> None:
    from biobank.ingest.node import NodeRole, init_node, open_node
    from tests.api.conftest import serve_node

    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    with node.config_path.open("a") as config:
        config.write("http:\n  max_upload_bytes: 200000\n  max_instance_bytes: 50000\n")
    thread, tokens = serve_node(open_node(node.home), jobs=1)
    phi = make_patient_phi(22, seed=5)
    small = dicom_bytes(make_ct_series(phi, 1, 16, 16)[0])
    big = dicom_bytes(make_ct_series(phi, 1, 256, 256)[0])  # 128 KiB of pixels
    headers = {"Authorization": f"Bearer {tokens['up1']}"}
    with thread as port:
        url = f"http://127.0.0.1:{port}/dicomweb/studies"
        body, content_type = stow_body([small, big])
        one = httpx.post(url, content=body, headers={**headers, "Content-Type": content_type})
        body, content_type = stow_body([small] * (250_000 // len(small)))
        many = httpx.post(url, content=body, headers={**headers, "Content-Type": content_type})
    assert one.status_code == 413 and "part 2" in one.json()["error"]
    assert many.status_code == 413 and "max_upload_bytes" in many.json()["error"]
