"""The ``dicomweb-client`` library (a real third-party DICOMweb client) against our node.

dicomweb-client sends ``Host: 127.0.0.1`` without the port (it sets the header itself): the
RetrieveURLs and BulkDataURIs it gets back must still name the port the node listens on.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from tests.api.conftest import Served

pytestmark = pytest.mark.peer

SLICES = 6


def _value(element: dict[str, Any], tag: str) -> Any:
    return element.get(tag, {}).get("Value", [None])[0]


def _client(served: Served, user: str) -> DICOMwebClient:
    return DICOMwebClient(
        url=f"{served.url}/dicomweb",
        headers={"Authorization": f"Bearer {served.tokens[user]}"},
    )


@pytest.fixture(scope="module")
def phi() -> Any:
    return make_patient_phi(21, seed=9)


@pytest.fixture(scope="module")
def study(served: Served, phi: Any) -> dict[str, Any]:
    """A CT series stored with dicomweb-client's STOW-RS; the UIDs the node gave it."""
    datasets = make_ct_series(phi, SLICES, rows=48, cols=40)
    answer = _client(served, "up1").store_instances(datasets)
    referenced = answer.ReferencedSOPSequence
    assert len(referenced) == SLICES and "FailedSOPSequence" not in answer
    url = str(referenced[0].RetrieveURL)
    study_uid = url.split("/studies/")[1].split("/")[0]
    series_uid = url.split("/series/")[1].split("/")[0]
    sops = [str(item.ReferencedSOPInstanceUID) for item in referenced]
    return {"study": study_uid, "series": series_uid, "sops": sops, "datasets": datasets}


def _stored(served: Served, sop: str) -> bytes:
    """The bytes the node stored for ``sop``."""
    catalog = served.node.open_catalog()
    try:
        (instance,) = catalog.find_instances(sop_instance_uid=sop)
    finally:
        catalog.close()
    return served.node.open_store().get(instance.blob_digest)


def test_store_de_identifies_and_keeps_the_pixels(
    served: Served, study: dict[str, Any], phi: Any
) -> None:
    assert study["study"] != str(study["datasets"][0].StudyInstanceUID)
    stored = pydicom.dcmread(io.BytesIO(_stored(served, study["sops"][0])))
    assert stored.PatientIdentityRemoved == "YES"
    assert phi.family_name not in str(stored.PatientName)
    originals = {int(ds.InstanceNumber): ds.pixel_array for ds in study["datasets"]}
    assert np.array_equal(stored.pixel_array, originals[int(stored.InstanceNumber)])


def test_search_for_studies_with_a_wildcard_name(served: Served, study: dict[str, Any]) -> None:
    client = _client(served, "cur")
    (found,) = client.search_for_studies(search_filters={"StudyInstanceUID": study["study"]})
    name = _value(found, "00100010")["Alphabetic"]
    assert _value(found, "00201208") == SLICES and found["00080061"]["Value"] == ["CT"]
    # dicomweb-client percent-encodes the '*'.
    by_name = client.search_for_studies(
        search_filters={"PatientName": name[:4] + "*"}, fields=["NumberOfStudyRelatedInstances"]
    )
    assert study["study"] in [_value(s, "0020000D") for s in by_name]
    paged = client.search_for_studies(limit=1, offset=0)
    assert len(paged) == 1


def test_search_for_series_and_instances(served: Served, study: dict[str, Any]) -> None:
    client = _client(served, "cur")
    (series,) = client.search_for_series(study_instance_uid=study["study"])
    assert _value(series, "0020000E") == study["series"]
    assert _value(series, "00080060") == "CT" and _value(series, "00201209") == SLICES
    instances = client.search_for_instances(
        study_instance_uid=study["study"], series_instance_uid=study["series"]
    )
    assert sorted(_value(i, "00080018") for i in instances) == sorted(study["sops"])
    assert {_value(i, "00280010") for i in instances} == {48}
    assert {_value(i, "00280011") for i in instances} == {40}


def test_retrieve_series_returns_the_stored_instances(
    served: Served, study: dict[str, Any]
) -> None:
    datasets = _client(served, "cur").retrieve_series(study["study"], study["series"])
    assert sorted(str(ds.SOPInstanceUID) for ds in datasets) == sorted(study["sops"])
    for ds in datasets:
        stored = pydicom.dcmread(io.BytesIO(_stored(served, str(ds.SOPInstanceUID))))
        assert ds.PixelData == stored.PixelData
        assert ds.PatientID == stored.PatientID and ds.PatientIdentityRemoved == "YES"


def test_metadata_frames_and_bulk_data_agree(served: Served, study: dict[str, Any]) -> None:
    client = _client(served, "cur")
    study_metadata = client.retrieve_study_metadata(study["study"])
    series_metadata = client.retrieve_series_metadata(study["study"], study["series"])
    assert sorted(_value(m, "00080018") for m in study_metadata) == sorted(study["sops"])
    assert {_value(m, "00080018") for m in series_metadata} == set(study["sops"])
    sop = study["sops"][0]
    meta = next(m for m in series_metadata if _value(m, "00080018") == sop)
    assert _value(meta, "00120062") == "YES"
    pixels = pydicom.dcmread(io.BytesIO(_stored(served, sop))).PixelData
    (frame,) = client.retrieve_instance_frames(study["study"], study["series"], sop, [1])
    assert frame == pixels
    (bulk,) = client.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert bulk == pixels


def test_retrieve_instance_rendered(served: Served, study: dict[str, Any]) -> None:
    sop = study["sops"][0]
    png = _client(served, "cur").retrieve_instance_rendered(
        study["study"], study["series"], sop, media_types=("image/png",)
    )
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (40, 48)
    values = np.asarray(image)
    assert values.min() < values.max()  # a picture, not a blank
