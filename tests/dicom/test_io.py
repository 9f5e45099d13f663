"""Entry points silence pydicom's messages, which quote header values (PHI)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from pydicom.dataelem import DataElement
from biobank.dicom.io import quiet_pydicom
if sys.argv[1] == "quiet":
    quiet_pydicom()
DataElement(0x00080020, "DA", "QZLEAK19770101")  # pydicom: "Invalid value for VR DA: '...'"
"""


@pytest.mark.parametrize(("mode", "leaks"), [("loud", True), ("quiet", False)])
def test_quiet_pydicom_keeps_values_out_of_messages(mode: str, leaks: bool) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ("QZLEAK19770101" in proc.stderr) is leaks
