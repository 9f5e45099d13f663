"""Referential integrity, intervals and determinism across separately de-identified files.

A CT series, an RT Structure Set whose contours reference every slice, and a highdicom
Segmentation of the same slices are de-identified one file at a time with the same site key.
Every reference in the RTSTRUCT and the SEG must then point at the new UIDs of the CT outputs
(``research/deid.md`` §6 case 19; shanoir #3707, pymedphys #372, slicebox #290), intervals
within a patient must survive the date shift, and the same input under the same key must give
the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from pydicom import Dataset

from biobank.deid import Profile, Pseudonymizer, SiteKey
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.conftest import OTHER_KEY_BYTES, Deidentified, NoText, run_deid, to_bytes
from tests.deid.adversarial_helpers import (
    assert_absent,
    make_image,
    make_rtstruct,
    make_seg,
    walk,
)

REFERENCE_KEYWORDS = (
    "ReferencedSOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedFrameOfReferenceUID",
)


def deid(source: Dataset | bytes, profile: Profile, pseudonymizer: Pseudonymizer) -> Deidentified:
    return run_deid(source, profile, pseudonymizer, text_detector=NoText())


@pytest.fixture(scope="module")
def ct() -> list[Dataset]:
    return make_ct_series(make_patient_phi(7), n_slices=5, rows=64, cols=64)


@pytest.fixture(scope="module")
def inputs(ct: list[Dataset]) -> dict[str, bytes]:
    """Encoded inputs, made once: five CT slices, the RTSTRUCT and the SEG."""
    files = {f"ct{i}": to_bytes(image) for i, image in enumerate(ct)}
    files["rtstruct"] = to_bytes(make_rtstruct(ct))
    files["seg"] = to_bytes(make_seg(ct))
    return files


@pytest.fixture(scope="module")
def outputs(
    inputs: dict[str, bytes], research: Profile, pseudonymizer: Pseudonymizer
) -> dict[str, Deidentified]:
    """Every input de-identified on its own (as uploads arrive), same key."""
    return {name: deid(data, research, pseudonymizer) for name, data in inputs.items()}


def _uids(ds: Dataset) -> Iterator[tuple[str, str, str]]:
    """(path, keyword, value) of every reference-carrying UID at any depth."""
    for path, elem in walk(ds):
        if elem.keyword in REFERENCE_KEYWORDS and elem.value:
            yield path, elem.keyword, str(elem.value)


def _ct_mapping(ct: list[Dataset], outputs: dict[str, Deidentified]) -> dict[str, str]:
    """Original CT UID -> the UID its de-identified output carries."""
    mapping: dict[str, str] = {}
    for i, image in enumerate(ct):
        out = outputs[f"ct{i}"].dataset
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            mapping[str(image[keyword].value)] = str(out[keyword].value)
        mapping[str(image.FrameOfReferenceUID)] = str(out.FrameOfReferenceUID)
    return mapping


def _all_original_uids(inputs: dict[str, bytes]) -> set[str]:
    from tests.deid.adversarial_helpers import read

    found: set[str] = set()
    for data in inputs.values():
        for _, elem in walk(read(data)):
            if elem.VR == "UI" and elem.value and not elem.keyword.endswith("ClassUID"):
                values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
                found.update(str(v) for v in values if not str(v).startswith("1.2.840.10008."))
    return found


def test_ct_outputs_share_study_series_and_frame_of_reference(
    ct: list[Dataset], outputs: dict[str, Deidentified]
) -> None:
    outs = [outputs[f"ct{i}"].dataset for i in range(len(ct))]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(o[keyword].value) for o in outs}) == 1, keyword
        assert str(outs[0][keyword].value) != str(ct[0][keyword].value)
    assert len({str(o.SOPInstanceUID) for o in outs}) == len(ct)


@pytest.mark.parametrize("name", ["rtstruct", "seg"])
def test_every_reference_points_at_the_new_ct_uids(
    name: str,
    ct: list[Dataset],
    inputs: dict[str, bytes],
    outputs: dict[str, Deidentified],
) -> None:
    from tests.deid.adversarial_helpers import read

    mapping = _ct_mapping(ct, outputs)
    before = {path: value for path, _, value in _uids(read(inputs[name]))}
    after = {path: value for path, _, value in _uids(outputs[name].dataset)}
    checked = 0
    for path, value in before.items():
        if value in mapping:
            assert path in after, f"{name}: reference {path} was dropped"
            assert after[path] == mapping[value], f"{name}: {path} points elsewhere"
            checked += 1
    # Every slice is referenced (twice in the RTSTRUCT, at least once in the SEG).
    new_sops = {str(outputs[f"ct{i}"].dataset.SOPInstanceUID) for i in range(len(ct))}
    referenced = {v for p, k, v in _uids(outputs[name].dataset) if k == "ReferencedSOPInstanceUID"}
    assert new_sops <= referenced if name == "rtstruct" else referenced & new_sops
    assert checked >= (2 * len(ct) + 3 if name == "rtstruct" else len(ct) + 2)
    out = outputs[name].dataset
    ct_out = outputs["ct0"].dataset
    assert out.StudyInstanceUID == ct_out.StudyInstanceUID, "not in the CT's study any more"
    assert out.PatientID == ct_out.PatientID


@pytest.mark.parametrize("name", ["ct0", "ct4", "rtstruct", "seg"])
def test_no_original_uid_survives(
    name: str, inputs: dict[str, bytes], outputs: dict[str, Deidentified]
) -> None:
    originals = _all_original_uids(inputs)
    values = {
        str(v)
        for _, elem in walk(outputs[name].dataset)
        if elem.VR == "UI" and elem.value
        for v in ([elem.value] if isinstance(elem.value, str) else elem.value)
    }
    values |= {str(outputs[name].dataset.file_meta.MediaStorageSOPInstanceUID)}
    assert not values & originals
    assert_absent(outputs[name].data, *originals)


def test_rtstruct_structure_set_roi_frame_of_reference(
    ct: list[Dataset], outputs: dict[str, Deidentified]
) -> None:
    out = outputs["rtstruct"].dataset
    new_for = str(outputs["ct0"].dataset.FrameOfReferenceUID)
    assert str(out.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID) == new_for
    for roi in out.StructureSetROISequence:
        assert str(roi.ReferencedFrameOfReferenceUID) == new_for
    contours = out.ROIContourSequence[0].ContourSequence
    assert len(contours) == len(ct)
    new_sops = [str(outputs[f"ct{i}"].dataset.SOPInstanceUID) for i in range(len(ct))]
    assert [str(c.ContourImageSequence[0].ReferencedSOPInstanceUID) for c in contours] == new_sops


def test_seg_source_images_per_frame(outputs: dict[str, Deidentified], ct: list[Dataset]) -> None:
    out = outputs["seg"].dataset
    new_sops = [str(outputs[f"ct{i}"].dataset.SOPInstanceUID) for i in range(len(ct))]
    sources = [
        str(src.ReferencedSOPInstanceUID)
        for frame in out.PerFrameFunctionalGroupsSequence
        for derivation in frame.DerivationImageSequence
        for src in derivation.SourceImageSequence
    ]
    assert sources, "SEG lost its per-frame source references"
    assert set(sources) <= set(new_sops)
    assert str(out.FrameOfReferenceUID) == str(outputs["ct0"].dataset.FrameOfReferenceUID)
    series = out.ReferencedSeriesSequence[0]
    assert str(series.SeriesInstanceUID) == str(outputs["ct0"].dataset.SeriesInstanceUID)


# --- dates ---------------------------------------------------------------------------------


def _date(value: object) -> dt.date:
    return dt.datetime.strptime(str(value), "%Y%m%d").date()


def test_interval_between_two_studies_of_a_patient_preserved(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    first = make_image(key="interval-1", StudyDate="20240110", IssuerOfPatientID="QZ-ISSUER")
    later = (_date("20240110") + dt.timedelta(days=37)).strftime("%Y%m%d")
    second = make_image(key="interval-2", StudyDate=later, IssuerOfPatientID="QZ-ISSUER")
    a = deid(first, research, pseudonymizer).dataset
    b = deid(second, research, pseudonymizer).dataset
    assert (_date(b.StudyDate) - _date(a.StudyDate)).days == 37
    assert a.StudyDate != "20240110"
    assert a.PatientID == b.PatientID


def _acquisition_minus_study(ds: Dataset) -> dt.timedelta:
    acquired = dt.datetime.strptime(str(ds.AcquisitionDateTime)[:14], "%Y%m%d%H%M%S")
    study = dt.datetime.strptime(f"{ds.StudyDate}{str(ds.StudyTime)[:6]}", "%Y%m%d%H%M%S")
    return acquired - study


def test_acquisition_datetime_minus_study_date_unchanged(
    ct: list[Dataset], outputs: dict[str, Deidentified]
) -> None:
    for i, image in enumerate(ct):
        out = outputs[f"ct{i}"].dataset
        assert _acquisition_minus_study(out) == _acquisition_minus_study(image)
        assert str(out.AcquisitionDateTime)[14:] == str(image.AcquisitionDateTime)[14:]
        assert out.StudyDate != image.StudyDate


def test_same_patient_in_two_files_same_pseudonym_and_offset(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    phi = make_patient_phi(8)
    ct = make_ct_series(phi, n_slices=1, rows=16, cols=16)[0]
    mr = make_mr_series(phi, n_slices=1, rows=16, cols=16)[0]
    ct_out = deid(to_bytes(ct), research, pseudonymizer).dataset
    mr_out = deid(to_bytes(mr), research, pseudonymizer).dataset
    assert ct_out.PatientID == mr_out.PatientID
    assert ct_out.PatientName == mr_out.PatientName
    ct_shift = (_date(ct_out.StudyDate) - _date(ct.StudyDate)).days
    mr_shift = (_date(mr_out.StudyDate) - _date(mr.StudyDate)).days
    assert ct_shift == mr_shift != 0
    assert ct_out.StudyInstanceUID != mr_out.StudyInstanceUID
    other = make_ct_series(make_patient_phi(9), n_slices=1, rows=16, cols=16)[0]
    assert deid(to_bytes(other), research, pseudonymizer).dataset.PatientID != ct_out.PatientID


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ct0", "rtstruct", "seg"])
def test_same_input_same_key_same_bytes(
    name: str,
    inputs: dict[str, bytes],
    outputs: dict[str, Deidentified],
    research: Profile,
    site_key: SiteKey,
) -> None:
    again = deid(inputs[name], research, Pseudonymizer(site_key))  # fresh caches
    assert again.data == outputs[name].data
    assert again.record.to_json() == outputs[name].record.to_json()


@pytest.mark.parametrize("name", ["ct0", "rtstruct", "seg"])
def test_other_key_other_pseudonym_and_uids(
    name: str,
    inputs: dict[str, bytes],
    outputs: dict[str, Deidentified],
    research: Profile,
) -> None:
    other = deid(inputs[name], research, Pseudonymizer(SiteKey(OTHER_KEY_BYTES))).dataset
    mine = outputs[name].dataset
    assert other.PatientID != mine.PatientID
    mine_uids = {v for _, _, v in _uids(mine)} | {str(mine.SOPInstanceUID)}
    other_uids = {v for _, _, v in _uids(other)} | {str(other.SOPInstanceUID)}
    assert mine_uids and not mine_uids & other_uids
    # The keys are fixed, so this is deterministic (a shared offset would be a 1-in-3650 fluke).
    assert other.StudyDate != mine.StudyDate
