"""Remembered element results change nothing: same bytes and records, in any order."""

from __future__ import annotations

import io

import pytest

import biobank.deid.service as service
from biobank.deid import Profile, Pseudonymizer, builtin_profile, context, deidentify_bytes
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.conftest import NoText, testdata


def _series() -> list[bytes]:
    files = []
    for index in range(2):
        phi = make_patient_phi(index, seed=3)
        for ds in make_ct_series(phi, 4, rows=16, cols=16) + make_mr_series(
            phi, 4, rows=16, cols=16
        ):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            files.append(buffer.getvalue())
    for name in ("rtstruct.dcm", "reportsi.dcm", "CT_small.dcm", "liver.dcm"):
        files.append(testdata(name).read_bytes())
    return files


def _run(
    files: list[bytes], profile: Profile, pseudonymizer: Pseudonymizer
) -> list[tuple[bytes, dict]]:
    out = []
    for data in files:
        result = deidentify_bytes(data, profile, pseudonymizer, text_detector=NoText())
        out.append((result.data, result.record.to_json()))
    return out


@pytest.mark.parametrize("profile_name", ["research", "basic"])
def test_memo_changes_nothing(
    profile_name: str, pseudonymizer: Pseudonymizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = builtin_profile(profile_name)
    files = _series()
    context._MEMOS.clear()
    forward = _run(files, profile, pseudonymizer)
    context._MEMOS.clear()
    backward = list(reversed(_run(list(reversed(files)), profile, pseudonymizer)))
    monkeypatch.setattr(service, "MEMO_DECISIONS", frozenset())
    context._MEMOS.clear()
    without = _run(files, profile, pseudonymizer)
    assert forward == without
    assert backward == without


def test_memo_is_used(research: Profile, pseudonymizer: Pseudonymizer) -> None:
    context._MEMOS.clear()
    _run(_series()[:4], research, pseudonymizer)
    assert sum(len(m) for m in context._MEMOS.values()) > 0
