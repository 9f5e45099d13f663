"""Golden tests: every PS3.15 action code and every option column, on built datasets."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from biobank.deid import Option, Profile, Pseudonymizer, builtin_profile, parse_profile
from biobank.deid.table import compile_rules, load_table, resolve_row_action
from biobank.errors import InvalidProfile
from tests.conftest import NoText, run_deid

NAME = "Doeberg^Johanna"
MRN = "MRN7734521"


def make_ct(**extra: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = NAME
    ds.PatientID = MRN
    ds.PatientBirthDate = "19610412"
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.PatientWeight = "71.5"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101530"
    ds.SeriesDate = "20240315"
    ds.AcquisitionDateTime = "20240315101612.250000+0100"
    ds.ContentDate = "20240315"
    ds.StudyID = "20240315-01"
    ds.AccessionNumber = "ACC99120377"
    ds.StudyDescription = "CT THORAX Doeberg 15/03/2024"
    ds.SeriesDescription = "Axial 1.25mm lung"
    ds.InstitutionName = "Klinikum Nordstadt"
    ds.InstitutionAddress = "Hauptstrasse 12, 30161 Hannover"
    ds.StationName = "CTNORD01"
    ds.DeviceSerialNumber = "SN0045521"
    ds.Manufacturer = "ACME"
    ds.ClinicalTrialSponsorName = "Sponsorama"
    ds.ReferringPhysicianName = "Grünwald^Peter"
    ds.SliceThickness = "1.25"
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def deid(ds: Dataset, profile: Profile, pseudonymizer: Pseudonymizer):  # noqa: ANN201
    return run_deid(ds, profile, pseudonymizer, text_detector=NoText())


def profile_with(*options: str) -> Profile:
    text = "name: test\noptions: [" + ", ".join(options) + "]\n"
    return parse_profile(text)


class TestTable:
    def test_table_has_every_row_and_action(self) -> None:
        table = load_table()
        assert len(table.rows) == 656
        codes = {row.basic for row in table.rows}
        assert codes == {"D", "Z", "X", "U", "K", "C", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"} & (
            codes
        )
        assert {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"} <= codes

    def test_option_column_replaces_basic_action(self) -> None:
        table = load_table()
        study_date = table.by_tag[0x00080020]
        assert resolve_row_action(study_date, frozenset()) == "Z"
        assert (
            resolve_row_action(study_date, frozenset({Option.RETAIN_LONGITUDINAL_FULL_DATES}))
            == "K"
        )
        assert (
            resolve_row_action(study_date, frozenset({Option.RETAIN_LONGITUDINAL_MODIFIED_DATES}))
            == "C"
        )

    def test_most_protective_option_wins(self) -> None:
        table = load_table()
        # Date of Last Detector Calibration: K under device identity, C under modified dates.
        row = table.by_tag[0x0018700C]
        both = frozenset({Option.RETAIN_DEVICE_IDENTITY, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES})
        assert resolve_row_action(row, both) == "C"

    def test_repeating_groups_resolve(self) -> None:
        rules = compile_rules(builtin_profile("basic"))
        assert rules.action_for(0x60023000) == "X"  # overlay data in group 6002
        assert rules.action_for(0x50001000) == "X"  # curves
        assert rules.private == "X"
        assert compile_rules(builtin_profile("research")).private == "C"


class TestActionCodes:
    def test_u_remaps_every_instance_uid_consistently(
        self, basic: Profile, pseudonymizer: Pseudonymizer
    ) -> None:
        ds = make_ct()
        old = (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID)
        out = deid(ds, basic, pseudonymizer).dataset
        new = (
            out.SOPInstanceUID,
            out.StudyInstanceUID,
            out.SeriesInstanceUID,
            out.FrameOfReferenceUID,
        )
        for before, after in zip(old, new, strict=True):
            assert after != before
            assert after == pseudonymizer.uid(before)
            assert after.startswith("2.25.") and len(after) <= 64
        assert out.SOPClassUID == CTImageStorage  # class UIDs untouched
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID

    def test_z_empties(self, basic: Profile, pseudonymizer: Pseudonymizer) -> None:
        out = deid(make_ct(), basic, pseudonymizer).dataset
        assert "StudyID" in out and out.StudyID == ""
        assert "AccessionNumber" in out and out.AccessionNumber == ""
        assert out.PatientBirthDate == ""

    def test_x_removes(self, basic: Profile, pseudonymizer: Pseudonymizer) -> None:
        out = deid(make_ct(), basic, pseudonymizer).dataset
        for keyword in ("InstitutionAddress", "PatientAge", "PatientWeight", "StudyDescription"):
            assert keyword not in out

    def test_d_replaces_with_dummy(self, basic: Profile, pseudonymizer: Pseudonymizer) -> None:
        result = deid(make_ct(), basic, pseudonymizer)
        assert result.dataset.ClinicalTrialSponsorName not in ("", "Sponsorama")
        assert b"Sponsorama" not in result.data

    def test_k_keeps_under_option(self, pseudonymizer: Pseudonymizer) -> None:
        out = deid(make_ct(), profile_with("retain_patient_characteristics"), pseudonymizer).dataset
        assert out.PatientSex == "F"
        assert out.PatientAge == "062Y"
        assert out.PatientWeight == "71.5"

    def test_c_cleans_descriptors(self, research: Profile, pseudonymizer: Pseudonymizer) -> None:
        result = deid(make_ct(), research, pseudonymizer)
        description = result.dataset.StudyDescription
        assert "CT THORAX" in description
        assert "Doeberg" not in description and "2024" not in description
        assert result.dataset.SeriesDescription == "Axial 1.25mm lung"

    def test_composites_resolve_by_iod_type(
        self, basic: Profile, pseudonymizer: Pseudonymizer
    ) -> None:
        out = deid(make_ct(), basic, pseudonymizer).dataset
        # X/Z/D Institution Name and Station Name are Type 3 in a CT image: removed.
        assert "InstitutionName" not in out
        assert "StationName" not in out
        # X/D Series Date is Type 3: removed; Z/D Content Date is Type 2C in CT: emptied.
        assert "SeriesDate" not in out
        assert out.get("ContentDate", "") == ""
        # Z/D Patient ID is replaced by the pseudonym (a dummy value).
        assert out.PatientID == out.PatientName and out.PatientID.startswith("P")

    def test_record_counts_actions_without_values(
        self, basic: Profile, pseudonymizer: Pseudonymizer
    ) -> None:
        result = deid(make_ct(), basic, pseudonymizer)
        record = result.record.to_json()
        assert record["actions"]["X"] >= 4 and record["actions"]["U"] >= 4
        assert "00081030" in record["tags"]["X"]  # StudyDescription removed
        text = str(record)
        for phi in (NAME, MRN, "Klinikum", "20240315", "ACC99120377"):
            assert phi not in text


class TestOptions:
    def test_retain_uids(self, pseudonymizer: Pseudonymizer) -> None:
        ds = make_ct()
        sop = ds.SOPInstanceUID
        out = deid(ds, profile_with("retain_uids"), pseudonymizer).dataset
        assert out.SOPInstanceUID == sop

    @pytest.mark.parametrize(
        ("option", "keyword", "value"),
        [
            ("retain_device_identity", "StationName", "CTNORD01"),
            ("retain_device_identity", "DeviceSerialNumber", "SN0045521"),
            ("retain_institution_identity", "InstitutionName", "Klinikum Nordstadt"),
            ("retain_longitudinal_full_dates", "StudyDate", "20240315"),
        ],
    )
    def test_retain_options_keep(
        self, option: str, keyword: str, value: str, pseudonymizer: Pseudonymizer
    ) -> None:
        kept = deid(make_ct(), profile_with(option), pseudonymizer).dataset
        assert kept.get(keyword) == value
        removed = deid(make_ct(), builtin_profile("basic"), pseudonymizer).dataset
        assert removed.get(keyword, "") != value

    def test_modified_dates_shift_consistently(self, pseudonymizer: Pseudonymizer) -> None:
        out = deid(
            make_ct(), profile_with("retain_longitudinal_modified_dates"), pseudonymizer
        ).dataset
        assert out.StudyDate != "20240315" and len(out.StudyDate) == 8
        assert out.AcquisitionDateTime.startswith(out.StudyDate)
        assert out.AcquisitionDateTime.endswith("101612.250000+0100")
        assert out.StudyTime == "101530"
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"

    def test_full_dates_marked_unmodified(self, pseudonymizer: Pseudonymizer) -> None:
        out = deid(make_ct(), profile_with("retain_longitudinal_full_dates"), pseudonymizer).dataset
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
        assert out.AcquisitionDateTime == "20240315101612.250000+0100"

    def test_clean_descriptors_off_removes(self, pseudonymizer: Pseudonymizer) -> None:
        out = deid(make_ct(), profile_with("retain_patient_characteristics"), pseudonymizer).dataset
        assert "StudyDescription" not in out and "SeriesDescription" not in out

    def test_clean_structured_content_vs_dummy(self, pseudonymizer: Pseudonymizer) -> None:
        def sr() -> Dataset:
            ds = make_ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11", Modality="SR")
            item = Dataset()
            item.ValueType = "TEXT"
            item.RelationshipType = "CONTAINS"
            item.TextValue = "Small nodule right upper lobe, seen by Dr Doeberg"
            pname = Dataset()
            pname.ValueType = "PNAME"
            pname.RelationshipType = "HAS OBS CONTEXT"
            pname.PersonName = "Kowalczyk^Anna"
            ds.ContentSequence = Sequence([pname, item])
            return ds

        cleaned = deid(sr(), profile_with("clean_structured_content"), pseudonymizer)
        text = cleaned.dataset.ContentSequence[1].TextValue
        assert "nodule right upper lobe" in text and "Doeberg" not in text
        assert cleaned.dataset.ContentSequence[0].PersonName != "Kowalczyk^Anna"
        dummy = deid(sr(), builtin_profile("basic"), pseudonymizer)
        assert "nodule" not in dummy.dataset.ContentSequence[1].TextValue
        for result in (cleaned, dummy):
            assert b"Kowalczyk" not in result.data and b"Doeberg" not in result.data

    def test_clean_graphics(self, pseudonymizer: Pseudonymizer) -> None:
        def pr() -> Dataset:
            ds = make_ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.11.1", Modality="PR")
            text = Dataset()
            text.UnformattedTextValue = "Doeberg MRN7734521 lesion 12mm"
            layer = Dataset()
            layer.GraphicLayer = "LAYER1"
            layer.TextObjectSequence = Sequence([text])
            ds.GraphicAnnotationSequence = Sequence([layer])
            return ds

        # The annotation layer survives under Clean Graphics; Unformatted Text Value is a 2026c
        # row whose option columns are not known yet, so its Basic action D (dummy) stands.
        cleaned = deid(pr(), profile_with("clean_graphics"), pseudonymizer)
        layer = cleaned.dataset.GraphicAnnotationSequence[0]
        assert layer.GraphicLayer == "LAYER1"
        assert layer.TextObjectSequence[0].UnformattedTextValue == "ANONYMIZED"
        assert b"Doeberg" not in cleaned.data and b"7734521" not in cleaned.data

    def test_method_codes_name_applied_options(
        self, research: Profile, pseudonymizer: Pseudonymizer
    ) -> None:
        out = deid(make_ct(), research, pseudonymizer).dataset
        codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
        expected = {"113100"} | {o.code for o in research.options if o.is_table_column}
        assert set(codes) == expected
        assert "113101" not in codes  # no pixel cleaning happened on a CT
        assert all(
            item.CodingSchemeDesignator == "DCM" for item in out.DeidentificationMethodCodeSequence
        )
        assert out.PatientIdentityRemoved == "YES"
        assert any("research" in line for line in out.DeidentificationMethod)


class TestProfiles:
    def test_default_profile_options(self, research: Profile) -> None:
        assert research.options == {
            Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
            Option.RETAIN_PATIENT_CHARACTERISTICS,
            Option.RETAIN_DEVICE_IDENTITY,
            Option.CLEAN_DESCRIPTORS,
            Option.CLEAN_STRUCTURED_CONTENT,
            Option.CLEAN_GRAPHICS,
            Option.RETAIN_SAFE_PRIVATE,
            Option.CLEAN_PIXEL_DATA,
        }

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("name: x\noptions: [retain_everything]\n", "unknown option"),
            ("options: [clean_descriptors]\n", "'name'"),
            ("name: x\nopts: []\n", "unknown key"),
            (
                "name: x\noptions: [retain_longitudinal_full_dates,"
                " retain_longitudinal_modified_dates]\n",
                "either",
            ),
            ("name: x\nallow_tags: ['0x00091001']\n", "private"),
            ("name: [unclosed\n", "YAML"),
        ],
    )
    def test_bad_profiles_are_explained(self, text: str, message: str) -> None:
        with pytest.raises(InvalidProfile, match=message):
            parse_profile(text, source="my.yaml")

    def test_allow_tags_keep_retired(self, pseudonymizer: Pseudonymizer) -> None:
        ds = make_ct()
        ds.add_new(0x00181240, "IS", "4")  # Upper/Lower Pixel Values: retired
        plain = deid(ds, profile_with("retain_patient_characteristics"), pseudonymizer).dataset
        assert 0x00181240 not in plain
        allowing = parse_profile("name: a\noptions: []\nallow_tags: ['0x00181240']\n")
        assert (
            deid(make_ct() if False else ds, allowing, pseudonymizer).dataset[0x00181240].value == 4
        )


@pytest.mark.parametrize(
    ("keyword", "vr", "value"),
    [
        ("PatientBirthDateInAlternativeCalendar", "LO", "1340-07-21"),
        ("FilenameInContainer", "UR", "DOEBERG_JOHANNA_MRN7734521.dcm"),
        ("ContactDisplayName", "LO", "Doeberg Johanna"),
        ("ContactURI", "UR", "mailto:johanna.doeberg@example.org"),
        ("OwnerID", "SH", "JDOEBERG"),
        ("BoardingPassID", "SH", "BP7734521"),
    ],
)
def test_identifying_attributes_missing_from_the_table_are_removed(
    keyword: str, vr: str, value: str, research: Profile, pseudonymizer: Pseudonymizer
) -> None:
    ds = make_ct()
    setattr(ds, keyword, value)
    result = deid(ds, research, pseudonymizer)
    assert keyword not in result.dataset
    assert value.encode() not in result.data
