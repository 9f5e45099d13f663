"""The central node's acceptance check: is an instance already de-identified (PS3.15 Annex E)?

Our own engine's output must pass with no reason; raw files, and de-identified files with one
identifying attribute put back, must fail with a reason that names the attribute (and its
sequence path) and never quotes the value.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydicom import Dataset, Sequence
from pydicom.dataelem import RawDataElement

from biobank.deid import Pseudonymizer, builtin_profile, check_deidentified, deidentify_bytes
from biobank.deid.check import MAX_REASONS
from biobank.deid.models import BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING, Option
from biobank.deid.private import SafePrivateList, load_safe_private, parse_safe_private
from biobank.dicom.io import encode_dataset, read_dataset
from biobank.dicom.values import elements
from tests.conftest import NoText, testdata

FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",  # implicit VR, nested RT sequences
    "JPEG2000.dcm",  # undefined-length sequences
    "US1_J2KR.dcm",  # pixels cleaned: 113101 declared
    "emri_small.dcm",  # already de-identified elsewhere (free-text method only)
    "eCT_Supplemental.dcm",  # enhanced CT: shared and per-frame functional groups
    "examples_overlay.dcm",  # overlays in the input
]
PROFILES = ["research", "basic", "research-full-dates"]

PLANTED = "PLANTED-4711-XYZ"  # a value that must never appear in a reason

Deid = Callable[[str, str], Dataset]


@pytest.fixture(scope="module")
def deid(pseudonymizer: Pseudonymizer) -> Deid:
    """De-identify a test file with a packaged profile; each (file, profile) is done once."""
    done: dict[tuple[str, str], bytes] = {}

    def run(name: str, profile: str) -> Dataset:
        if (name, profile) not in done:
            out = deidentify_bytes(
                testdata(name).read_bytes(),
                builtin_profile(profile),
                pseudonymizer,
                text_detector=NoText(),
            )
            done[(name, profile)] = out.data
        return read_dataset(done[(name, profile)])  # a fresh data set for every test

    return run


def declare(ds: Dataset, *codes: str) -> None:
    """Replace the De-identification Method Code Sequence by ``codes`` (DCM scheme)."""
    items = []
    for code in codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = "declared in a test"
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)


def reencode(ds: Dataset) -> Dataset:
    """Encode and read back: every element raw, sequences undecoded, as a node receives them."""
    return read_dataset(encode_dataset(ds))


def mentioning(reasons: list[str], text: str) -> list[str]:
    return [r for r in reasons if text in r]


def no_value(reasons: list[str], *values: str) -> None:
    joined = "\n".join(reasons).upper()
    for value in values:
        assert value.upper() not in joined


# --- our engine's output passes ----------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", FILES)
def test_engine_output_passes(deid: Deid, name: str, profile: str) -> None:
    ds = deid(name, profile)
    assert check_deidentified(ds) == []
    assert check_deidentified(reencode(ds)) == []


def test_engine_output_declares_what_the_check_reads(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert BASIC_PROFILE_CODE in codes
    assert {Option.RETAIN_SAFE_PRIVATE.code, Option.CLEAN_GRAPHICS.code} <= codes
    # The research output keeps safe-listed private attributes: rule 5 is exercised.
    assert any(tag >> 16 & 1 and tag & 0xFF00 for tag in elements(ds))


def test_check_does_not_modify_the_data_set(deid: Deid) -> None:
    ds = deid("JPEG2000.dcm", "research")
    before = encode_dataset(ds)
    kinds = {int(tag): type(elem) for tag, elem in elements(ds).items()}
    ds.PatientAddress = PLANTED
    del ds.PatientAddress
    assert check_deidentified(ds) == []
    assert encode_dataset(ds) == before
    assert {int(tag): type(elem) for tag, elem in elements(ds).items()} == kinds
    assert RawDataElement in kinds.values()  # undecoded sequences stayed undecoded


# --- raw files fail ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"])
def test_raw_files_fail(name: str) -> None:
    ds = read_dataset(testdata(name).read_bytes())
    reasons = check_deidentified(ds)
    assert reasons
    assert reasons[0].startswith("PatientIdentityRemoved (0012,0062) is missing")
    assert mentioning(reasons, "DeidentificationMethod (0012,0063)")
    identifying = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "InstitutionName")]
    no_value(reasons, *[v for v in identifying if len(v) >= 4])


def test_raw_ct_reasons_are_capped() -> None:
    reasons = check_deidentified(read_dataset(testdata("CT_small.dcm").read_bytes()))
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1].startswith("and ") and reasons[-1].endswith("more reasons")
    assert mentioning(reasons, "StudyDescription (0008,1030)")
    assert mentioning(reasons, 'private block (0009,10xx), creator "GEMS_IDEN_01"')


# --- the evidence (rules 1-3) ---------------------------------------------------------------


def test_patient_identity_removed_must_be_yes(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    ds.PatientIdentityRemoved = "NO"
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("PatientIdentityRemoved (0012,0062) is not YES")
    del ds.PatientIdentityRemoved
    assert check_deidentified(ds)[0].startswith("PatientIdentityRemoved (0012,0062) is missing")


def test_a_method_must_be_declared(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    del ds.DeidentificationMethodCodeSequence
    del ds.DeidentificationMethod
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert "DeidentificationMethod (0012,0063)" in reasons[0]
    assert "DeidentificationMethodCodeSequence (0012,0064)" in reasons[0]
    assert "biobank deid" in reasons[0]


def test_the_code_sequence_must_hold_the_basic_profile(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    declare(ds, Option.CLEAN_PIXEL_DATA.code)
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert "lacks code 113100" in reasons[0]
    declare(ds, BASIC_PROFILE_CODE, Option.CLEAN_PIXEL_DATA.code, "999999")  # unknown: ignored
    assert check_deidentified(ds) == []


def test_codes_of_another_scheme_are_not_options(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    items = []
    for code in (BASIC_PROFILE_CODE, Option.RETAIN_PATIENT_CHARACTERISTICS.code):
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM" if code == BASIC_PROFILE_CODE else "99LOCAL"
        item.CodeMeaning = BASIC_PROFILE_MEANING
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    assert mentioning(check_deidentified(ds), "PatientAge (0010,1010)")


def test_free_text_method_alone_is_basic_with_no_option(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")  # keeps what research options allow
    del ds.DeidentificationMethodCodeSequence
    reasons = check_deidentified(ds)
    assert not mentioning(reasons, "method is not declared")  # the free text is a method
    # Retain Patient Characteristics is no longer declared: X in the Basic Profile.
    assert mentioning(reasons, "PatientAge (0010,1010) is present")
    # Retain Safe Private neither: the kept private blocks are now reasons.
    assert mentioning(reasons, "Retain Safe Private Option (113111) is not declared")
    assert mentioning(reasons, "under the declared Basic Profile 113100 with no option")


def test_a_real_file_with_a_free_text_method_only() -> None:
    ds = read_dataset(testdata("emri_small.dcm").read_bytes())
    assert "DeidentificationMethodCodeSequence" not in ds and ds.DeidentificationMethod
    assert ds.PatientIdentityRemoved == "YES"
    reasons = check_deidentified(ds)
    assert not mentioning(reasons, "PatientIdentityRemoved")
    assert mentioning(reasons, "PregnancyStatus (0010,21C0) is present")
    assert all("with no option" in r for r in reasons)


# --- identifying attributes put back (rule 4) ------------------------------------------------


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
@pytest.mark.parametrize("profile", ["research", "basic"])
def test_patient_address_fails(deid: Deid, profile: str, encoded: bool) -> None:
    ds = deid("CT_small.dcm", profile)
    ds.PatientAddress = PLANTED
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("PatientAddress (0010,1040) is present with a value")
    assert "X (remove)" in reasons[0] and "biobank deid" in reasons[0]
    no_value(reasons, PLANTED)


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_the_evidence_sequence_is_walked_too(deid: Deid, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "basic")
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    declare(ds, *codes)
    ds.DeidentificationMethodCodeSequence[0].PatientAddress = PLANTED
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert len(reasons) == 1
    assert reasons[0].startswith(
        "DeidentificationMethodCodeSequence[0] > PatientAddress (0010,1040) is present"
    )
    no_value(reasons, PLANTED)


def test_an_emptied_attribute_is_not_a_reason(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    ds.PatientAddress = ""
    ds.OtherPatientIDsSequence = Sequence([])
    assert check_deidentified(ds) == []
    assert check_deidentified(reencode(ds)) == []


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_other_patient_ids_sequence_fails(deid: Deid, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "research")
    item = Dataset()
    item.PatientID = PLANTED
    item.IssuerOfPatientID = "PLANTED HOSPITAL"
    ds.OtherPatientIDsSequence = Sequence([item])
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert len(reasons) == 1  # the sequence, not its contents again
    assert reasons[0].startswith("OtherPatientIDsSequence (0010,1002) is present")
    no_value(reasons, PLANTED, "PLANTED HOSPITAL")


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_nested_requested_procedure_id_fails_with_its_path(deid: Deid, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "research")  # Clean Descriptors: the sequence is C, walked
    first, second = Dataset(), Dataset()
    first.RequestedProcedureID = PLANTED
    second.RequestedProcedureCodeSequence = Sequence([Dataset()])
    second.RequestedProcedureCodeSequence[0].CodeValue = "X1"
    second.RequestedProcedureCodeSequence[0].CodingSchemeDesignator = "99TEST"
    second.RequestedProcedureCodeSequence[0].CodeMeaning = "test"
    ds.RequestAttributesSequence = Sequence([first, second])
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert len(reasons) == 1
    assert reasons[0].startswith(
        "RequestAttributesSequence[0] > RequestedProcedureID (0040,1001) is present"
    )
    no_value(reasons, PLANTED)
    # Deeper and in the second item: the path says so.
    second.RequestedProcedureCodeSequence[0].RequestedProcedureID = PLANTED
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert mentioning(
        reasons,
        "RequestAttributesSequence[1] > RequestedProcedureCodeSequence[0] > "
        "RequestedProcedureID (0040,1001)",
    )


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_functional_groups_are_walked(deid: Deid, encoded: bool) -> None:
    ds = deid("eCT_Supplemental.dcm", "research")
    frame = ds.PerFrameFunctionalGroupsSequence[1]
    frame.FrameContentSequence[0].PatientAddress = PLANTED
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert reasons == [
        "PerFrameFunctionalGroupsSequence[1] > FrameContentSequence[0] > PatientAddress "
        "(0010,1040) is present with a value, but Table E.1-1 says X (remove) under the "
        "declared Basic Profile 113100 with options 113103, 113104, 113105, 113107, 113108, "
        "113109, 113111; de-identify at the site with `biobank deid` or a PS3.15-conformant "
        "tool, then resend"
    ]


def test_request_attributes_sequence_without_clean_descriptors_fails_whole(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    item = Dataset()
    item.RequestedProcedureID = PLANTED
    ds.RequestAttributesSequence = Sequence([item])
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("RequestAttributesSequence (0040,0275) is present")


def test_institution_name_fails_unless_institution_identity_is_retained(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.InstitutionName = PLANTED
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("InstitutionName (0008,0080) is present")
    assert "X/Z/D, which is X (remove) for this IOD" in reasons[0]
    no_value(reasons, PLANTED)
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    declare(ds, *codes, Option.RETAIN_INSTITUTION_IDENTITY.code)
    assert check_deidentified(ds) == []


def test_nested_composite_attributes_are_not_flagged(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    item = Dataset()
    item.InstitutionName = "ANONYMIZED"  # X/Z/D: its Type inside a macro is not known here
    ds.RequestAttributesSequence = Sequence([item])
    assert check_deidentified(ds) == []


def test_dates_follow_the_declared_date_option(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")  # Modified Dates: the shifted dates are C
    assert "StudyDate" in ds and check_deidentified(ds) == []
    declare(ds, BASIC_PROFILE_CODE, Option.RETAIN_SAFE_PRIVATE.code)
    reasons = check_deidentified(ds)
    assert mentioning(reasons, "SeriesDate (0008,0021) is present")  # X/D: X in CT (Type 3)
    assert not mentioning(reasons, "StudyDate (0008,0020)")  # Z: a shifted value is allowed


# --- private attributes (rule 5) -------------------------------------------------------------


TEST_ENTRIES = parse_safe_private(
    {
        "source": "test",
        "entries": [
            {"group": "0051", "creator": "ACME PLANTED", "element": "10", "vr": "LO"}
            | {"disposition": "keep"},
            {"group": "0051", "creator": "ACME PLANTED", "element": "12", "vr": "DA"}
            | {"disposition": "offset_date"},
        ],
    }
)
#: The packaged list (our research output keeps GE attributes from it) plus two test entries.
SAFE = SafePrivateList("test", {**load_safe_private().entries, **TEST_ENTRIES.entries})


def add_block(ds: Dataset, slot: int = 0x10, creator: str = "ACME PLANTED") -> None:
    ds.add_new(0x00510000 | slot, "LO", creator)
    ds.add_new(0x00510010 | slot << 8, "LO", PLANTED)
    ds.add_new(0x00510011 | slot << 8, "LO", PLANTED)


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_a_private_block_without_retain_safe_private_fails_once(deid: Deid, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "basic")
    add_block(ds)
    reasons = check_deidentified(reencode(ds) if encoded else ds, safe_private=SAFE)
    assert len(reasons) == 1  # once per block, not per element
    assert reasons[0].startswith('private block (0051,10xx), creator "ACME PLANTED", is present')
    assert "Retain Safe Private Option (113111) is not declared" in reasons[0]
    no_value(reasons, PLANTED)


@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_with_retain_safe_private_only_safe_listed_elements_pass(deid: Deid, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.add_new(0x00510010, "LO", "ACME PLANTED")
    ds.add_new(0x00511010, "LO", "kept")
    assert check_deidentified(ds, safe_private=SAFE) == []
    ds.add_new(0x00511011, "LO", PLANTED)
    reasons = check_deidentified(reencode(ds) if encoded else ds, safe_private=SAFE)
    assert len(reasons) == 1
    assert reasons[0].startswith('private (0051,1011), creator "ACME PLANTED", is not on the')
    no_value(reasons, PLANTED)


def test_safe_private_is_matched_by_creator_not_by_raw_tag(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.add_new(0x00510011, "LO", "ACME PLANTED")  # the same creator in slot 0x11
    ds.add_new(0x00511110, "LO", "kept")
    assert check_deidentified(ds, safe_private=SAFE) == []
    ds.add_new(0x00510010, "LO", "OTHER VENDOR")  # slot 0x10: another creator
    ds.add_new(0x00511010, "LO", "kept")
    reasons = check_deidentified(ds, safe_private=SAFE)
    assert len(reasons) == 1
    assert reasons[0].startswith('private (0051,1010), creator "OTHER VENDOR"')


def test_private_element_without_a_creator_fails(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.add_new(0x00511010, "LO", PLANTED)
    reasons = check_deidentified(ds, safe_private=SAFE)
    assert len(reasons) == 1
    assert "no Private Creator" in reasons[0]


def test_a_safe_listed_date_needs_a_date_option(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.add_new(0x00510010, "LO", "ACME PLANTED")
    ds.add_new(0x00511012, "DA", "20240101")
    assert check_deidentified(ds, safe_private=SAFE) == []
    declare(ds, BASIC_PROFILE_CODE, Option.RETAIN_SAFE_PRIVATE.code)
    reasons = check_deidentified(ds, safe_private=SAFE)
    assert mentioning(reasons, 'private (0051,1012), creator "ACME PLANTED", is a safe-listed')
    no_value(reasons, "20240101")


def test_the_packaged_safe_list_is_the_default(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    assert check_deidentified(ds) == []
    empty = SafePrivateList(source="none", entries={})
    reasons = check_deidentified(ds, safe_private=empty)
    assert reasons and all("is not on the safe private list" in r for r in reasons[:-1])


# --- pixels: burned-in annotation and overlays (rules 6 and 7) --------------------------------


def test_burned_in_annotation_yes_fails(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")
    ds.BurnedInAnnotation = "NO"
    assert check_deidentified(ds) == []
    ds.BurnedInAnnotation = "YES"
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("BurnedInAnnotation (0028,0301) is YES")
    assert "Clean Pixel Data" in reasons[0]


def add_overlay(ds: Dataset, group: int) -> None:
    ds.add_new(group << 16 | 0x0010, "US", 8)  # Overlay Rows
    ds.add_new(group << 16 | 0x0011, "US", 8)  # Overlay Columns
    ds.add_new(group << 16 | 0x0040, "CS", "G")  # Overlay Type
    ds.add_new(group << 16 | 0x0050, "SS", [1, 1])  # Overlay Origin
    ds.add_new(group << 16 | 0x0100, "US", 1)  # Overlay Bits Allocated
    ds.add_new(group << 16 | 0x0102, "US", 0)  # Overlay Bit Position


@pytest.mark.parametrize("group", [0x6000, 0x6002, 0x601E])
@pytest.mark.parametrize("encoded", [False, True], ids=["decoded", "encoded"])
def test_overlay_data_without_clean_graphics_fails(deid: Deid, group: int, encoded: bool) -> None:
    ds = deid("CT_small.dcm", "basic")
    add_overlay(ds, group)
    assert check_deidentified(ds) == []  # overlay attributes the table does not list
    ds.add_new(group << 16 | 0x3000, "OW", b"\xff" * 8)  # Overlay Data
    reasons = check_deidentified(reencode(ds) if encoded else ds)
    assert len(reasons) == 1
    assert reasons[0].startswith(f"OverlayData ({group:04X},3000) is present")
    assert "Clean Graphics Option (113103) is not declared" in reasons[0]


def test_overlay_data_with_clean_graphics_passes(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "research")  # declares 113103
    add_overlay(ds, 0x6000)
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    assert check_deidentified(ds) == []
    ds = deid("CT_small.dcm", "basic")
    add_overlay(ds, 0x6000)
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    ds.add_new(0x60004000, "LT", PLANTED)  # Overlay Comments: C under Clean Graphics too
    declare(ds, BASIC_PROFILE_CODE, Option.CLEAN_GRAPHICS.code)
    assert check_deidentified(ds) == []
    declare(ds, BASIC_PROFILE_CODE)
    reasons = check_deidentified(ds)
    assert len(reasons) == 2
    assert reasons[0].startswith("OverlayData (6000,3000) is present but the Clean Graphics")
    assert reasons[1].startswith("OverlayComments (6000,4000) is present with a value")
    no_value(reasons, PLANTED)


def test_curves_follow_the_repeating_group_row(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    ds.add_new(0x50023000, "OW", b"\x01\x00" * 4)  # Curve Data, group 5002
    reasons = check_deidentified(ds)
    assert len(reasons) == 1
    assert reasons[0].startswith("CurveData (5002,3000) is present with a value")
    declare(ds, BASIC_PROFILE_CODE, Option.CLEAN_GRAPHICS.code)
    assert check_deidentified(ds) == []


# --- the shape of the answer ---------------------------------------------------------------------


def test_reasons_are_capped_with_a_count(deid: Deid) -> None:
    ds = deid("CT_small.dcm", "basic")
    for group in range(0x0051, 0x0051 + 2 * 25, 2):
        ds.add_new(group << 16 | 0x0010, "LO", "ACME PLANTED")
        ds.add_new(group << 16 | 0x1010, "LO", PLANTED)
    reasons = check_deidentified(ds)
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1] == "and 5 more reasons"
    assert all(r.startswith("private block (") for r in reasons[:-1])
