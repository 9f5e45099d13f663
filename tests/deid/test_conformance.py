"""De-identification must not make a valid object invalid: dciodvfy before and after.

``dciodvfy`` (Debian dicom3tools) checks an instance against its IOD. For each input the test
collects the "Error" lines of the input and of the de-identified output, normalised (the values
quoted as ``= <…>`` dropped, since UIDs, dates and names legitimately change), and fails on
any error the output has that the input did not. Warnings are not compared: a pseudonym such
as ``P0ABC…`` in a PN is reported as a "retired Person Name form", by design.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset

from biobank.deid import Profile, Pseudonymizer
from biobank.deid.profiles import builtin_profile
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.conftest import NoText, deid_data, run_deid, testdata, to_bytes
from tests.deid.adversarial_helpers import make_rtstruct, make_seg

DCIODVFY = shutil.which("dciodvfy")

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian dicom3tools) is not installed"),
]

_VALUE = re.compile(r"= <[^<>]*>")


def dciodvfy_errors(data: bytes, tmp_path: Path, name: str) -> set[str]:
    """The normalised "Error" lines dciodvfy reports for the file ``data``."""
    path = tmp_path / name
    path.write_bytes(data)
    assert DCIODVFY is not None
    completed = subprocess.run(  # noqa: S603 - fixed binary, our own temporary file
        [DCIODVFY, "-new", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    lines = (completed.stdout + completed.stderr).splitlines()
    assert any(line.strip() and not line.startswith(("Error", "Warning")) for line in lines), (
        "dciodvfy did not recognise the IOD"
    )
    return {_VALUE.sub("= <>", line.strip()) for line in lines if line.startswith("Error")}


def _synthetic(kind: str) -> bytes:
    phi = make_patient_phi(4)
    ct = make_ct_series(phi, n_slices=5, rows=64, cols=64)
    if kind == "ct":
        return to_bytes(ct[0])
    if kind == "mr":
        return to_bytes(make_mr_series(phi, n_slices=1, rows=64, cols=64)[0])
    if kind == "rtstruct":
        return to_bytes(make_rtstruct(ct))
    return to_bytes(make_seg(ct))


SYNTHETIC = ["ct", "mr", "rtstruct", "seg"]
REAL = [
    "CT_small.dcm",
    "MR_small.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "rtstruct.dcm",
    "emri_small.dcm",
    "examples_overlay.dcm",
    "waveform_ecg.dcm",
    "liver.dcm",
    "JPEG2000.dcm",
    "eCT_Supplemental.dcm",
    "SC_rgb_rle.dcm",
    "GREYSCALE_IMAGE.dcm",
]


def _check(data: bytes, profile: Profile, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    before = dciodvfy_errors(data, tmp_path, "input.dcm")
    output = run_deid(data, profile, pseudonymizer, text_detector=NoText())
    after = dciodvfy_errors(output.data, tmp_path, "output.dcm")
    new = sorted(after - before)
    assert not new, "de-identification introduced IOD errors:\n" + "\n".join(new)


@pytest.mark.parametrize("profile_name", ["research", "basic"])
@pytest.mark.parametrize("kind", SYNTHETIC)
def test_synthetic_outputs_introduce_no_iod_errors(
    kind: str, profile_name: str, pseudonymizer: Pseudonymizer, tmp_path: Path
) -> None:
    _check(_synthetic(kind), builtin_profile(profile_name), pseudonymizer, tmp_path)


REAL_CASES = [
    pytest.param(
        name,
        profile_name,
        id=f"{profile_name}-{name}",
    )
    for name in REAL
    for profile_name in ("research", "basic")
]


@pytest.mark.parametrize(("name", "profile_name"), REAL_CASES)
def test_real_outputs_introduce_no_iod_errors(
    name: str, profile_name: str, pseudonymizer: Pseudonymizer, tmp_path: Path
) -> None:
    path = deid_data(name) if name == "GREYSCALE_IMAGE.dcm" else testdata(name)
    _check(path.read_bytes(), builtin_profile(profile_name), pseudonymizer, tmp_path)


def test_dciodvfy_sees_a_broken_object(tmp_path: Path) -> None:
    """The comparison can fail: removing a Type 1 attribute is reported as a new error."""
    ds: Dataset = make_ct_series(make_patient_phi(4), n_slices=1, rows=16, cols=16)[0]
    before = dciodvfy_errors(to_bytes(ds), tmp_path, "good.dcm")
    del ds.Rows
    after = dciodvfy_errors(to_bytes(ds), tmp_path, "broken.dcm")
    assert after - before
