"""The default static series of an MR study: requirements, tie-breaks and fallbacks."""

from __future__ import annotations

from biobank.curation.classify import classify_headers
from biobank.curation.default import choose_default, default_series
from biobank.curation.models import Classification, Orientation, SeriesLabel
from tests.curation.mrheaders import mr_series

L = SeriesLabel
STUDY = "1.2.3"


def series(
    uid: str,
    label: SeriesLabel = L.T2W,
    *,
    is3d: bool = True,
    orientation: Orientation = Orientation.AXIAL,
    derived: bool = False,
    number: int = 1,
    thickness: float = 1.0,
    slices: int = 100,
    area: float = 0.25,
    review: bool = False,
    modality: str = "MR",
) -> Classification:
    return Classification(
        series_instance_uid=uid,
        study_instance_uid=STUDY,
        modality=modality,
        label=label,
        orientation=orientation,
        is3d=is3d,
        derived=derived,
        contrast=False,
        confidence=0.95,
        needs_review=review,
        series_number=number,
        n_slices=slices,
        slice_thickness=thickness,
        pixel_area=area,
    )


def test_the_3d_axial_original_t2w_wins() -> None:
    choice = choose_default(
        STUDY,
        [
            series("2d", is3d=False, thickness=3.0, slices=30),
            series("cor", orientation=Orientation.CORONAL),
            series("mpr", derived=True),
            series("t1", L.T1W),
            series("ok"),
        ],
    )
    assert choice.series_instance_uid == "ok"
    assert not choice.fallback
    assert choice.candidates == 1


def test_tie_break_smallest_voxel_then_coverage_then_latest_number() -> None:
    choice = choose_default(
        STUDY,
        [series("coarse", thickness=1.5), series("fine", thickness=0.8, number=3)],
    )
    assert choice.series_instance_uid == "fine"
    choice = choose_default(STUDY, [series("short", slices=60), series("long", slices=120)])
    assert choice.series_instance_uid == "long"
    choice = choose_default(STUDY, [series("first", number=4), series("repeat", number=9)])
    assert choice.series_instance_uid == "repeat"
    assert "chosen among 2" in choice.reason


def test_a_series_in_review_loses_the_tie() -> None:
    choice = choose_default(
        STUDY, [series("doubtful", thickness=0.5, review=True), series("sure", thickness=1.0)]
    )
    assert choice.series_instance_uid == "sure"


def test_fallback_to_2d_axial_t2w() -> None:
    choice = choose_default(
        STUDY,
        [
            series("2d-thick", is3d=False, thickness=5.0, slices=24),
            series("2d-thin", is3d=False, thickness=3.0, slices=30),
            series("sag3d", orientation=Orientation.SAGITTAL),
        ],
    )
    assert choice.series_instance_uid == "2d-thin"
    assert choice.fallback
    assert "no 3D axial original T2W" in choice.reason


def test_fallback_to_another_plane_then_derived_then_anything() -> None:
    choice = choose_default(STUDY, [series("cor", orientation=Orientation.CORONAL)])
    assert choice.series_instance_uid == "cor" and choice.fallback
    choice = choose_default(STUDY, [series("mpr", derived=True), series("loc", L.LOCALIZER)])
    assert choice.series_instance_uid == "mpr" and choice.fallback
    choice = choose_default(
        STUDY, [series("t1-2d", L.T1W, is3d=False), series("t1-3d", L.T1W), series("x", L.OTHER)]
    )
    assert choice.series_instance_uid == "t1-3d" and choice.fallback
    assert "no T2W series" in choice.reason


def test_no_usable_series() -> None:
    choice = choose_default(STUDY, [series("loc", L.LOCALIZER), series("ct", modality="CT")])
    assert choice.series_instance_uid is None
    assert choice.fallback
    assert choice.to_json()["series_instance_uid"] is None


def test_default_series_per_study_skips_studies_without_mr() -> None:
    ct = series("ct", modality="CT")
    ct.study_instance_uid = "9.9"
    result = default_series([series("ok"), ct])
    assert list(result) == [STUDY]


def test_default_from_classified_headers() -> None:
    t2_3d = mr_series(
        40,
        SeriesNumber=5,
        ScanningSequence="SE",
        SequenceName="*spc_200",
        MRAcquisitionType="3D",
        RepetitionTime=2000,
        EchoTime=200,
        SliceThickness=1.0,
        SeriesDescription="t2_space_tra_iso",
    )
    t2_2d = mr_series(
        20,
        SeriesNumber=3,
        ScanningSequence="SE",
        RepetitionTime=4000,
        EchoTime=100,
        SliceThickness=3.0,
        SeriesDescription="t2_tse_tra",
    )
    dwi = mr_series(
        20, ScanningSequence="EP", ImageType=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    )
    results = classify_headers(t2_2d + t2_3d + dwi)
    (choice,) = default_series(results).values()
    assert choice.series_instance_uid == t2_3d[0].SeriesInstanceUID
    assert not choice.fallback
