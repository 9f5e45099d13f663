"""The hand-written encoder writes exactly what pydicom's writer writes."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread, dcmwrite

from biobank.deid import Profile, Pseudonymizer, apply_profile, encode_dataset, read_dataset
from biobank.errors import QuarantineRequired
from tests.conftest import NoText, testdata

FILES = [
    "CT_small.dcm",  # explicit VR LE, private groups, OtherPatientIDsSequence
    "MR_small.dcm",
    "rtstruct.dcm",  # deep sequences
    "reportsi.dcm",  # SR content tree
    "JPEG2000.dcm",  # encapsulated pixel data
    "liver.dcm",  # enhanced multi-frame functional groups
    "waveform_ecg.dcm",
    "MR_small_implicit.dcm",  # implicit VR: pydicom's own writer path
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated
    "chrH31.dcm",  # ISO 2022 Japanese
]


@pytest.mark.parametrize("name", FILES)
def test_fast_encoder_matches_pydicom(
    name: str, research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = read_dataset(testdata(name).read_bytes())
    try:
        apply_profile(ds, research, pseudonymizer, text_detector=NoText())
    except QuarantineRequired:
        pytest.skip("held back by policy")
    ours = encode_dataset(ds)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    buffer = io.BytesIO()
    dcmwrite(
        buffer,
        ds,
        implicit_vr=syntax == "1.2.840.10008.1.2",
        little_endian=syntax != "1.2.840.10008.1.2.2",
        enforce_file_format=True,
    )
    assert ours == buffer.getvalue()
    again = dcmread(io.BytesIO(ours))
    assert again.SOPInstanceUID == ds.SOPInstanceUID
    assert ours[:128] == b"\x00" * 128 and ours[128:132] == b"DICM"
