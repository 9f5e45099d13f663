"""The adversarial cases of ``research/deid.md`` §6, one test (or parametrised set) per case.

Each case plants known identifying values where real files hide them, runs the file through
the public bytes API (:func:`biobank.deid.deidentify_bytes`, via ``run_deid``) and checks two
things: the planted value bytes occur nowhere in the output file, and the structurally right
thing happened (sequence removed, UIDs remapped consistently, dates shifted keeping precision,
private attributes matched by creator, file meta rebuilt, pixels masked...).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_is_retired, keyword_for_tag
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from biobank.deid import Option, PixelAction, Profile, Pseudonymizer, SiteKey, parse_profile
from biobank.deid.private import load_safe_private
from biobank.deid.profiles import builtin_profile
from biobank.deid.service import DUMMY_TEXT
from biobank.deid.table import load_table
from biobank.dicom.synthetic import (
    PlantedPHI,
    make_ct_series,
    make_mr_series,
    make_patient_phi,
)
from biobank.errors import QuarantineRequired
from tests.conftest import OTHER_KEY_BYTES, NoText, deid_data, run_deid, testdata, to_bytes
from tests.deid.adversarial_helpers import (
    FAMILY,
    GIVEN,
    ISSUER,
    MRN,
    NAME,
    BrightTextDetector,
    assert_absent,
    code_item,
    decoded_frames,
    empty_items,
    encode,
    leaks,
    make_image,
    make_ultrasound,
    private_not_on_safe_list,
    read,
    rgb_frames,
    tags_anywhere,
    uid,
    values_of,
    walk,
    with_file_meta,
)

PROFILES = ["research", "basic"]


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    """Both packaged profiles, for cases whose handling does not depend on the options."""
    return builtin_profile(request.param)


def deid(source: Dataset | bytes | Path, profile: Profile, pseudonymizer: Pseudonymizer, **kw):  # noqa: ANN201
    """De-identify with a detector that finds no text unless the case brings its own."""
    kw.setdefault("text_detector", NoText())
    return run_deid(source, profile, pseudonymizer, **kw)


def day_shift(before: Dataset, after: Dataset) -> int:
    """Days the StudyDate moved (the patient's offset)."""
    old = dt.datetime.strptime(str(before.StudyDate), "%Y%m%d").date()
    new = dt.datetime.strptime(str(after.StudyDate), "%Y%m%d").date()
    return (new - old).days


def shift_dt_text(value: str, days: int) -> str:
    """Expected shift of a full DT value: the date moves, clock, fraction and offset stay."""
    date = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return date.strftime("%Y%m%d") + value[8:]


def parse_dt(value: str) -> dt.datetime:
    """Parse ``YYYYMMDDHHMMSS[.F][+ZZZZ]`` (offset ignored: both sides carry the same one)."""
    match = re.match(r"^(\d{14})(\.\d+)?", value)
    assert match, f"not a full DT: {value!r}"
    base = dt.datetime.strptime(match.group(1), "%Y%m%d%H%M%S")
    fraction = float(match.group(2) or 0)
    return base + dt.timedelta(seconds=fraction)


def original(source: Dataset) -> Dataset:
    """A parsed copy of what goes in (so the test compares with exactly the input bytes)."""
    return read(to_bytes(source))


# --- 1-4: identity sequences ---------------------------------------------------------------


def test_case01_other_patient_ids_sequence_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    path = testdata("CT_small.dcm")
    source = dcmread(path)
    other_ids = values_of(source, 0x00100020)
    assert len(other_ids) >= 3, "fixture lost its Other Patient IDs Sequence"
    planted = make_image()
    planted.IssuerOfPatientID = ISSUER
    planted.OtherPatientIDsSequence = Sequence(
        [
            Dataset.from_json(
                {
                    "00100020": {"vr": "LO", "Value": [pid]},
                    "00100021": {"vr": "LO", "Value": [issuer]},
                }
            )
            for pid, issuer in (("QZINS998877", "QZ-INSURER"), ("QZNID-4411", "QZ-REGISTRY"))
        ]
    )
    for result in (deid(path, profile, pseudonymizer), deid(planted, profile, pseudonymizer)):
        assert 0x00101002 not in tags_anywhere(result.dataset)
        assert not empty_items(result.dataset)
    assert_absent(deid(path, profile, pseudonymizer).data, *other_ids, str(source.PatientName))
    assert_absent(
        deid(planted, profile, pseudonymizer).data,
        "QZINS998877",
        "QZ-INSURER",
        "QZNID-4411",
        "QZ-REGISTRY",
        ISSUER,
        MRN,
        NAME,
    )


def test_case02_retired_other_patient_ids_and_names_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.add_new(0x00101000, "LO", ["QZOTHER-11223", "QZOTHER-44556"])
    ds.OtherPatientNames = ["QZMAIDEN^ELSPETH", "QZALIAS^ELLY"]
    assert dictionary_is_retired(0x00101000)
    result = deid(ds, profile, pseudonymizer)
    assert {0x00101000, 0x00101001}.isdisjoint(tags_anywhere(result.dataset))
    assert_absent(result.data, "QZOTHER-11223", "QZOTHER-44556", "QZMAIDEN", "QZALIAS", FAMILY)


def _request_item(**values: str) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def test_case03_request_attributes_removed_or_cleaned(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image(AccessionNumber="QZACC5550192")
    ds.RequestAttributesSequence = Sequence(
        [
            _request_item(
                RequestedProcedureID="QZRP88120",
                ScheduledProcedureStepID="QZSPS77013",
                AccessionNumber="QZACC5550192",
                ReasonForTheRequestedProcedure=f"follow-up nodule {FAMILY} {MRN}",
                RequestedProcedureDescription="CT THORAX",
                ScheduledProcedureStepDescription=f"THORAX {GIVEN}",
            )
        ]
    )
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, "QZRP88120", "QZSPS77013", "QZACC5550192", FAMILY, GIVEN, MRN)
    if Option.CLEAN_DESCRIPTORS in profile.options:
        # C: the sequence may stay, cleaned; clinical words survive the cleaning.
        assert "THORAX" in " ".join(values_of(result.dataset, 0x00321060))
    else:
        assert 0x00400275 not in result.dataset
    assert not empty_items(result.dataset)


def test_case03_request_attributes_leaves_no_empty_item(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.RequestAttributesSequence = Sequence(
        [_request_item(RequestedProcedureID="QZRP88121", ScheduledProcedureStepID="QZSPS7701")]
    )
    result = deid(ds, research, pseudonymizer)
    assert_absent(result.data, "QZRP88121", "QZSPS7701")
    assert not empty_items(result.dataset), "an emptied item was left in the sequence"


def test_case04_referenced_patient_and_study_sequences(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    patient_ref, study_ref = uid("patient-ref"), uid("study-ref")
    ds.ReferencedPatientSequence = Sequence(
        [_request_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.1.1")]
    )
    ds.ReferencedPatientSequence[0].ReferencedSOPInstanceUID = patient_ref
    ds.ReferencedStudySequence = Sequence(
        [_request_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1")]
    )
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = study_ref
    result = deid(ds, profile, pseudonymizer)
    assert 0x00081120 not in result.dataset
    assert_absent(result.data, patient_ref, study_ref)
    for value in values_of(result.dataset, 0x00081155):
        assert value == pseudonymizer.uid(study_ref)
    # A real file: deid-data's CT brain secondary capture carries both sequences.
    real = dcmread(deid_data("ctbrain1.dcm"), stop_before_pixels=True)
    refs = values_of(real, 0x00081155)
    out = deid(deid_data("ctbrain1.dcm"), profile, pseudonymizer)
    assert 0x00081120 not in out.dataset
    assert_absent(out.data, *refs, str(real.PatientID), str(real.PatientName))


def test_case04_patient_identity_nested_in_kept_reference_item(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = uid("nested-identity-ref")
    ref.PatientID = "QZPRIORID4471"
    ref.PatientName = "QZPRIOR^NAME"
    ds.ReferencedImageSequence = Sequence([ref])
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, "QZPRIORID4471", "QZPRIOR")


# --- 5-6: structured reports ---------------------------------------------------------------


def _content_item(kind: str, meaning: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = kind
    item.ConceptNameCodeSequence = Sequence([code_item("QZ" + meaning[:6], "99QZ", meaning)])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def make_sr() -> Dataset:
    """A Comprehensive SR with names, IDs and dates in its content tree."""
    ds = make_image(modality="SR", sop_class="1.2.840.10008.5.1.4.1.1.88.33")
    for keyword in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelData",
        "FrameOfReferenceUID",
        "ImageType",
    ):
        delattr(ds, keyword)
    ds.ContentDate = "20240316"
    ds.ContentTime = "090000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    ds.ConceptNameCodeSequence = Sequence([code_item("18748-4", "LN", "Diagnostic report")])
    observer = Dataset()
    observer.VerifyingObserverName = "QZVERIFIER^HANNELORE"
    observer.VerifyingOrganization = "QZ Radiology Partners Nordstadt"
    observer.VerificationDateTime = "20240316093000"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence(
        [code_item("QZSTAFF4471", "99QZ", "QZVERIFIER HANNELORE")]
    )
    ds.VerifyingObserverSequence = Sequence([observer])
    nested = _content_item("CONTAINER", "Findings", ContinuityOfContent="SEPARATE")
    nested.ContentSequence = Sequence(
        [
            _content_item(
                "TEXT",
                "Finding",
                TextValue=(
                    f"Patient {GIVEN} {FAMILY} (MRN {MRN}) seen 15/03/2024; discussed with "
                    "Dr QZCOLLEAGUE. Small nodule in the right lower lobe."
                ),
            ),
            _content_item("DATETIME", "Follow-up", DateTime="20240415101500.000+0100"),
        ]
    )
    ds.ContentSequence = Sequence(
        [
            _content_item("PNAME", "Recording observer", PersonName="QZCOLLEAGUE^KONSTANZE"),
            _content_item("DATE", "Procedure date", Date="20240315"),
            nested,
        ]
    )
    return ds


def test_case05_sr_content_tree_cleaned(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    source = make_sr()
    before = original(source)
    result = deid(source, profile, pseudonymizer)
    assert_absent(
        result.data, "QZCOLLEAGUE", "KONSTANZE", FAMILY, GIVEN, MRN, "15/03/2024", "20240315"
    )
    out = result.dataset
    for name in values_of(out, 0x0040A123):
        assert "QZCOLLEAGUE" not in name.upper()
    if profile.shifts_dates:
        offset = day_shift(before, out)
        assert offset < 0
        assert values_of(out, 0x0040A121) == [
            (dt.date(2024, 3, 15) + dt.timedelta(days=offset)).strftime("%Y%m%d")
        ]
        assert values_of(out, 0x0040A120) == [shift_dt_text("20240415101500.000+0100", offset)]
        text = " ".join(values_of(out, 0x0040A160))
        assert "nodule" in text and "right lower lobe" in text, "clinical words were lost"
    assert not empty_items(out)


def test_case05_sr_real_report(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    for name in ("reportsi.dcm", "test-SR.dcm"):
        source = dcmread(testdata(name))
        names = {str(v) for _, e in walk(source) if e.VR == "PN" for v in [e.value] if v and str(v)}
        assert names, f"{name} has no person name"
        result = deid(testdata(name), profile, pseudonymizer)
        assert_absent(result.data, *(n for n in names if len(n) >= 4))
        assert "ContentSequence" in result.dataset, "D and C keep the content tree"


def test_case06_verifying_observer_dummies(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    result = deid(make_sr(), profile, pseudonymizer)
    assert_absent(result.data, "QZVERIFIER", "HANNELORE", "QZ Radiology Partners", "QZSTAFF4471")
    observers = result.dataset.get("VerifyingObserverSequence")
    assert observers, "Verifying Observer Sequence is Type 1C in a verified SR: keep dummies"
    assert all(str(item.VerifyingObserverName) for item in observers)
    assert all(str(item.VerifyingOrganization) for item in observers)


# --- 7-11: private attributes --------------------------------------------------------------

SAFE = load_safe_private()


def _private(ds: Dataset, group: int, creator: str, slot: int, offset: int, vr: str, value: object):  # noqa: ANN202
    ds.add_new(group << 16 | slot, "LO", creator)
    ds.add_new(group << 16 | slot << 8 | offset, vr, value)
    return group << 16 | slot << 8 | offset


def test_case07_private_blocks_with_phi_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    planted = [
        (0x0009, "GEMS_PETD_01", 0x10, 0x02, "LO", "QZ7734521-PET"),
        (0x0009, "GEMS_PETD_01", 0x10, 0x0F, "LO", "QZ Klinikum Nordstadt PET"),
        (0x0009, "SECTRA_Ident_01", 0x11, 0x01, "SH", "QZACC77001"),
        (0x0009, "FDMS 1.0", 0x12, 0x04, "LO", "QZ KANJI HOSPITAL"),
        (0x0031, "MITRA LINKED ATTRIBUTES 1.0", 0x10, 0x20, "LO", "QZGLOBALPID8812"),
    ]
    ds = make_image()
    tags = []
    for group, creator, slot, offset, vr, value in planted:
        assert SAFE.lookup(group, creator, offset) is None, "test needs an unsafe element"
        tags.append(_private(ds, group, creator, slot, offset, vr, value))
    result = deid(ds, profile, pseudonymizer)
    present = tags_anywhere(result.dataset)
    assert not present & set(tags)
    assert not [t for t in present if t >> 16 & 1], "private creators left without content"
    assert_absent(result.data, *(value for *_, value in planted))
    assert result.record.removed_private >= len(planted)


def _safe_keep_entry() -> tuple[int, str, int, str]:
    entry = SAFE.lookup(0x0019, "SIEMENS MR HEADER", 0x0C)
    assert entry is not None and entry.disposition.value == "keep", "safe list changed"
    return entry.group, entry.creator, entry.element, entry.vr


@pytest.mark.parametrize("slot", [0x10, 0x11, 0x2F])
def test_case08_safe_private_matched_by_creator_not_tag(
    slot: int, research: Profile, basic: Profile, pseudonymizer: Pseudonymizer
) -> None:
    group, creator, offset, _ = _safe_keep_entry()
    unknown = next(o for o in range(0xF0, 0x100) if SAFE.lookup(group, creator, o) is None)
    ds = make_image(modality="MR", sop_class="1.2.840.10008.5.1.4.1.1.4")
    if slot != 0x10:  # another vendor block takes slot 0x10, moving ours (0019,10xx -> 11xx)
        _private(ds, group, "QZ OTHER VENDOR", 0x10, offset, "LO", "QZVENDOR-PHI-7781")
    safe_tag = _private(ds, group, creator, slot, offset, "IS", "1000")
    unknown_tag = _private(ds, group, creator, slot, unknown, "LO", "QZUNKNOWN-PRIV-5521")
    result = deid(ds, research, pseudonymizer)
    out = result.dataset
    assert safe_tag in out, "safe element lost"
    assert str(out[safe_tag].value) == "1000"
    creator_tag = group << 16 | (safe_tag >> 8 & 0xFF)
    assert str(out[creator_tag].value).strip() == creator
    assert unknown_tag not in out
    assert_absent(result.data, "QZUNKNOWN-PRIV-5521", "QZVENDOR-PHI-7781", "QZ OTHER VENDOR")
    # Without Retain Safe Private nothing private survives.
    plain = deid(ds, basic, pseudonymizer).dataset
    assert not [t for t in tags_anywhere(plain) if t >> 16 & 1]


def test_case08_real_private_sequence_file_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    source = dcmread(testdata("priv_SQ.dcm"), force=True)
    assert any(e.tag.is_private for e in source)
    source.SOPClassUID = source.file_meta.MediaStorageSOPClassUID
    source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID
    source.StudyInstanceUID = uid("priv-sq-study")
    source.SeriesInstanceUID = uid("priv-sq-series")
    source.PatientID = MRN
    result = deid(to_bytes(source), profile, pseudonymizer)
    creator = b"aaabbbccc MEDICAL SYSTEMS"
    assert not [t for t in tags_anywhere(result.dataset) if t >> 16 & 1]
    assert_absent(result.data, creator, MRN)


def test_case09_private_vr_un_never_trusted(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    # Written implicit VR: on reading, every private element is UN (no dictionary).
    pn = _private(ds, 0x0011, "QZ RIS 2.0", 0x10, 0x01, "PN", "QZHIDDEN^PRIVATENAME")
    da = _private(ds, 0x0011, "QZ RIS 2.0", 0x10, 0x02, "DA", "19610412")
    ui = _private(ds, 0x0011, "QZ RIS 2.0", 0x10, 0x03, "UI", "1.2.3.477345219.20240315")
    entry = SAFE.lookup(0x0009, "GEMS_PETD_01", 0x05)
    assert entry is not None and entry.disposition.value == "offset_date"
    kept = _private(ds, 0x0009, "GEMS_PETD_01", 0x10, 0x05, "DT", "20240315101530")
    data = encode(ds, implicit=True)
    before = read(data)
    assert read(data)[pn].VR == "UN", "the fixture must present the private PN as UN"
    result = deid(data, research, pseudonymizer)
    out = result.dataset
    assert not {pn, da, ui} & tags_anywhere(out)
    assert_absent(result.data, "QZHIDDEN", "PRIVATENAME", "19610412", "477345219")
    # The safe-list date kept in UN is shifted like a public date, by the same offset.
    assert kept in out
    raw = out[kept].value
    text = raw.decode("ascii").strip("\x00 ") if isinstance(raw, bytes) else str(raw)
    assert text == shift_dt_text("20240315101530", day_shift(before, out))


def test_case09_real_explicit_vr_un_file(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    path = testdata("explicit_VR-UN.dcm")
    source = dcmread(path, stop_before_pixels=True)
    phi = [str(source.PatientName), str(source.PatientID)]
    result = deid(path, profile, pseudonymizer)
    assert_absent(result.data, *(v for v in phi if len(v) >= 4))
    assert not private_not_on_safe_list(result.dataset)
    if Option.RETAIN_SAFE_PRIVATE not in profile.options:
        assert not [t for t in tags_anywhere(result.dataset) if t >> 16 & 1]


def test_case10_private_sequence_nested_in_public_item(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    """karnak #51: a Philips-style private SQ inside a public item holds instance UIDs."""
    ds = make_image()
    inner = Dataset()
    inner.SOPInstanceUID = uid("hidden-sop")
    inner.StudyInstanceUID = uid("hidden-study")
    inner.SeriesInstanceUID = uid("hidden-series")
    inner.PatientName = "QZNESTED^PATIENT"
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = uid("referenced")
    block = item.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
    block.add_new(0x40, "SQ", Sequence([inner]))
    deeper = Dataset()
    deeper.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(
        0x41,
        "SQ",
        Sequence([Dataset.from_json({"0020000D": {"vr": "UI", "Value": [uid("deep")]}})]),
    )
    inner.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(
        0x42, "SQ", Sequence([deeper])
    )
    ds.SourceImageSequence = Sequence([item])
    hidden = [uid("hidden-sop"), uid("hidden-study"), uid("hidden-series"), uid("deep")]
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, *hidden, "QZNESTED")
    for _, elem in walk(result.dataset):
        if elem.VR == "UI" and not str(elem.value).startswith("1.2.840.10008."):
            assert str(elem.value).startswith("2.25.")
    refs = values_of(result.dataset, 0x00081155)
    assert refs in ([], [pseudonymizer.uid(uid("referenced"))])


def _planted(phi: PlantedPHI, profile: Profile) -> list[str]:
    """The planted values a profile must remove (equipment stays under Retain Device Identity)."""
    kept: set[str] = set()
    if Option.RETAIN_DEVICE_IDENTITY in profile.options:
        kept.update(phi.categories()["equipment"])
    return [v for v in phi.values() if v not in kept]


def test_case11_siemens_csa_blobs_removed(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    phi = make_patient_phi(3)
    mr = make_mr_series(phi, n_slices=1, rows=16, cols=16)[0]
    assert b"ASCCONV" in mr[0x00291020].value
    result = deid(to_bytes(mr), profile, pseudonymizer)
    assert not {0x00291010, 0x00291020} & tags_anywhere(result.dataset)
    assert_absent(result.data, b"SV10", b"ASCCONV", b"MrPhoenixProtocol", phi.patient_name)
    assert_absent(result.data, *_planted(phi, profile))
    # A real CSA block (deid-data CT brain) with timestamps in private LO/UT elements.
    path = deid_data("ctbrain1.dcm")
    real = dcmread(path, stop_before_pixels=True)
    csa = real.private_block(0x0029, "SIEMENS CSA HEADER")
    stamps = [str(real[csa.get_tag(o)].value) for o in (0x20, 0x22) if csa.get_tag(o) in real]
    assert stamps, "fixture without CSA timestamps"
    out = deid(path, profile, pseudonymizer)
    creators = [str(e.value) for e in out.dataset if e.tag.is_private_creator]
    assert "SIEMENS CSA HEADER" not in creators
    assert_absent(out.data, *(s[:14] for s in stamps))


# --- 12: identification sequences ----------------------------------------------------------


def _person_identification(name_code: str, institution: str) -> Dataset:
    item = Dataset()
    item.PersonIdentificationCodeSequence = Sequence(
        [code_item(name_code, "99QZHR", f"{name_code} staff")]
    )
    item.PersonAddress = "QZ Lindenallee 5, 30161 Hannover"
    item.PersonTelephoneNumbers = "+49 511 99887766"
    item.InstitutionName = institution
    return item


def test_case12_identification_sequences_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.PhysiciansOfRecord = "QZRECORD^GUSTAV"
    ds.PhysiciansOfRecordIdentificationSequence = Sequence(
        [_person_identification("QZPHYS001", "QZ Klinik Am Park")]
    )
    ds.PerformingPhysicianName = "QZPERFORM^WILHELMINE"
    ds.PerformingPhysicianIdentificationSequence = Sequence(
        [_person_identification("QZPHYS002", "QZ Klinik Am Park")]
    )
    ds.OperatorsName = "QZOPERATOR^ANSELM"
    ds.OperatorIdentificationSequence = Sequence(
        [_person_identification("QZOPER003", "QZ Klinik Am Park")]
    )
    result = deid(ds, profile, pseudonymizer)
    present = tags_anywhere(result.dataset)
    assert not {0x00081048, 0x00081049, 0x00081050, 0x00081052} & present
    assert_absent(
        result.data,
        "QZRECORD",
        "QZPERFORM",
        "QZOPERATOR",
        "QZPHYS001",
        "QZPHYS002",
        "QZOPER003",
        "QZ Klinik Am Park",
        "Lindenallee",
        "99887766",
    )
    assert not empty_items(result.dataset)


def test_case12_person_identification_code_dummied(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.PersonIdentificationCodeSequence = Sequence(
        [code_item("QZOPER003", "99QZHR", "QZOPER003 QZOPERATOR ANSELM")]
    )
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, "QZOPER003", "QZOPERATOR")


# --- 13-16: dates and times ----------------------------------------------------------------


def test_case13_radiopharmaceutical_datetime_shifted_with_acquisition(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image(modality="PT", sop_class="1.2.840.10008.5.1.4.1.1.128")
    ds.AcquisitionDateTime = "20240315103000.000000"
    ds.SeriesDate = "20240315"
    ds.SeriesTime = "103000"
    info = Dataset()
    info.Radiopharmaceutical = "Fluorodeoxyglucose"
    info.RadiopharmaceuticalStartDateTime = "20240315093512.500000"
    info.RadiopharmaceuticalStartTime = "093512.5"
    info.RadionuclideTotalDose = "350000000"
    info.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = Sequence([info])
    before = original(ds)
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, "20240315093512", "20240315103000")
    out = result.dataset
    starts = values_of(out, 0x00181078)
    if profile.shifts_dates:
        (start,) = starts
        interval_in = parse_dt("20240315103000.000000") - parse_dt("20240315093512.500000")
        interval_out = parse_dt(str(out.AcquisitionDateTime)) - parse_dt(start)
        assert interval_out == interval_in, "SUV decay interval changed"
        assert start == shift_dt_text("20240315093512.500000", day_shift(before, out))
    else:
        assert all(not v.startswith("20240315") for v in starts)


def _enhanced_ct(n_frames: int) -> Dataset:
    ds = make_image(sop_class="1.2.840.10008.5.1.4.1.1.2.1", rows=4, columns=4)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = n_frames
    ds.AcquisitionDateTime = "20240315101500.000000"
    ds.ContentDate = "20240315"
    ds.ContentTime = "101500"
    ds.PixelData = np.zeros(n_frames * 16, dtype="<u2").tobytes()
    start = dt.datetime(2024, 3, 15, 10, 15, 0)
    groups = []
    for i in range(n_frames):
        content = Dataset()
        moment = (start + dt.timedelta(seconds=i, microseconds=250_000)).strftime("%Y%m%d%H%M%S.%f")
        content.FrameAcquisitionDateTime = moment
        content.FrameReferenceDateTime = moment
        content.FrameAcquisitionDuration = 250.0
        content.FrameAcquisitionNumber = i + 1
        group = Dataset()
        group.FrameContentSequence = Sequence([content])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    return ds


def test_case14_per_frame_datetimes_shifted_consistently(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    n_frames = 400
    source = _enhanced_ct(n_frames)
    before = original(source)
    result = deid(source, research, pseudonymizer)
    out = result.dataset
    offset = day_shift(before, out)
    for tag in (0x00189074, 0x00189151):
        old = values_of(before, tag)
        new = values_of(out, tag)
        assert len(new) == n_frames
        assert new == [shift_dt_text(v, offset) for v in old]
    assert_absent(result.data, "2024031510")


def _dated(ds: Dataset) -> dict[str, tuple[str, str]]:
    """Every full DA/DT value by its path (tags and item indices): path -> (VR, value)."""
    return {
        path: (elem.VR, str(elem.value))
        for path, elem in walk(ds)
        if elem.VR in ("DA", "DT") and isinstance(elem.value, str) and len(elem.value) >= 8
    }


@pytest.mark.parametrize("name", ["eCT_Supplemental.dcm", "liver.dcm"])
def test_case14_real_enhanced_multiframe_dates_one_offset(
    name: str, research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    path = testdata(name)
    before = dcmread(path)
    assert "PerFrameFunctionalGroupsSequence" in before
    result = deid(path, research, pseudonymizer)
    offset = day_shift(before, result.dataset)
    old, new = _dated(before), _dated(result.dataset)
    assert new, "no dates left to compare"
    for where, (vr, value) in new.items():
        assert where in old, f"{where}: a date appeared"
        assert value == shift_dt_text(old[where][1], offset), f"{where} ({vr})"


def _expected_partial(value: str, days: int) -> str:
    year, month = int(value[:4]), int(value[4:6] or 1) if len(value) > 4 else 1
    moved = dt.date(year, month, 1) + dt.timedelta(days=days)
    return moved.strftime("%Y%m") if len(value) == 6 else f"{moved.year:04d}"


@pytest.mark.filterwarnings("ignore:Invalid value for VR (DA|DT|TM)")  # deliberately malformed
def test_case15_datetime_formats_shift_or_remove(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.AcquisitionDateTime = "20240101120000.123+0100"
    ds.add_new(0x00181078, "DT", "20240101113000.5-0500")  # radiopharm. start, negative offset
    ds.SeriesDate = "202403"  # partial DA: month precision
    ds.ContentDate = "2024"  # partial DA: year precision
    ds.add_new(0x00400244, "DA", "20240101-20240131")  # a range
    ds.SeriesTime = "1230"  # TM without seconds
    ds.AcquisitionTime = "123015.25"
    ds.InstanceCreationDate = "15/03/2024"  # not a DA: must go, never pass through
    ds.add_new(0x00080012, "DA", "15/03/2024")
    ds.add_new(0x00181079, "DT", "2024-03-15T10:15")  # unparseable DT (radiopharm. stop)
    before = original(ds)
    result = deid(ds, research, pseudonymizer)
    out = result.dataset
    offset = day_shift(before, out)
    assert str(out.AcquisitionDateTime) == shift_dt_text("20240101120000.123+0100", offset)
    assert str(out[0x00181078].value) == shift_dt_text("20240101113000.5-0500", offset)
    assert str(out.SeriesDate) == _expected_partial("202403", offset)
    assert str(out.ContentDate) == _expected_partial("2024", offset)
    low, high = str(out[0x00400244].value).split("-")
    assert (low, high) == (
        shift_dt_text("20240101", offset),
        shift_dt_text("20240131", offset),
    )
    assert str(out.SeriesTime) == "1230"
    assert str(out.AcquisitionTime) == "123015.25"
    for tag in (0x00080012, 0x00181079):
        assert tag not in out or not out[tag].value, f"unparseable {tag:08X} passed through"
    assert result.record.dates_removed_unparseable >= 2
    assert_absent(result.data, "15/03/2024", "2024-03-15T10:15", "20240101-20240131")


def test_case16_timezone_offset(pseudonymizer: Pseudonymizer) -> None:
    ds = make_image(TimezoneOffsetFromUTC="+0530", AcquisitionDateTime="20240315101500+0530")
    basic = deid(ds, builtin_profile("basic"), pseudonymizer).dataset
    assert "TimezoneOffsetFromUTC" not in basic
    for name in ("research", "research-full-dates"):
        kept = deid(ds, builtin_profile(name), pseudonymizer).dataset
        # A longitudinal option keeps the offset that DT values and times are read against.
        assert str(kept.get("TimezoneOffsetFromUTC", "")) == str(ds.TimezoneOffsetFromUTC)
        assert str(kept.AcquisitionDateTime).endswith(str(ds.TimezoneOffsetFromUTC))


# --- 17-18: identifiers in disguise --------------------------------------------------------


def test_case17_dates_hidden_in_non_date_attributes(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ds.StudyID = "20240315-01"
    ds.AccessionNumber = "QZ20240315A"
    ds.SeriesDescription = "THORAX 03/15/24 LUNG"
    ds.ProtocolName = "LUNG LOW DOSE 2024-03-15"
    ds.StudyDescription = "CT THORAX 15 Mar 2024"
    _private(ds, 0x0013, "QZ TIMESTAMPS", 0x10, 0x01, "LO", "20240315101530")
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, "20240315", "03/15/24", "2024-03-15", "15 Mar 2024", "QZ20240315A")
    out = result.dataset
    if Option.CLEAN_DESCRIPTORS in profile.options:
        assert "THORAX" in str(out.get("SeriesDescription", ""))
        assert "LUNG" in str(out.get("ProtocolName", ""))
    else:
        assert "SeriesDescription" not in out


def test_case18_uids_embedding_mrn_replaced_whole(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    digits, stamp = "477345219", "20240315101530"
    root = "1.2.840.113619.2.55.3"
    ds = make_image()
    ds.SOPInstanceUID = f"{root}.{digits}.{stamp}.7"
    ds.StudyInstanceUID = f"{root}.{digits}.{stamp}.1"
    ds.SeriesInstanceUID = f"{root}.{digits}.{stamp}.2"
    ds.FrameOfReferenceUID = f"{root}.{digits}.{stamp}.4"
    ds.IrradiationEventUID = f"{root}.{digits}.{stamp}.9"
    result = deid(ds, profile, pseudonymizer)
    out = result.dataset
    assert_absent(result.data, digits, stamp, "113619.2.55.3")
    for keyword in (
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "IrradiationEventUID",
    ):
        value = str(out[keyword].value)
        assert value == pseudonymizer.uid(str(ds[keyword].value))
        assert value.startswith("2.25."), "a prefix of the original survived"


# --- 19-22: UIDs ---------------------------------------------------------------------------


def test_case19_references_follow_the_same_mapping(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    image = make_image(key="ref-image")
    derived = make_image(key="ref-derived")
    derived.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
    derived.FrameOfReferenceUID = image.FrameOfReferenceUID
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    derived.SourceImageSequence = Sequence([ref])
    derived.ReferencedImageSequence = Sequence([Dataset(ref)])
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence([Dataset(ref)])
    study = Dataset()
    study.StudyInstanceUID = image.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    derived.StudiesContainingOtherReferencedInstancesSequence = Sequence([study])
    out_image = deid(image, profile, pseudonymizer).dataset
    result = deid(derived, profile, pseudonymizer)
    out = result.dataset
    assert str(out.FrameOfReferenceUID) == str(out_image.FrameOfReferenceUID)
    refs = values_of(out, 0x00081155)
    assert refs and set(refs) == {str(out_image.SOPInstanceUID)}
    assert values_of(out, 0x0020000E).count(str(out_image.SeriesInstanceUID)) == 1
    assert str(out_image.StudyInstanceUID) in values_of(out, 0x0020000D)
    assert_absent(
        result.data, image.SOPInstanceUID, image.SeriesInstanceUID, image.StudyInstanceUID
    )


def test_case20_file_meta_rebuilt(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    ds = with_file_meta(
        make_image(),
        SourceApplicationEntityTitle="QZNORTHPACS",
        SendingApplicationEntityTitle="QZSENDER01",
        ReceivingApplicationEntityTitle="QZRECEIVER1",
        ImplementationVersionName="QZSITE_PACS_V7",
        ImplementationClassUID="1.2.3.4.477345219",
    )
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4.477345218"
    ds.file_meta.PrivateInformation = b"QZ site private meta"
    result = deid(ds, profile, pseudonymizer)
    meta = result.dataset.file_meta
    assert meta.MediaStorageSOPInstanceUID == result.dataset.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == result.dataset.SOPClassUID
    for keyword in (
        "SourceApplicationEntityTitle",
        "SendingApplicationEntityTitle",
        "ReceivingApplicationEntityTitle",
        "PrivateInformationCreatorUID",
        "PrivateInformation",
    ):
        assert keyword not in meta
    assert_absent(
        result.data,
        "QZNORTHPACS",
        "QZSENDER01",
        "QZRECEIVER1",
        "QZSITE_PACS",
        "477345219",
        "477345218",
        "QZ site private meta",
        ds.SOPInstanceUID,
    )


def test_case21_well_known_uids_not_remapped(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ref.ReferencedSOPInstanceUID = uid("well-known-ref")
    ds.ReferencedImageSequence = Sequence([ref])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = "99QZ"
    scheme.CodingSchemeUID = "1.2.276.0.7230010.3.0.0.1"
    ds.CodingSchemeIdentificationSequence = Sequence([scheme])
    ds.AnatomicRegionSequence = Sequence([code_item("T-D3000", "SRT", "Chest")])
    result = deid(ds, profile, pseudonymizer)
    out = result.dataset
    assert out.SOPClassUID == ds.SOPClassUID
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.get("ReferencedImageSequence"), "X/Z/U* resolves to U: references are kept"
    for item in out.ReferencedImageSequence:
        assert item.ReferencedSOPClassUID == ref.ReferencedSOPClassUID
        assert item.ReferencedSOPInstanceUID == pseudonymizer.uid(ref.ReferencedSOPInstanceUID)
    schemes = values_of(out, 0x0008010C)
    assert schemes in ([], [scheme.CodingSchemeUID]), "a coding scheme UID was remapped"
    # The SR of a real toolkit carries a coding scheme UID that is not under 1.2.840.10008.
    report = deid(testdata("reportsi.dcm"), profile, pseudonymizer).dataset
    before = dcmread(testdata("reportsi.dcm"))
    assert values_of(report, 0x0008010C) in ([], values_of(before, 0x0008010C))
    assert report.SOPClassUID == before.SOPClassUID


def test_case22_keyed_uids_unique_and_unlinkable(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    originals = [uid("many", i) for i in range(500)]
    items = []
    for value in originals:
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = value
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    result = deid(ds, research, pseudonymizer)
    new = values_of(result.dataset, 0x00081155)
    assert len(new) == len(set(new)) == len(originals), "UID collision or loss"
    pattern = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
    assert all(pattern.match(v) and len(v) <= 64 for v in new)
    # Not an unkeyed derivation anyone holding the originals could recompute.
    for value, mapped in zip(originals[:20], new[:20], strict=True):
        assert mapped != str(generate_uid(prefix="2.25.", entropy_srcs=[value]))
        assert mapped != f"2.25.{uuid.uuid3(uuid.NAMESPACE_OID, value).int}"
        assert mapped != f"2.25.{int(hashlib.md5(value.encode()).hexdigest(), 16)}"  # noqa: S324
    pseudonym = str(result.dataset.PatientID)
    assert MRN not in pseudonym
    assert hashlib.sha256(MRN.encode()).hexdigest()[:10].upper() not in pseudonym
    # Another key: another pseudonym and other UIDs.
    other = deid(ds, research, Pseudonymizer(SiteKey(OTHER_KEY_BYTES)))
    assert str(other.dataset.PatientID) != pseudonym
    assert set(values_of(other.dataset, 0x00081155)).isdisjoint(new)
    assert other.dataset.SOPInstanceUID != result.dataset.SOPInstanceUID


def test_case23_same_mrn_two_issuers_two_pseudonyms(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    north = deid(make_image(IssuerOfPatientID="QZ-NORTH", key=1), profile, pseudonymizer)
    south = deid(make_image(IssuerOfPatientID="QZ-SOUTH", key=2), profile, pseudonymizer)
    again = deid(make_image(IssuerOfPatientID="QZ-NORTH", key=3), profile, pseudonymizer)
    assert north.dataset.PatientID != south.dataset.PatientID
    assert north.record.patient_pseudonym != south.record.patient_pseudonym
    assert north.dataset.PatientID == again.dataset.PatientID
    for result in (north, south):
        assert_absent(result.data, MRN, "QZ-NORTH", "QZ-SOUTH")


def test_case24_birth_date_not_kept_age_is(pseudonymizer: Pseudonymizer) -> None:
    ds = make_image(PatientBirthDate="19610412", PatientAge="062Y", PatientBirthTime="0815")
    before = original(ds)
    research = deid(ds, builtin_profile("research"), pseudonymizer)
    out = research.dataset
    offset = day_shift(before, out)
    shifted = (dt.date(1961, 4, 12) + dt.timedelta(days=offset)).strftime("%Y%m%d")
    assert not str(out.get("PatientBirthDate", "") or ""), "birth date kept (Basic: Z)"
    assert "PatientBirthTime" not in out
    assert_absent(research.data, "19610412", shifted)
    assert str(out.PatientAge) == "062Y", "Retain Patient Characteristics keeps the age"
    basic = deid(ds, builtin_profile("basic"), pseudonymizer).dataset
    assert "PatientAge" not in basic
    assert not str(basic.get("PatientBirthDate", "") or "")


# --- 25-34: pixels -------------------------------------------------------------------------


def test_case25_burned_in_text_without_flag_is_cleaned(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    box = (4, 2, 40, 8)
    frames = rgb_frames(1, 48, 64, {0: box})
    ds = make_ultrasound(frames)
    assert "BurnedInAnnotation" not in ds
    detector = BrightTextDetector()
    result = deid(ds, research, pseudonymizer, text_detector=detector)
    assert detector.calls >= 2, "the detector must run before and after masking"
    assert result.record.pixel is not None
    assert result.record.pixel.action is PixelAction.CLEAN
    assert result.record.pixel.regions_masked >= 1
    pixels = decoded_frames(result.dataset)
    x0, y0, x1, y1 = box
    assert not pixels[0, y0:y1, x0:x1].any(), "the text block was not masked"
    assert (pixels[0, 30:, :] == frames[0, 30:, :]).all(), "anatomy away from text changed"
    assert result.dataset.BurnedInAnnotation == "NO"
    assert Option.CLEAN_PIXEL_DATA.code in result.record.method_codes
    # deid-data's RGB ultrasound has no BurnedInAnnotation and a burned-in name.
    path = deid_data("RGB_IMAGE.dcm")
    assert "BurnedInAnnotation" not in dcmread(path, stop_before_pixels=True)
    spy = BrightTextDetector()
    real = deid(path, research, pseudonymizer, text_detector=spy)
    assert spy.calls >= 1 and real.record.pixel is not None
    assert real.record.pixel.action is PixelAction.CLEAN


@pytest.mark.slow
def test_case25_real_ocr_removes_burned_in_name(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    path = deid_data("RGB_IMAGE.dcm")
    source = dcmread(path)
    engine = rapidocr.RapidOCR(print_verbose=False)

    def read_text(ds: Dataset) -> str:
        result, _ = engine(np.ascontiguousarray(ds.pixel_array))
        return " ".join(str(line[1]) for line in result or []).upper()

    before = read_text(source)
    assert "DOWNTIME" in before, "OCR cannot read the fixture's burned-in name"
    try:
        result = run_deid(path, research, pseudonymizer)
    except QuarantineRequired as exc:
        # Holding the image back is a correct outcome (E.3.1: clean or reject).
        assert "text was still detected" in str(exc)
        assert not leaks(str(exc).encode(), ["DOWNTIME", str(source.PatientID)])
        return
    after = read_text(result.dataset)
    assert "DOWNTIME" not in after
    assert str(source.PatientID) not in after.replace(" ", "")


def test_case26_banner_outside_ultrasound_regions_masked_without_ocr(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    banner = (0, 0, 64, 6)
    frames = rgb_frames(1, 48, 64, {0: banner})
    region = (8, 10, 55, 45)
    ds = make_ultrasound(frames, regions=[region])
    result = deid(ds, research, pseudonymizer)  # NoText: OCR "misses" the banner
    pixels = decoded_frames(result.dataset)
    assert not pixels[0, 0:6, :].any(), "banner outside the ultrasound region kept"
    x0, y0, x1, y1 = region
    assert (pixels[0, y0 : y1 + 1, x0 : x1 + 1] == frames[0, y0 : y1 + 1, x0 : x1 + 1]).all()


def test_case27_text_on_late_cine_frame_masked_on_every_frame(
    research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    box = (10, 20, 30, 26)
    frames = rgb_frames(6, 40, 48, {4: box})
    frames[:, 35:, :, 1] += np.arange(6, dtype=np.uint8)[:, None, None]  # frames differ
    detector = BrightTextDetector()
    result = deid(make_ultrasound(frames), research, pseudonymizer, text_detector=detector)
    assert detector.calls >= 6, "not every frame was looked at"
    pixels = decoded_frames(result.dataset)
    assert pixels.shape[0] == 6
    x0, y0, x1, y1 = box
    assert not pixels[:, y0:y1, x0:x1].any(), "text box not masked on every frame"
    assert result.record.pixel is not None and result.record.pixel.frames == 6


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000])
def test_case28_compressed_pixels_decoded_masked_reencoded(
    syntax: str, research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    box = (6, 4, 50, 12)
    frames = rgb_frames(1, 32, 64, {0: box})
    ds = make_ultrasound(frames)
    with_file_meta(ds)
    kwargs = {"j2k_cr": [15]} if syntax == JPEG2000 else {}
    ds.compress(syntax, frames[0], **kwargs)
    compressed = ds.PixelData
    result = deid(ds, research, pseudonymizer, text_detector=BrightTextDetector())
    out = result.dataset
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not out["PixelData"].is_undefined_length
    assert compressed[16:80] not in result.data, "original fragments written back"
    pixels = decoded_frames(out)
    x0, y0, x1, y1 = box
    assert not pixels[0, y0:y1, x0:x1].any()
    if syntax == JPEG2000:  # irreversible J2K: the output must say it was lossy
        assert out.LossyImageCompression == "01"
        assert "ISO_15444_1" in list(np.atleast_1d(out.LossyImageCompressionMethod))
    else:
        assert str(out.get("LossyImageCompression", "00")) == "00"


def test_case29_icon_image_sequence_and_private_thumbnail_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image()
    icon = Dataset()
    for keyword, value in (
        ("Rows", 4),
        ("Columns", 4),
        ("SamplesPerPixel", 1),
        ("PhotometricInterpretation", "MONOCHROME2"),
        ("BitsAllocated", 8),
        ("BitsStored", 8),
        ("HighBit", 7),
        ("PixelRepresentation", 0),
    ):
        setattr(icon, keyword, value)
    icon.PixelData = b"QZICONTEXTPHI..."
    ds.IconImageSequence = Sequence([icon])
    assert SAFE.lookup(0x0009, "GEIIS", 0x10) is None
    thumb = Dataset()
    thumb.add_new(0x7FE00010, "OB", b"QZGEIIS-THUMBNAIL-PHI")
    _private(ds, 0x0009, "GEIIS", 0x10, 0x10, "SQ", Sequence([thumb]))
    result = deid(ds, profile, pseudonymizer)
    assert 0x00880200 not in tags_anywhere(result.dataset)
    assert_absent(result.data, "QZICONTEXTPHI", "QZGEIIS-THUMBNAIL-PHI")
    real = deid(testdata("examples_overlay.dcm"), profile, pseudonymizer)
    assert 0x00880200 not in tags_anywhere(real.dataset)


def _overlay_image(**extra: object) -> Dataset:
    ds = make_image(rows=16, columns=16, **extra)
    base = np.arange(256, dtype="<u2") * 15  # < 4096: fits 12 bits
    overlay = np.zeros(256, dtype="<u2")
    overlay[40:60] = 1
    ds.PixelData = (base | (overlay << 15)).astype("<u2").tobytes()  # legacy overlay in bit 15
    ds.add_new(0x60000010, "US", 16)
    ds.add_new(0x60000011, "US", 16)
    ds.add_new(0x60000022, "LO", f"QZ annotation {FAMILY}")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", (b"QZOVERLAYBITMAP!" * 2))
    ds.add_new(0x60004000, "LT", f"QZ overlay comment {MRN}")
    return ds


@pytest.mark.parametrize(
    "name",
    [
        "research",
        "basic",
    ],
)
def test_case30_overlays_removed_and_high_bits_zeroed(
    name: str, pseudonymizer: Pseudonymizer
) -> None:
    ds = _overlay_image()
    original_pixels = np.frombuffer(ds.PixelData, dtype="<u2").copy()
    result = deid(ds, builtin_profile(name), pseudonymizer)
    out = result.dataset
    assert_absent(result.data, FAMILY, MRN)
    assert not [t for t in tags_anywhere(out) if 0x6000 <= t >> 16 <= 0x60FF], "overlay kept"
    assert_absent(result.data, "QZOVERLAYBITMAP")
    pixels = np.frombuffer(out.PixelData, dtype="<u2")
    assert int(pixels.max()) < 1 << int(out.BitsStored), "bits above BitsStored kept"
    assert (pixels == (original_pixels & 0x0FFF)).all(), "stored bits changed"
    assert result.record.pixel is not None and result.record.pixel.high_bits_zeroed
    real = deid(testdata("examples_overlay.dcm"), builtin_profile(name), pseudonymizer)
    assert not [t for t in tags_anywhere(real.dataset) if 0x6000 <= t >> 16 <= 0x60FF]


def test_case30_legacy_overlay_bits_above_bits_stored_zeroed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = _overlay_image()
    for tag in [elem.tag for elem in ds if elem.tag.group == 0x6000]:
        del ds[tag]  # only the bits in the pixel data remain (legacy embedded overlay)
    original_pixels = np.frombuffer(ds.PixelData, dtype="<u2").copy()
    assert int(original_pixels.max()) >= 1 << 15
    result = deid(ds, profile, pseudonymizer)
    pixels = np.frombuffer(result.dataset.PixelData, dtype="<u2")
    assert int(pixels.max()) < 1 << int(result.dataset.BitsStored)
    assert (pixels == (original_pixels & 0x0FFF)).all(), "stored bits changed"
    assert result.record.pixel is not None and result.record.pixel.high_bits_zeroed


def test_case31_presentation_state_text_and_creator(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    image = make_image(key="gsps-image")
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    ds.SOPInstanceUID = uid("gsps")
    ds.StudyInstanceUID = image.StudyInstanceUID
    ds.SeriesInstanceUID = uid("gsps-series")
    ds.Modality = "PR"
    ds.PatientName = NAME
    ds.PatientID = MRN
    ds.StudyDate = "20240315"
    ds.ContentLabel = "QZLABEL"
    ds.ContentCreatorName = "QZCREATOR^WALBURGA"
    ds.PresentationCreationDate = "20240316"
    ds.PresentationCreationTime = "101010"
    ref_image = Dataset()
    ref_image.ReferencedSOPClassUID = image.SOPClassUID
    ref_image.ReferencedSOPInstanceUID = image.SOPInstanceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = image.SeriesInstanceUID
    ref_series.ReferencedImageSequence = Sequence([ref_image])
    ds.ReferencedSeriesSequence = Sequence([ref_series])
    text = Dataset()
    text.UnformattedTextValue = f"{FAMILY} {GIVEN} {MRN} lesion 12 mm"
    text.BoundingBoxAnnotationUnits = "PIXEL"
    text.BoundingBoxTopLeftHandCorner = [1.0, 1.0]
    text.BoundingBoxBottomRightHandCorner = [20.0, 8.0]
    text.BoundingBoxTextHorizontalJustification = "LEFT"
    annotation = Dataset()
    annotation.GraphicLayer = "QZLAYER"
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, FAMILY, GIVEN, MRN, "QZCREATOR", "WALBURGA")
    out = result.dataset
    refs = values_of(out, 0x00081155)
    assert refs == [pseudonymizer.uid(image.SOPInstanceUID)], "PR lost its image (mmiv #4)"
    assert values_of(out, 0x0020000E).count(pseudonymizer.uid(image.SeriesInstanceUID)) == 1


def test_case32_encapsulated_pdf_quarantined(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_image(modality="DOC", sop_class="1.2.840.10008.5.1.4.1.1.104.1")
    for keyword in ("Rows", "Columns", "PixelData", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Radiology report"
    ds.EncapsulatedDocument = f"%PDF-1.4 report for {NAME} MRN {MRN} %%EOF ".encode()
    with pytest.raises(QuarantineRequired) as caught:
        deid(ds, profile, pseudonymizer)
    assert not leaks(str(caught.value).encode(), [FAMILY, MRN])


def test_case33_faces_and_photographs_quarantined(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    face = dcmread(testdata("OT-PAL-8-face.dcm"), force=True)
    face.StudyInstanceUID = face.get("StudyInstanceUID") or uid("face-study")
    face.SeriesInstanceUID = face.get("SeriesInstanceUID") or uid("face-series")
    face.RecognizableVisualFeatures = "YES"
    with pytest.raises(QuarantineRequired):
        deid(to_bytes(face), profile, pseudonymizer)
    photo = make_ultrasound(rgb_frames(1, 16, 16, {}), key="photo")
    photo.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    photo.Modality = "XC"
    with pytest.raises(QuarantineRequired):
        deid(photo, profile, pseudonymizer)


def test_case34_screen_save_cleaned_or_held(pseudonymizer: Pseudonymizer) -> None:
    box = (2, 2, 30, 8)
    gray = np.full((32, 48), 100, dtype="<u2")
    gray[box[1] : box[3], box[0] : box[2]] = 4095  # saturated text
    ds = make_image(
        rows=32,
        columns=48,
        ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"],
        SeriesDescription="Dose Report",
    )
    ds.PixelData = gray.tobytes()
    for name in ("research", "basic"):
        detector = BrightTextDetector()
        result = deid(ds, builtin_profile(name), pseudonymizer, text_detector=detector)
        assert result.record.pixel is not None
        assert result.record.pixel.action is PixelAction.CLEAN
        pixels = decoded_frames(result.dataset)
        assert int(pixels[0, box[1] : box[3], box[0] : box[2]].max()) <= 100
    no_cleaning = parse_profile("name: no-pixel-cleaning\noptions: []\n")
    with pytest.raises(QuarantineRequired):
        deid(ds, no_cleaning, pseudonymizer)


# --- 35-40: text, editions, retired --------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["chrJapMulti.dcm", "chrH31.dcm", "chrH32.dcm", "chrKoreanMulti.dcm"]
)
def test_case35_multibyte_person_names_fully_replaced(
    name: str, profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    path = testdata(name)
    source = dcmread(path)
    raw = source.get_item(0x00100010).value
    pieces = [p for p in re.split(rb"[\^=\\ ]|\x1b\$[B)C]|\x1b\([BJ]", raw) if len(p) >= 4]
    assert pieces, "fixture without a multi-byte name"
    result = deid(path, profile, pseudonymizer)
    out = result.dataset
    assert str(out.PatientName) == result.record.patient_pseudonym
    assert "=" not in str(out.PatientName), "an ideographic or phonetic group survived"
    assert_absent(result.data, *pieces, *str(source.PatientName).split("="))
    for _, elem in walk(out):  # everything still decodes with the output character set
        if elem.VR in ("PN", "LO", "SH", "LT", "ST", "UT"):
            str(elem.value)


def test_case35_synthetic_three_group_name(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    ds = make_image()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Qzyamada^Tarou=山田^太郎=やまだ^たろう"
    ds.OtherPatientNames = "Qzyamada^Tarou=山田^太郎=やまだ^たろう"
    result = deid(ds, profile, pseudonymizer)
    raw = original(ds).get_item(0x00100010).value
    jis = [p for p in re.split(rb"\x1b\$B|\x1b\(B|[\^=]", raw) if len(p) >= 4]
    assert jis
    assert_absent(result.data, "Qzyamada", "山田", "やまだ", *jis)


DESCRIPTORS = {
    "StudyDescription": f"CT THORAX {FAMILY} {GIVEN} 15.03.2024",
    "SeriesDescription": f"AXIAL LUNG {FAMILY}",
    "ImageComments": f"Pt {GIVEN} {FAMILY} (MRN {MRN}) tolerated contrast well",
    "PatientComments": f"{GIVEN} prefers morning appointments, call 0511 99887766",
    "AdditionalPatientHistory": f"Prior nodule; {FAMILY} seen 2023-11-02",
    "ProtocolName": f"LUNG NODULE {FAMILY}",
    "PerformedProcedureStepDescription": f"CT THORAX for {FAMILY}",
}
CLINICAL = {
    "StudyDescription": "THORAX",
    "SeriesDescription": "LUNG",
    "ImageComments": "contrast",
    "PatientComments": "morning",
    "AdditionalPatientHistory": "nodule",
    "ProtocolName": "NODULE",
    "PerformedProcedureStepDescription": "THORAX",
}


def test_case36_names_in_free_text(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    ds = make_image(**DESCRIPTORS)
    result = deid(ds, profile, pseudonymizer)
    assert_absent(result.data, FAMILY, GIVEN, MRN, "15.03.2024", "2023-11-02", "99887766")
    out = result.dataset
    for keyword, word in CLINICAL.items():
        if Option.CLEAN_DESCRIPTORS in profile.options:
            assert word in str(out.get(keyword, "")), f"{keyword} lost its clinical words"
        else:
            assert str(out.get(keyword, "") or "") in ("", DUMMY_TEXT), keyword


def test_case37_institution_and_device_identity(pseudonymizer: Pseudonymizer) -> None:
    ds = make_image(
        InstitutionName="QZ Klinikum Nordstadt",
        InstitutionAddress="QZ Hauptstrasse 12, 30161 Hannover",
        InstitutionalDepartmentName="QZ Radiologie Nord",
        StationName="QZCTNORD01",
        DeviceSerialNumber="QZSN0045521",
    )
    _private(ds, 0x0009, "GEMS_IDEN_01", 0x10, 0x2A, "LO", "QZ Klinikum Nordstadt PACS")
    research = deid(ds, builtin_profile("research"), pseudonymizer)
    assert_absent(research.data, "QZ Klinikum", "Hauptstrasse", "QZ Radiologie Nord")
    assert str(research.dataset.StationName) == "QZCTNORD01", "Retain Device Identity: K"
    assert str(research.dataset.DeviceSerialNumber) == "QZSN0045521"
    basic = deid(ds, builtin_profile("basic"), pseudonymizer)
    assert_absent(
        basic.data, "QZ Klinikum", "Hauptstrasse", "QZ Radiologie", "QZCTNORD01", "QZSN0045521"
    )


def test_case38_newer_edition_and_unknown_public_attributes_removed(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    table = load_table()
    ds = make_image()
    name_to_use = Dataset()
    name_to_use.add_new(0x00100012, "UC", "QZBETTINA")
    name_to_use.add_new(0x00100013, "LT", f"prefers QZBETTINA over {GIVEN}")
    ds.add_new(0x00100011, "SQ", Sequence([name_to_use]))  # Person Names to Use (2024c)
    gender = Dataset()
    gender.add_new(0x00100045, "LT", f"QZGENDERNOTE {FAMILY}")
    ds.add_new(0x00100041, "SQ", Sequence([gender]))  # Gender Identity Sequence
    made_up = 0x00189999
    assert keyword_for_tag(made_up) == "" and made_up not in table.by_tag
    ds.add_new(made_up, "LO", "QZUNKNOWNPUBLIC")
    for tag in (0x00100011, 0x00100041):
        assert not keyword_for_tag(tag), "pydicom learned the tag: pick a newer one"
    result = deid(ds, profile, pseudonymizer)
    assert not {0x00100011, 0x00100012, 0x00100041, made_up} & tags_anywhere(result.dataset)
    assert_absent(result.data, "QZBETTINA", "QZGENDERNOTE", "QZUNKNOWNPUBLIC")


#: Retired attributes Table E.1-1 does not list: the allow-list must drop them.
RETIRED_UNLISTED = [
    (0x00080010, "SH", "QZRECOG01"),  # Recognition Code
    (0x00200070, "LO", "QZ GEOMETRY NOTE"),  # Image Geometry Type
    (0x00401006, "SH", "QZPLACER77"),  # Placer Order Number / Procedure
    (0x0040A067, "PN", "QZAUTHOR^TRIAL"),  # Document Author (Trial)
]
#: Retired attributes the table lists: its action (X, or C under an option) applies.
RETIRED_LISTED = [
    (0x00080024, "DA", "20240316"),  # Overlay Date
    (0x00080025, "DA", "20240317"),  # Curve Date
    (0x00101000, "LO", "QZOTHERID771"),  # Other Patient IDs
]


def test_case39_retired_attributes_removed(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    table = load_table()
    ds = make_image()
    for tag, vr, value in RETIRED_UNLISTED + RETIRED_LISTED:
        assert dictionary_is_retired(tag), f"{tag:08X} is not retired"
        assert (tag in table.by_tag) == ((tag, vr, value) in RETIRED_LISTED)
        ds.add_new(tag, vr, value)
    result = deid(ds, profile, pseudonymizer)
    present = tags_anywhere(result.dataset)
    assert not {t for t, *_ in RETIRED_UNLISTED} & present
    assert_absent(result.data, *(value for *_, value in RETIRED_UNLISTED + RETIRED_LISTED))
    for name in ("CT_small.dcm", "JPEG2000.dcm", "MR_small.dcm", "ctbrain1.dcm"):
        path = deid_data(name) if name.startswith("ctbrain") else testdata(name)
        out = deid(path, profile, pseudonymizer).dataset
        retired = [
            f"{t:08X}"
            for t in tags_anywhere(out)
            if not t >> 16 & 1 and t >> 16 != 2 and _retired(t) and t not in table.by_tag
        ]
        assert not retired, f"{name}: retired attributes kept: {retired}"


def _retired(tag: int) -> bool:
    try:
        return bool(dictionary_is_retired(tag))
    except KeyError:
        return False


def test_case40_waveform_annotations_and_acquisition_context(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ecg = dcmread(testdata("waveform_ecg.dcm"))
    phi = [str(ecg.PatientName), str(ecg.PatientID)]
    ecg.PatientName, ecg.PatientID = NAME, MRN
    note = Dataset()
    note.UnformattedTextValue = f"QZ ECG note {FAMILY} {MRN}"
    note.ReferencedWaveformChannels = [1, 1]
    ecg.WaveformAnnotationSequence = Sequence([*ecg.get("WaveformAnnotationSequence", []), note])
    context = _content_item("TEXT", "Comment", TextValue=f"Technologist note on {FAMILY}")
    context.TextValue = f"Technologist QZTECH noted motion for {FAMILY}"
    ecg.AcquisitionContextSequence = Sequence([context])
    result = deid(to_bytes(ecg), profile, pseudonymizer)
    assert_absent(result.data, FAMILY, MRN, "QZ ECG note", *(v for v in phi if len(v) >= 4))
    assert not empty_items(result.dataset)


def test_case41_dicomdir_never_copied(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    path = testdata("DICOMDIR")
    assert "DirectoryRecordSequence" in dcmread(path)
    with pytest.raises(QuarantineRequired):
        deid(path, profile, pseudonymizer)


# --- 42-46: paths, preamble, trials, bookkeeping, study keys -------------------------------


def test_case42_output_names_from_pseudonymous_uids(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    phi = make_patient_phi(5)
    ct = make_ct_series(phi, n_slices=2, rows=16, cols=16)
    paths = []
    for instance in ct:
        result = deid(to_bytes(instance), profile, pseudonymizer)
        record = result.record
        assert record.sop_instance_uid == result.dataset.SOPInstanceUID
        assert record.series_instance_uid == result.dataset.SeriesInstanceUID
        assert record.study_instance_uid == result.dataset.StudyInstanceUID
        path = (
            "/".join(
                (record.study_instance_uid, record.series_instance_uid, record.sop_instance_uid)
            )
            + ".dcm"
        )
        paths.append(path)
        evidence = str(record.to_json())
        assert_absent(path.encode(), *phi.values(), phi.patient_id)
        assert_absent(evidence.encode(), *phi.values(), phi.patient_id)
        assert_absent(path.encode(), instance.SOPInstanceUID, instance.StudyInstanceUID)
    assert len(set(paths)) == len(ct)


def test_case43_preamble_zeroed(profile: Profile, pseudonymizer: Pseudonymizer) -> None:
    preamble = (b"II*\x00" + f"QZTIFF {NAME} {MRN}".encode()).ljust(128, b"\x01")
    data = encode(make_image(), preamble=preamble)
    assert data[:4] == b"II*\x00"
    result = deid(data, profile, pseudonymizer)
    assert result.data[:128] == b"\x00" * 128
    assert result.data[128:132] == b"DICM"
    assert_absent(result.data, "QZTIFF", FAMILY, MRN)


def test_case44_clinical_trial_attributes_replaced(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    trial = {
        "ClinicalTrialSponsorName": "QZ Sponsorama Pharma",
        "ClinicalTrialProtocolID": "QZPROT-2231",
        "ClinicalTrialSiteID": "QZSITE-17",
        "ClinicalTrialSiteName": "QZ Klinikum Nordstadt Trials",
        "ClinicalTrialSubjectID": "QZSUBJ-0042",
        "ClinicalTrialSubjectReadingID": "QZREAD-0042",
        "ClinicalTrialCoordinatingCenterName": "QZ Coordinating Centre",
    }
    result = deid(make_image(**trial), profile, pseudonymizer)
    assert_absent(result.data, *trial.values())
    table = load_table()
    for keyword, value in trial.items():
        out = result.dataset.get(keyword)
        row = next(r for r in table.rows if r.keyword == keyword)
        if row.basic == "D":  # dummies keep a Type 1 value in place
            assert out is not None and str(out) not in ("", value)


@pytest.mark.parametrize("name", ["research", "basic", "research-full-dates"])
def test_case45_profile_bookkeeping(name: str, pseudonymizer: Pseudonymizer) -> None:
    profile = builtin_profile(name)
    result = deid(make_image(), profile, pseudonymizer)
    out = result.dataset
    assert out.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    expected = {"113100"} | {o.code for o in profile.options if o.is_table_column}
    assert set(codes) == expected
    assert all(
        item.CodingSchemeDesignator == "DCM" for item in out.DeidentificationMethodCodeSequence
    )
    assert sorted(codes) == sorted(result.record.method_codes)
    assert out.DeidentificationMethod
    if profile.shifts_dates:
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    elif profile.keeps_full_dates:
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
    else:
        assert out.LongitudinalTemporalInformationModified == "REMOVED"
    # Cleaned pixels add Clean Pixel Data (113101) to what was applied.
    frames = rgb_frames(1, 16, 32, {0: (2, 2, 20, 6)})
    us = deid(make_ultrasound(frames), profile, pseudonymizer, text_detector=BrightTextDetector())
    us_codes = {item.CodeValue for item in us.dataset.DeidentificationMethodCodeSequence}
    assert us_codes == expected | {Option.CLEAN_PIXEL_DATA.code}


def test_case46_study_id_and_accession_keep_studies_distinct(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    first = [
        make_image(key=("s1", i), StudyID="20240315-01", AccessionNumber="QZACC1") for i in range(2)
    ]
    second = make_image(key="s2", StudyID="20240315-02", AccessionNumber="QZACC2")
    for ds in first:
        ds.StudyInstanceUID = first[0].StudyInstanceUID
    outs = [deid(ds, profile, pseudonymizer) for ds in (*first, second)]
    for result in outs:
        assert_absent(result.data, "20240315-01", "20240315-02", "QZACC1", "QZACC2")
    a, b, c = (r.dataset for r in outs)
    assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID
    for keyword in ("StudyID", "AccessionNumber"):
        # Z (empty) is allowed; a dummy must be consistent within and distinct across studies.
        values = [str(ds.get(keyword, "") or "") for ds in (a, b, c)]
        if any(v not in ("", DUMMY_TEXT) for v in values):
            assert values[0] == values[1] != values[2], keyword


def test_phi_never_in_output_for_a_synthetic_ct_series(
    profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    """All the above at once: the synthetic generator plants PHI in every known place."""
    phi = make_patient_phi(11)
    for instance in make_ct_series(phi, n_slices=2, rows=16, cols=16):
        result = deid(to_bytes(instance), profile, pseudonymizer)
        assert_absent(result.data, *_planted(phi, profile))


REAL_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "rtstruct.dcm",
    "rtdose.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "examples_overlay.dcm",
    "waveform_ecg.dcm",
    "eCT_Supplemental.dcm",
    "liver.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "explicit_VR-UN.dcm",
    "chrH31.dcm",
    "ctbrain1.dcm",
    "GREYSCALE_IMAGE.dcm",
]
_CLASS_UIDS = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID", "ContextUID")


def _identifying_in(ds: Dataset) -> set[str]:
    """Instance UIDs, person names and full dates of a real file, at any depth (public only)."""
    found: set[str] = set()
    for _, elem in walk(ds):
        if elem.tag.is_private or elem.value in (None, ""):
            continue
        values = [elem.value] if isinstance(elem.value, str | bytes) or elem.VR == "PN" else None
        if values is None:
            try:
                values = list(elem.value)
            except TypeError:
                values = [elem.value]
        for value in map(str, values):
            if elem.VR == "UI" and not elem.keyword.endswith(_CLASS_UIDS):
                if not value.startswith("1.2.840.10008.") and len(value) > 12:
                    found.add(value)
            elif (elem.VR == "PN" and len(value) >= 5) or (elem.VR == "DA" and len(value) == 8):
                found.add(value)
    return found


@pytest.mark.parametrize("name", REAL_FILES)
def test_case19_real_files_keep_no_original_uid_name_or_date(
    name: str, profile: Profile, pseudonymizer: Pseudonymizer
) -> None:
    """E.1.1-G over real files: no instance UID, person name or full date survives."""
    path = deid_data(name) if name.startswith(("ctbrain", "GREYSCALE")) else testdata(name)
    with warnings.catch_warnings():  # the fixtures' own invalid values, read by the test
        warnings.simplefilter("ignore", UserWarning)
        needles = _identifying_in(dcmread(path, force=True))
    assert needles, f"{name}: nothing to look for"
    result = deid(path, profile, pseudonymizer)
    assert_absent(result.data, *needles)
    assert result.dataset.file_meta.MediaStorageSOPInstanceUID == result.dataset.SOPInstanceUID
    assert result.data[:128] == b"\x00" * 128
