"""Image quality metrics on degraded phantoms, CT checks, the decision and robust z-scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom.dataset import Dataset
from scipy import ndimage

from biobank.curation.qc import (
    Decision,
    QcMetrics,
    QcRules,
    build_masks,
    compute_metrics,
    efc,
    measure,
    robust_z,
)
from biobank.curation.series import SeriesVolume, load_series_files
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi

Array = npt.NDArray[np.float64]
PHI = make_patient_phi(2, seed=8)
METRICS = ("snr", "snr_dietrich", "cnr", "cjv", "var", "fber", "efc")


def _object() -> Array:
    """A noiseless 16×64×64 ellipsoid with three tissues (400, 800, 1200)."""
    z, y, x = np.mgrid[0:16, 0:64, 0:64].astype(np.float64)
    img = np.zeros((16, 64, 64))
    r = ((x - 32) / 18) ** 2 + ((y - 32) / 22) ** 2 + ((z - 7.5) / 10) ** 2
    img[r <= 1] = 400.0
    img[r <= 0.7] = 800.0
    lesion = ((x - 36) / 5) ** 2 + ((y - 30) / 6) ** 2 + ((z - 7.5) / 5) ** 2
    img[lesion <= 1] = 1200.0
    return img


def _rician(img: Array, sigma: float, seed: int = 0) -> Array:
    rng = np.random.default_rng(seed)
    return np.asarray(
        np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
    )


def _ghost(img: Array, amount: float = 0.25) -> Array:
    """An attenuated copy shifted by half the field of view in the phase (row) direction."""
    return img + amount * np.roll(img, img.shape[1] // 2, axis=1)


def _metrics(img: Array) -> QcMetrics:
    return compute_metrics(img, build_masks(img))


def _get(m: QcMetrics, name: str) -> float:
    value = getattr(m, name)
    assert isinstance(value, float) and math.isfinite(value), name
    return value


def _volume(voxels: Array, modality: str = "MR", photometric: str = "MONOCHROME2") -> SeriesVolume:
    return SeriesVolume(
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        modality=modality,
        headers=Dataset(),
        voxels=voxels.astype(np.float32),
        spacing=(3.0, 1.0, 1.0),
        photometric=photometric,
    )


@pytest.fixture(scope="module")
def clean() -> QcMetrics:
    return _metrics(_rician(_object(), 10.0))


def test_noise_lowers_snr_cnr_fber_and_raises_cjv_efc(clean: QcMetrics) -> None:
    noisy = _metrics(_rician(_object(), 40.0))
    for name in ("snr", "snr_dietrich", "cnr", "fber"):
        assert _get(noisy, name) < _get(clean, name), name
    for name in ("cjv", "efc"):
        assert _get(noisy, name) > _get(clean, name), name


def test_ghosting_lowers_fber(clean: QcMetrics) -> None:
    ghosted = _metrics(_rician(_ghost(_object()), 10.0))
    assert _get(ghosted, "fber") < 0.8 * _get(clean, "fber")
    assert _get(ghosted, "snr_dietrich") < _get(clean, "snr_dietrich")


def test_blur_raises_cjv_and_efc_and_lowers_var(clean: QcMetrics) -> None:
    blurred = _metrics(_rician(ndimage.gaussian_filter(_object(), (0, 2, 2)), 10.0))
    assert _get(blurred, "cjv") > _get(clean, "cjv")
    assert _get(blurred, "efc") > _get(clean, "efc")
    assert _get(blurred, "var") < _get(clean, "var")


def test_dietrich_snr_follows_the_noise_level() -> None:
    img = _object()
    low, high = _metrics(_rician(img, 10.0)), _metrics(_rician(img, 20.0))
    ratio = _get(low, "snr_dietrich") / _get(high, "snr_dietrich")
    assert 1.6 < ratio < 2.4  # σ_bg doubles, the tissue median barely moves


def test_efc_is_one_for_a_uniform_image_and_lower_when_focused() -> None:
    assert efc(np.ones((4, 8, 8))) == pytest.approx(1.0)
    spot = np.zeros((4, 8, 8))
    spot[2, 4, 4] = 100.0
    assert efc(spot) == pytest.approx(0.0, abs=1e-9)
    assert efc(np.zeros((4, 8, 8))) is None


def test_masks_and_report_of_a_synthetic_mr(tmp_path: Path) -> None:
    for n, ds in enumerate(make_mr_series(PHI, 12, rows=48, cols=48)):
        ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
    (volume,) = load_series_files(sorted(tmp_path.iterdir()))
    report = measure(volume)
    assert report.decision is Decision.APPROVE, report.reasons
    data = report.to_json()
    assert data["series_instance_uid"] == volume.series_instance_uid
    for name in METRICS:
        assert isinstance(data[name], float), name
    masks = data["masks"]
    assert masks["foreground"] > 0 and masks["background"] > 0
    assert masks["tissue_low"] + masks["tissue_mid"] + masks["tissue_high"] == masks["foreground"]
    assert masks["foreground"] + masks["background"] <= 12 * 48 * 48
    assert data["decision"] == "approve" and data["reasons"] == []
    assert "ct" not in data


def _ct(tmp_path: Path, **changes: str) -> SeriesVolume:
    series = make_ct_series(PHI, 8, rows=48, cols=48)
    for n, ds in enumerate(series):
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
    (volume,) = load_series_files(sorted(tmp_path.iterdir()))
    return volume


def test_ct_checks_on_a_good_ct(tmp_path: Path) -> None:
    report = measure(_ct(tmp_path))
    assert report.ct is not None
    assert report.ct.air_hu is not None and abs(report.ct.air_hu + 1000.0) < 20.0
    assert report.ct.air_noise_hu is not None and 5.0 < report.ct.air_noise_hu < 20.0
    assert report.ct.soft_tissue_hu is not None and abs(report.ct.soft_tissue_hu - 40.0) < 20
    assert report.ct.out_of_range == 0
    assert report.metrics.snr_dietrich is None  # no Rayleigh correction for CT
    assert report.decision is Decision.APPROVE, report.reasons
    assert "ct" in report.to_json()


def test_a_ct_with_a_wrong_rescale_is_excluded(tmp_path: Path) -> None:
    report = measure(_ct(tmp_path, RescaleIntercept="0"))
    assert report.decision is Decision.EXCLUDE
    assert any(r.startswith("air_hu") for r in report.reasons)


def test_a_ct_with_a_wrong_slope_is_out_of_range(tmp_path: Path) -> None:
    report = measure(_ct(tmp_path, RescaleSlope="4"))
    assert report.decision is Decision.EXCLUDE
    assert any(r.startswith("hu_out_of_range") for r in report.reasons)


def test_ct_padding_outside_the_circle_is_not_out_of_range() -> None:
    hu = np.full((8, 48, 48), -1000.0)
    rng = np.random.default_rng(1)
    hu += rng.normal(0, 10, hu.shape)
    z, y, x = np.mgrid[0:8, 0:48, 0:48]
    hu[((x - 24) / 12) ** 2 + ((y - 24) / 15) ** 2 <= 1] = 40.0 + rng.normal(0, 10)
    hu[(x - 24) ** 2 + (y - 24) ** 2 > 23**2] = -3024.0
    report = measure(_volume(hu, "CT"))
    assert report.ct is not None and report.ct.padding > 0 and report.ct.out_of_range == 0
    assert not any(r.startswith("hu_out_of_range") for r in report.reasons)


def test_hard_failures_exclude() -> None:
    blank = measure(_volume(np.zeros((8, 32, 32))))
    assert blank.decision is Decision.EXCLUDE
    assert any(r.startswith("empty_foreground") for r in blank.reasons)
    thin = measure(_volume(_rician(_object(), 10.0)[:2]))
    assert any(r.startswith("too_few_slices") for r in thin.reasons)
    broken = _rician(_object(), 10.0)
    broken[3, 5, 5] = np.nan
    report = measure(_volume(broken))
    assert report.decision is Decision.EXCLUDE
    assert any(r.startswith("non_finite") for r in report.reasons)


def test_soft_failures_quarantine() -> None:
    noisy = measure(_volume(_rician(_object(), 150.0)))
    assert noisy.decision is Decision.QUARANTINE, noisy.reasons
    assert any(r.startswith("low_snr_dietrich") for r in noisy.reasons)
    strict = measure(_volume(_rician(_object(), 10.0)), QcRules(max_efc=0.1))
    assert strict.decision is Decision.QUARANTINE
    assert any(r.startswith("high_efc") for r in strict.reasons)


def test_zero_background_is_unusable_not_a_number() -> None:
    report = measure(_volume(_object()))
    assert report.metrics.fber is None and report.metrics.snr_dietrich is None
    assert not report.background_usable
    assert report.decision is Decision.QUARANTINE
    assert report.to_json()["fber"] is None


def test_robust_z() -> None:
    z = robust_z([1.0, 2.0, 3.0, 4.0, 100.0])
    assert z[2] == pytest.approx(0.0)
    assert z[1] == pytest.approx(-1.0 / 1.4826)
    assert z[4] > 3.0
    assert robust_z([5.0, 5.0, 5.0]) == [0.0, 0.0, 0.0]
    mostly_same = robust_z([1.0, 1.0, 1.0, 1.0, 2.0])
    assert mostly_same[0] == 0.0 < mostly_same[4] and math.isfinite(mostly_same[4])
    with_nan = robust_z([1.0, float("nan"), 3.0])
    assert math.isnan(with_nan[1]) and with_nan[0] == pytest.approx(-with_nan[2])
    assert robust_z([]) == []


def test_thick_slices_keep_the_background_gap_in_plane() -> None:
    voxels = _rician(_object(), 10.0)
    thin = measure(_volume(voxels))
    thick = measure(
        SeriesVolume("1.2.3", "1.2", "MR", Dataset(), voxels.astype(np.float32), (10.0, 1.0, 1.0))
    )
    assert thick.masks.background > thin.masks.background
    assert thick.masks.foreground == pytest.approx(thin.masks.foreground, rel=0.05)
