"""Tests of the synthetic DICOM generator with planted PHI."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset
from pydicom.uid import ExplicitVRLittleEndian

from biobank.dicom.synthetic import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    UID_ROOT,
    PlantedPHI,
    make_ct_series,
    make_mr_series,
    make_patient_phi,
    write_corpus,
)

DCIODVFY = Path("/usr/bin/dciodvfy")


def _bytes(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _own_values(phi: PlantedPHI, modality: str) -> list[str]:
    """Values that every instance of ``modality`` must contain (the other study's excluded)."""
    other = phi.mr if modality == "CT" else phi.ct
    own = phi.ct if modality == "CT" else phi.mr
    other_values = set(vars(other).values()) - set(vars(own).values())
    return [v for v in phi.values() if v not in other_values]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PlantedPHI]]:
    root = tmp_path_factory.mktemp("corpus")
    summary = write_corpus(root, patients=3, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32)
    return root, list(summary.patients)


class TestPatientPHI:
    def test_deterministic(self) -> None:
        assert make_patient_phi(3, seed=7) == make_patient_phi(3, seed=7)
        assert make_patient_phi(3, seed=7) != make_patient_phi(3, seed=8)

    def test_mrns_unique_and_numeric(self) -> None:
        mrns = [make_patient_phi(i).patient_id for i in range(500)]
        assert len(set(mrns)) == 500
        assert all(m.isdigit() and len(m) == 8 and m[0] != "0" for m in mrns)

    def test_values_cover_every_kind_and_are_latin1(self) -> None:
        phis = [make_patient_phi(i) for i in range(20)]
        for phi in phis:
            values = phi.values()
            assert len(values) == len(set(values)) > 30
            for value in values:
                value.encode("latin-1")  # the corpus is ISO_IR 100
                assert len(value) >= 4, value
            assert phi.patient_name.startswith(f"{phi.family_name}^{phi.given_name}^")
            assert phi.family_name in phi.ct.study_description
            assert phi.given_name in phi.patient_comments
            assert phi.ct.study_id.startswith(phi.ct.study_date)
            assert phi.ct.acquisition_datetime.endswith("+0100")
        assert any(any(ord(c) > 127 for c in p.patient_name) for p in phis)
        assert any(all(ord(c) < 128 for c in p.patient_name) for p in phis)

    def test_negative_index_is_refused(self) -> None:
        with pytest.raises(ValueError, match="must be >= 0"):
            make_patient_phi(-1)


class TestSeries:
    def test_ct_attributes(self) -> None:
        phi = make_patient_phi(1)
        series = make_ct_series(phi, n_slices=4, rows=64, cols=48)
        assert len(series) == 4
        ds = series[0]
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CT_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            12,
            11,
            1,
        )
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert (ds.Rows, ds.Columns) == (64, 48)
        pixels = ds.pixel_array
        assert pixels.dtype == np.int16 and pixels.shape == (64, 48)
        assert pixels.min() >= 0 and pixels.max() < 2048
        assert pixels.std() > 100  # a phantom, not a flat image
        assert ds.private_block(0x0009, "GEMS_IDEN_01")[0x2A].value == phi.institution_name
        assert ds.private_block(0x0033, "ACME RIS")[0x02].value == phi.patient_id

    def test_mr_attributes_and_csa(self) -> None:
        phi = make_patient_phi(2)
        ds = make_mr_series(phi, n_slices=2, rows=32, cols=32)[1]
        assert ds.SOPClassUID == MR_IMAGE_STORAGE
        assert (ds.BitsStored, ds.PixelRepresentation) == (12, 0)
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.max() < 4096
        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER")
        for offset in (0x10, 0x20):
            blob = csa[offset].value
            assert blob.startswith(b"SV10") and len(blob) % 2 == 0
            assert phi.patient_name.encode("latin-1") in blob

    def test_geometry_and_uids(self) -> None:
        phi = make_patient_phi(4)
        series = make_ct_series(phi, n_slices=3, rows=32, cols=32)
        positions = [tuple(float(v) for v in ds.ImagePositionPatient) for ds in series]
        assert len({p[2] for p in positions}) == 3
        assert {ds.SeriesInstanceUID for ds in series} == {series[0].SeriesInstanceUID}
        assert len({ds.SOPInstanceUID for ds in series}) == 3
        for ds in series:
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
                assert uid.startswith(f"{UID_ROOT}.{phi.patient_id}.") and len(uid) <= 64
            assert ds.FrameOfReferenceUID.startswith(UID_ROOT)
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]

    def test_instances_are_independent(self) -> None:
        series = make_ct_series(make_patient_phi(0), n_slices=2, rows=16, cols=16)
        series[0].ImageType[0] = "DERIVED"
        series[0].OtherPatientIDsSequence[0].PatientID = "X"
        series[0].PatientName = "Y"
        assert series[1].ImageType[0] == "ORIGINAL"
        assert series[1].OtherPatientIDsSequence[0].PatientID != "X"
        assert series[1].PatientName != "Y"

    def test_same_seed_same_bytes(self) -> None:
        phi = make_patient_phi(5, seed=3)
        first = [_bytes(ds) for ds in make_mr_series(phi, n_slices=2, rows=32, cols=32, seed=9)]
        again = [_bytes(ds) for ds in make_mr_series(phi, n_slices=2, rows=32, cols=32, seed=9)]
        other = [_bytes(ds) for ds in make_mr_series(phi, n_slices=2, rows=32, cols=32, seed=1)]
        assert first == again
        assert first != other


class TestCorpus:
    def test_layout_and_summary(
        self, corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path
    ) -> None:
        root, phis = corpus
        files = sorted(root.rglob("*.dcm"))
        assert len(files) == 3 * (3 + 2)
        assert [p.index for p in phis] == [0, 1, 2]
        summary = write_corpus(tmp_path, patients=1, ct_slices=1, mr_slices=0, ct_size=16)
        assert summary.files == 1 and summary.paths[0].stat().st_size == summary.total_bytes
        assert summary.paths[0].relative_to(tmp_path).as_posix() == "patient0000/ct/0001.dcm"

    def test_same_seed_identical_files(
        self, corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path
    ) -> None:
        root, _ = corpus
        write_corpus(tmp_path, patients=3, ct_slices=3, mr_slices=2, ct_size=64, mr_size=32)
        for path in root.rglob("*.dcm"):
            assert (tmp_path / path.relative_to(root)).read_bytes() == path.read_bytes()

    def test_fast_writer_matches_dcmwrite(self, corpus: tuple[Path, list[PlantedPHI]]) -> None:
        root, phis = corpus
        for i, ds in enumerate(make_ct_series(phis[1], n_slices=3, rows=64, cols=64)):
            assert _bytes(ds) == (root / f"patient0001/ct/{i + 1:04d}.dcm").read_bytes()
        for i, ds in enumerate(make_mr_series(phis[1], n_slices=2, rows=32, cols=32)):
            assert _bytes(ds) == (root / f"patient0001/mr/{i + 1:04d}.dcm").read_bytes()

    def test_every_planted_value_is_in_every_file(
        self, corpus: tuple[Path, list[PlantedPHI]]
    ) -> None:
        root, phis = corpus
        for phi in phis:
            for modality in ("CT", "MR"):
                folder = root / f"patient{phi.index:04d}" / modality.lower()
                for path in folder.iterdir():
                    data = path.read_bytes()
                    missing = [
                        v for v in _own_values(phi, modality) if v.encode("latin-1") not in data
                    ]
                    assert missing == [], path

    def test_files_read_back(self, corpus: tuple[Path, list[PlantedPHI]]) -> None:
        root, phis = corpus
        ds = pydicom.dcmread(root / "patient0002/mr/0002.dcm")
        assert ds.PatientName == phis[2].patient_name
        assert ds.OtherPatientIDsSequence[1].PatientID == phis[2].other_patient_ids[1]
        assert ds.RequestAttributesSequence[0].RequestedProcedureID == (
            phis[2].mr.requested_procedure_id
        )
        item = ds.private_block(0x0033, "ACME RIS")[0x10].value[0]
        assert item.private_block(0x0033, "ACME RIS")[0x12].value == phis[2].patient_id


@pytest.mark.peer
@pytest.mark.skipif(not DCIODVFY.exists(), reason="dicom3tools dciodvfy is not installed")
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_dciodvfy_reports_no_errors(modality: str, tmp_path: Path) -> None:
    phi = make_patient_phi(6)
    make = make_ct_series if modality == "CT" else make_mr_series
    ds = make(phi, n_slices=2, rows=64, cols=64)[1]
    path = tmp_path / "instance.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    run = subprocess.run(
        [shutil.which("dciodvfy") or str(DCIODVFY), str(path)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    report = (run.stdout + run.stderr).decode("latin-1")
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report
    assert ("CTImage" if modality == "CT" else "MRImage") in report
