"""The MR series classifier on a matrix of synthetic vendor headers."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from biobank.curation.classify import (
    classify_headers,
    classify_series,
    group_dce,
    group_series,
    orientation_of,
)
from biobank.curation.models import Orientation, SeriesLabel
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from tests.curation.mrheaders import AXIAL, CORONAL, SAGITTAL, enhanced_mr, mr_series

L = SeriesLabel
SIEMENS_B = (0x0019, 0x0C, "SIEMENS MR HEADER", "IS")
GE_B = (0x0043, 0x39, "GEMS_PARM_01", "IS")
PHILIPS_B = (0x2001, 0x03, "Philips Imaging DD 001", "FL")


def siemens_dwi() -> list[Dataset]:
    b = [0, 0, 1000, 1000]
    return mr_series(
        4,
        Manufacturer="SIEMENS",
        ScanningSequence="EP",
        SequenceVariant=["SK", "SP"],
        SequenceName="*ep_b1000t",
        RepetitionTime=4200,
        EchoTime=64,
        SeriesDescription="ep2d_diff_b0_1000_tra",
        per_slice=[
            {"ImagePositionPatient": [0, 0, float(i // 2)], "AcquisitionTime": f"10150{i}"}
            for i in range(4)
        ],
    ), b


def _with_private(
    series: list[Dataset], tag: tuple[int, int, str, str], values: list[float]
) -> None:
    group, offset, creator, vr = tag
    for ds, b in zip(series, values, strict=True):
        ds.private_block(group, creator, create=True).add_new(offset, vr, b)


# --------------------------------------------------------------------------- contrasts

CASES: list[tuple[str, dict[str, object], SeriesLabel]] = [
    (
        "siemens T1 SE short TR/TE",
        {
            "Manufacturer": "SIEMENS",
            "ScanningSequence": "SE",
            "SequenceVariant": ["SK", "SP"],
            "SequenceName": "*tse2d1_3",
            "RepetitionTime": 550,
            "EchoTime": 11,
            "SeriesDescription": "t1_tse_tra",
        },
        L.T1W,
    ),
    (
        "siemens MPRAGE 3D with inversion",
        {
            "Manufacturer": "SIEMENS",
            "ScanningSequence": ["GR", "IR"],
            "SequenceVariant": ["SK", "SP", "MP"],
            "SequenceName": "*tfl3d1_16ns",
            "MRAcquisitionType": "3D",
            "RepetitionTime": 2300,
            "EchoTime": 2.98,
            "InversionTime": 900,
            "FlipAngle": 9,
            "SeriesDescription": "t1_mprage_sag_p2",
        },
        L.T1W,
    ),
    (
        "GE BRAVO (IR_GEMS scan option, German description)",
        {
            "Manufacturer": "GE MEDICAL SYSTEMS",
            "ScanningSequence": "GR",
            "SequenceVariant": ["SS", "SK"],
            "ScanOptions": ["FAST_GEMS", "IR_GEMS"],
            "MRAcquisitionType": "3D",
            "RepetitionTime": 8.2,
            "EchoTime": 3.2,
            "InversionTime": 450,
            "SeriesDescription": "T1 3D BRAVO nativ",
        },
        L.T1W,
    ),
    (
        "philips T2 TSE long TR/TE, Dutch description",
        {
            "Manufacturer": "Philips",
            "ScanningSequence": "SE",
            "SequenceVariant": "SK",
            "RepetitionTime": 4000,
            "EchoTime": 98,
            "SeriesDescription": "T2W TSE transversaal",
        },
        L.T2W,
    ),
    (
        "GE T2 FSE, Italian description",
        {
            "Manufacturer": "GE MEDICAL SYSTEMS",
            "ScanningSequence": "SE",
            "ScanOptions": ["FAST_GEMS", "FC"],
            "RepetitionTime": 5200,
            "EchoTime": 102,
            "SeriesDescription": "T2 FSE assiale",
        },
        L.T2W,
    ),
    (
        "siemens FLAIR (TIRM, TI 2500)",
        {
            "Manufacturer": "SIEMENS",
            "ScanningSequence": ["SE", "IR"],
            "SequenceVariant": ["SK", "SP", "MP"],
            "SequenceName": "*tir2d1_16",
            "RepetitionTime": 9000,
            "EchoTime": 81,
            "InversionTime": 2500,
            "SeriesDescription": "t2_tirm_tra_dark-fluid",
        },
        L.FLAIR,
    ),
    (
        "GE FLAIR, French description",
        {
            "Manufacturer": "GE MEDICAL SYSTEMS",
            "ScanningSequence": ["SE", "IR"],
            "ScanOptions": ["IR_GEMS", "FAST_GEMS"],
            "RepetitionTime": 9500,
            "EchoTime": 120,
            "InversionTime": 2300,
            "SeriesDescription": "FLAIR axiale",
        },
        L.FLAIR,
    ),
    (
        "STIR (short TI) is T2W, not FLAIR",
        {
            "ScanningSequence": ["SE", "IR"],
            "RepetitionTime": 4500,
            "EchoTime": 40,
            "InversionTime": 160,
            "SeriesDescription": "STIR cor",
        },
        L.T2W,
    ),
    (
        "PD long TR short TE, French DP",
        {
            "ScanningSequence": "SE",
            "RepetitionTime": 3000,
            "EchoTime": 30,
            "SeriesDescription": "DP FS sagittale",
        },
        L.PD,
    ),
    (
        "PD/T2 overlap (TE 45): Spanish description decides T2",
        {
            "ScanningSequence": "SE",
            "RepetitionTime": 3500,
            "EchoTime": 45,
            "SeriesDescription": "T2 sagital",
        },
        L.T2W,
    ),
    (
        "GRE long TE is T2*, other",
        {
            "ScanningSequence": "GR",
            "RepetitionTime": 650,
            "EchoTime": 20,
            "SeriesDescription": "t2*_fl2d_tra",
        },
        L.OTHER,
    ),
    (
        "ADC from ImageType (Siemens)",
        {
            "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"],
            "ScanningSequence": "EP",
            "RepetitionTime": 4200,
            "EchoTime": 64,
            "SeriesDescription": "ep2d_diff_tra_ADC",
        },
        L.ADC,
    ),
    (
        "ADC whose description only says diffusion (Portuguese)",
        {
            "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
            "SeriesDescription": "difusão mapa",
        },
        L.ADC,
    ),
    (
        "FA map is other",
        {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "FA"], "SeriesDescription": "FA"},
        L.OTHER,
    ),
    (
        "TRACEW is DWI (derived)",
        {
            "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND"],
            "ScanningSequence": "EP",
            "SeriesDescription": "ep2d_diff_TRACEW",
        },
        L.DWI,
    ),
    (
        "TOF angiography is other even though TR/TE look T1",
        {
            "ScanningSequence": "GR",
            "SequenceName": "*fl3d1r_t70",
            "AngioFlag": "Y",
            "MRAcquisitionType": "3D",
            "RepetitionTime": 22,
            "EchoTime": 3.6,
            "SeriesDescription": "tof_3d_multi-slab",
        },
        L.OTHER,
    ),
]


@pytest.mark.parametrize(("name", "attrs", "label"), CASES, ids=[c[0] for c in CASES])
def test_contrast_matrix(name: str, attrs: dict[str, object], label: SeriesLabel) -> None:
    c = classify_series(mr_series(3, **attrs))
    assert c.label is label, c.evidence
    assert not c.needs_review, c.evidence
    assert c.evidence


def test_physics_and_text_agree_is_high_confidence() -> None:
    c = classify_series(mr_series(3, **CASES[0][1]))  # type: ignore[arg-type]
    assert c.confidence >= 0.9
    assert c.evidence[0].startswith("ScanningSequence=SE, EchoTime=11 ms, RepetitionTime=550 ms")
    assert "→ T1W (physics)" in c.evidence[0]


def test_t2_evidence_reads_like_the_issue() -> None:
    c = classify_series(
        mr_series(2, ScanningSequence="SE", EchoTime=98, RepetitionTime=4000, SeriesDescription="")
    )
    assert c.label is L.T2W
    assert (
        c.evidence[0]
        == "ScanningSequence=SE, EchoTime=98 ms, RepetitionTime=4000 ms → T2W (physics)"
    )
    assert 0.8 <= c.confidence < 0.9  # physics alone


def test_disagreement_goes_to_review() -> None:
    c = classify_series(
        mr_series(
            3, ScanningSequence="SE", RepetitionTime=500, EchoTime=10, SeriesDescription="T2 ax"
        )
    )
    assert c.label is L.T1W  # physics kept
    assert c.needs_review
    assert c.confidence < 0.5
    assert any("description says T2W" in e for e in c.evidence)


def test_text_only_when_physics_is_stripped() -> None:
    c = classify_series(mr_series(2, SeriesDescription="MR_T1"))
    assert c.label is L.T1W
    assert 0.5 <= c.confidence < 0.7
    assert not c.needs_review


def test_nothing_decides_goes_to_review() -> None:
    c = classify_series(mr_series(2))
    assert c.label is L.OTHER
    assert c.needs_review


@pytest.mark.parametrize(
    ("description", "label"),
    [
        ("Diffusion b1000", L.DWI),  # en/fr/de
        ("diffusie", L.DWI),  # nl
        ("difusión", L.DWI),  # es
        ("diffusione pesata", L.DWI),  # it
        ("Perfusion dyn", L.DCE),
        ("T2 tra", L.T2W),
        ("t2_tse_tra", L.T2W),
        ("T2 sagittale", L.T2W),
        ("T2-gewichtet koronar", L.T2W),
        ("PDW", L.PD),
        ("densité de protons", L.PD),
        ("3-plane loc", L.LOCALIZER),
        ("Survey", L.LOCALIZER),
        ("AAHead_Scout", L.LOCALIZER),
        ("t2 flair", L.FLAIR),
        ("T1 FLAIR", L.T1W),
        ("SWI", L.OTHER),
        ("vibe_fs_tra", L.T1W),
    ],
)
def test_descriptions_in_several_languages(description: str, label: SeriesLabel) -> None:
    c = classify_series(mr_series(2, SeriesDescription=description))
    assert c.label is label, c.evidence


def test_evidence_quotes_keywords_not_the_description() -> None:
    c = classify_series(mr_series(2, SeriesDescription="T2 tra Mustermann Erika 19700101"))
    assert c.label is L.T2W
    text = " ".join(c.evidence)
    assert "Mustermann" not in text and "19700101" not in text
    assert "'t2'" in text


@pytest.mark.parametrize(
    ("description", "agent", "expected"),
    [
        ("T1 post KM", None, True),  # de Kontrastmittel
        ("T1 Gd", None, True),
        ("T1 FS +C", None, True),
        ("t1 vibe post-contrast", None, True),
        ("T1 con mdc", None, True),  # it mezzo di contrasto
        ("T1 pre KM", None, False),
        ("T1 nativ", None, False),
        ("T1 sans gado", None, False),
        ("T1 tra", "Gadovist", True),
        ("T1 tra", "NONE", False),
    ],
)
def test_contrast_flag(description: str, agent: str | None, expected: bool) -> None:
    attrs: dict[str, object] = {
        "ScanningSequence": "SE",
        "RepetitionTime": 500,
        "EchoTime": 10,
        "SeriesDescription": description,
    }
    if agent is not None:
        attrs["ContrastBolusAgent"] = agent
        attrs["ContrastBolusRoute"] = "IV"
    assert classify_series(mr_series(2, **attrs)).contrast is expected


# --------------------------------------------------------------------------- diffusion


def test_siemens_private_b_values() -> None:
    series, b = siemens_dwi()
    _with_private(series, SIEMENS_B, b)
    for ds in series:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]  # no DIFFUSION token: b decides
    c = classify_series(series)
    assert c.label is L.DWI
    assert any("Siemens (0019,100C) b=0/1000" in e for e in c.evidence)
    assert c.n_slices == 2


def test_standard_b_values_b0_and_b1000_in_one_series() -> None:
    series, b = siemens_dwi()
    for ds, value in zip(series, b, strict=True):
        ds.DiffusionBValue = value
    c = classify_series(series)
    assert c.label is L.DWI
    assert any("DiffusionBValue (0018,9087) b=0/1000" in e for e in c.evidence)


def test_philips_private_b_values_without_epi_token() -> None:
    series = mr_series(
        4,
        Manufacturer="Philips Medical Systems",
        ScanningSequence="SE",
        RepetitionTime=3000,
        EchoTime=70,
        SeriesDescription="DWI_b800",
    )
    _with_private(series, PHILIPS_B, [0.0, 0.0, 800.0, 800.0])
    c = classify_series(series)
    assert c.label is L.DWI  # a long-TR SE by TR/TE alone, but b > 0 comes first
    assert any("Philips (2001,1003)" in e for e in c.evidence)


def test_ge_private_b_value_with_offset_needs_epi() -> None:
    series = mr_series(
        2,
        Manufacturer="GE MEDICAL SYSTEMS",
        ScanningSequence=["EP", "SE"],
        RepetitionTime=5000,
        EchoTime=75,
    )
    _with_private(series, GE_B, [[1000001000, 8, 0, 0], [1000001000, 8, 0, 0]])
    c = classify_series(series)
    assert c.label is L.DWI
    assert any("GE (0043,1039) b=1000" in e for e in c.evidence)


def test_ge_private_value_on_a_non_epi_series_is_ignored() -> None:
    series = mr_series(
        2,
        Manufacturer="GE MEDICAL SYSTEMS",
        ScanningSequence="SE",
        RepetitionTime=4000,
        EchoTime=100,
    )
    _with_private(series, GE_B, [[20, 8, 0, 0], [20, 8, 0, 0]])
    assert classify_series(series).label is L.T2W


def test_private_b_value_without_its_creator_is_still_read() -> None:
    series, b = siemens_dwi()
    for ds, value in zip(series, b, strict=True):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.add_new(0x0019100C, "IS", value)  # private creator element lost
    assert classify_series(series).label is L.DWI


# --------------------------------------------------------------------------- enhanced MR


def test_enhanced_multiframe_mprage() -> None:
    c = classify_series(enhanced_mr(8, tr=8.1, te=3.7, ti=1000, description="T1 3D TFE"))
    assert c.label is L.T1W, c.evidence
    assert c.is3d
    assert c.orientation is Orientation.CORONAL
    assert c.n_slices == 8


def test_enhanced_multiframe_diffusion_per_frame_b_values() -> None:
    c = classify_series(
        enhanced_mr(6, tr=3000, te=80, echo="SPIN", acq_type="2D", b_values=[0, 1000])
    )
    assert c.label is L.DWI, c.evidence
    assert any("MRDiffusionSequence" in e for e in c.evidence)
    assert c.n_slices == 3


def test_enhanced_multiframe_t2_spin_echo() -> None:
    c = classify_series(enhanced_mr(4, tr=3500, te=110, echo="SPIN", acq_type="3D"))
    assert c.label is L.T2W, c.evidence


# --------------------------------------------------------------------------- localizer


def test_three_plane_localizer_from_geometry() -> None:
    series = []
    for iop in (AXIAL, CORONAL, SAGITTAL):
        series += mr_series(
            1,
            series="1.2.3.4.5",
            iop=iop,
            ScanningSequence="GR",
            SequenceName="*fl2d1",
            RepetitionTime=8.6,
            EchoTime=4.0,
        )
    c = classify_series(series)
    assert c.label is L.LOCALIZER
    assert c.orientation is Orientation.MIXED
    assert not c.needs_review


def test_localizer_from_image_type() -> None:
    c = classify_series(
        mr_series(3, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesDescription="T2")
    )
    assert c.label is L.LOCALIZER


def test_haste_is_not_a_localizer() -> None:
    c = classify_series(
        mr_series(
            20,
            ScanningSequence="SE",
            SequenceName="*h2d1_256",
            RepetitionTime=1400,
            EchoTime=92,
            SeriesDescription="haste_tra",
        )
    )
    assert c.label is L.T2W


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize(
    ("iop", "expected"),
    [
        (AXIAL, Orientation.AXIAL),
        (CORONAL, Orientation.CORONAL),
        (SAGITTAL, Orientation.SAGITTAL),
        # 20 degrees about x: still axial
        ([1, 0, 0, 0, math.cos(0.35), math.sin(0.35)], Orientation.AXIAL),
        # 45 degrees about x: oblique
        ([1, 0, 0, 0, math.cos(0.785), math.sin(0.785)], Orientation.OBLIQUE),
    ],
)
def test_orientation_from_iop(iop: list[float], expected: Orientation) -> None:
    assert orientation_of(iop) is expected
    assert classify_series(mr_series(2, iop=iop)).orientation is expected


def test_orientation_from_text_when_iop_missing() -> None:
    series = mr_series(2, SeriesDescription="T2 sag")
    for ds in series:
        del ds.ImageOrientationPatient
    c = classify_series(series)
    assert c.orientation is Orientation.SAGITTAL


def test_non_mr_series_is_other_with_orientation() -> None:
    phi = make_patient_phi(1, seed=3)
    c = classify_series(make_ct_series(phi, 2, rows=16, cols=16))
    assert c.label is L.OTHER
    assert c.modality == "CT"
    assert c.evidence == ["modality CT: not classified (MR only)"]
    assert c.orientation is Orientation.AXIAL


# --------------------------------------------------------------------------- DCE


def _dce_phases(n: int, *, start: int = 0, gap_s: int = 60, description: str = "t1_vibe_fs_tra"):
    headers: list[Dataset] = []
    for phase in range(n):
        seconds = 10 * 3600 + start + phase * gap_s
        time = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}.000"
        headers += mr_series(
            4,
            SeriesNumber=10 + phase,
            Manufacturer="SIEMENS",
            ScanningSequence="GR",
            SequenceName="*fl3d1",
            MRAcquisitionType="3D",
            RepetitionTime=4.1,
            EchoTime=1.6,
            FlipAngle=10,
            AcquisitionTime=time,
            ContrastBolusAgent="Dotarem" if phase else "",
            SeriesDescription=description,
        )
    return headers


def test_five_dce_phases_as_separate_series_are_grouped() -> None:
    results = classify_headers(_dce_phases(5))
    assert len(results) == 5
    assert {c.label for c in results} == {L.DCE}
    groups = {c.dce_group for c in results}
    assert len(groups) == 1 and None not in groups
    assert [c.contrast for c in results] == [False, True, True, True, True]
    assert "phase 1 of 5" in results[0].evidence[-1]


def test_single_vibe_and_dixon_outputs_are_not_dce() -> None:
    headers = _dce_phases(1)
    same_time = []
    for kind in ("W", "F", "IN", "OPP"):
        same_time += mr_series(
            4,
            ScanningSequence="GR",
            SequenceName="*fl3d2",
            MRAcquisitionType="3D",
            RepetitionTime=4.0,
            EchoTime=1.3,
            FlipAngle=9,
            ImageType=["ORIGINAL", "PRIMARY", "DIXON", "NONE"],
            AcquisitionTime="101000.000",
            SeriesDescription=f"t1_vibe_dixon_{kind}",
        )
    results = classify_headers(headers + same_time)
    assert all(c.dce_group is None for c in results)
    assert all(c.label is L.T1W for c in results)


def test_dce_in_one_series_with_temporal_positions() -> None:
    series = mr_series(
        6,
        ScanningSequence="GR",
        MRAcquisitionType="3D",
        RepetitionTime=3.9,
        EchoTime=1.4,
        per_slice=[
            {
                "ImagePositionPatient": [0, 0, float(i % 2)],
                "TemporalPositionIdentifier": i // 2 + 1,
                "AcquisitionTime": f"1015{i // 2:02d}",
            }
            for i in range(6)
        ],
    )
    c = classify_series(series)
    assert c.label is L.DCE, c.evidence


def test_phases_far_apart_are_not_grouped() -> None:
    results = classify_headers(_dce_phases(3, gap_s=3600))
    assert all(c.dce_group is None for c in results)


def test_group_dce_uses_headers_by_series() -> None:
    headers = _dce_phases(3)
    groups = group_series(headers)
    results = group_dce([classify_series(s) for s in groups.values()], groups)
    assert len({c.dce_group for c in results}) == 1


# --------------------------------------------------------------------------- end to end


def test_synthetic_mr_files_end_to_end(tmp_path: Path) -> None:
    phi = make_patient_phi(0, seed=5)
    for i, ds in enumerate(make_mr_series(phi, 3, rows=16, cols=16)):
        ds.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(tmp_path.iterdir())]
    (c,) = classify_headers(headers)
    # Siemens SE, TR 600, TE 12, "*tse2d1_3", description t1_tse_tra: T1W, axial, 2D
    assert c.label is L.T1W
    assert c.orientation is Orientation.AXIAL
    assert not c.is3d and not c.derived and not c.contrast
    assert c.confidence >= 0.9 and not c.needs_review
    text = " ".join(c.evidence)
    assert phi.patient_name not in text and phi.mr.date_text not in str(c.to_json())
    assert c.to_json()["label"] == "T1W"


# --------------------------------------------------------------------------- real headers


@pytest.mark.parametrize(
    ("name", "label", "derived"),
    [
        ("MR_small.dcm", L.T2W, True),  # Toshiba SE, TR 4000, TE 240, 3D, DERIVED
        ("MR2_UNCR.dcm", L.T1W, False),  # Philips SE, TR 350, TE 27
    ],
)
def test_real_pydicom_headers(name: str, label: SeriesLabel, derived: bool) -> None:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed")
    c = classify_series([pydicom.dcmread(path, stop_before_pixels=True)])
    assert c.label is label, c.evidence
    assert c.derived is derived


def test_real_philips_localizers_and_projection() -> None:
    root = Path(str(get_testdata_file("MR_small.dcm"))).parent / "dicomdirtests" / "98892003"
    headers = [
        pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(root.rglob("*")) if p.is_file()
    ]
    by_label: dict[SeriesLabel, int] = {}
    for c in classify_headers(headers):
        by_label[c.label] = by_label.get(c.label, 0) + 1
        assert not c.needs_review, c.evidence
    assert by_label == {L.LOCALIZER: 6, L.OTHER: 1}  # FAST LOCALIZER ×4, PILOT ×2, ANGIO MIP


# --------------------------------------------------------------------------- edges


def test_pd_t2_overlap_without_description_is_a_guess() -> None:
    c = classify_series(mr_series(2, ScanningSequence="SE", RepetitionTime=3000, EchoTime=45))
    assert c.label is L.PD
    assert c.confidence <= 0.6


def test_vendor_name_decides_when_tr_te_are_stripped() -> None:
    c = classify_series(mr_series(2, SequenceName="*tfl3d1_16ns", MRAcquisitionType="3D"))
    assert c.label is L.T1W
    assert 0.7 <= c.confidence < 0.8
    assert any("(name)" in e for e in c.evidence)


def test_ge_private_pulse_sequence_name() -> None:
    series = mr_series(2, Manufacturer="GE MEDICAL SYSTEMS")
    for ds in series:
        ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x9E, "LO", "EFGRE3D")
    assert classify_series(series).label is L.T1W


def test_post_op_is_not_post_contrast() -> None:
    c = classify_series(
        mr_series(
            2,
            ScanningSequence="SE",
            RepetitionTime=4000,
            EchoTime=90,
            SeriesDescription="T2 post-op",
        )
    )
    assert c.label is L.T2W
    assert not c.contrast


def test_dsc_perfusion_is_other_not_dce() -> None:
    c = classify_series(
        mr_series(
            3,
            ScanningSequence=["EP", "GR"],
            RepetitionTime=1500,
            EchoTime=30,
            SeriesDescription="ep2d_perf",
        )
    )
    assert c.label is L.OTHER
    assert not c.needs_review
