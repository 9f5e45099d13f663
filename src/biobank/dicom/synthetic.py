"""Deterministic synthetic CT and MR DICOM with planted PHI.

The generator makes realistic instances of CT Image Storage and MR Image Storage (explicit VR
little endian, 16-bit pixels, full geometry, a cheap ellipse phantom with noise) and plants
identifying values everywhere a de-identifier must look: the Patient, Study and Equipment
attributes, free text, sequences (Other Patient IDs, Request Attributes, Referenced Patient and
Study), dates and times with timezone offsets, UIDs with the MRN embedded in them, a private
``ACME RIS`` block with a private sequence, Siemens-style CSA blobs (MR) and GE-style private
groups (CT).

Every value comes from ``(index, seed)``: the same arguments give the same bytes. The data are
fake; names, IDs, addresses and institutions are made up. The corpus is used by the benchmark,
the tests and the demo.

The generator is split by concept: :mod:`biobank.dicom._synthetic_identity` draws the planted
values, :mod:`biobank.dicom._synthetic_pixels` paints the phantoms and
:mod:`biobank.dicom._synthetic_instances` builds and encodes the instances. This module is the
public surface.

Examples
--------
>>> phi = make_patient_phi(0)
>>> series = make_ct_series(phi, n_slices=2, rows=64, cols=64)
>>> str(series[0].PatientName) == phi.patient_name
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import FileDataset

from biobank.dicom._synthetic_identity import PlantedPHI, PlantedStudy, make_patient_phi
from biobank.dicom._synthetic_instances import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    UID_ROOT,
    SeriesEncoder,
    iter_ct,
    iter_mr,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`write_corpus` wrote.

    Attributes
    ----------
    root : Path
        The output folder.
    files : int
        Number of DICOM files written.
    total_bytes : int
        Their total size in bytes.
    patients : tuple of PlantedPHI
        The planted values, one entry per patient, in index order.
    paths : tuple of Path
        Every file written, in writing order.
    """

    root: Path
    files: int
    total_bytes: int
    patients: tuple[PlantedPHI, ...]
    paths: tuple[Path, ...]


def _check_size(n_slices: int, rows: int, cols: int) -> None:
    if n_slices < 1 or rows < 8 or cols < 8:
        raise ValueError("synthetic series need n_slices >= 1 and rows, cols >= 8")


def make_ct_series(
    phi: PlantedPHI, n_slices: int, rows: int = 512, cols: int = 512, seed: int = 0
) -> list[FileDataset]:
    """Make a CT Image Storage series of a thorax phantom for ``phi``.

    Parameters
    ----------
    phi : PlantedPHI
        The patient; its values are planted in every instance.
    n_slices : int
        Number of axial slices (2.5 mm apart).
    rows, cols : int
        Image size.
    seed : int
        Seed of the pixel noise.

    Returns
    -------
    list of FileDataset
        Independent datasets with file meta (explicit VR little endian), 16 bits allocated,
        12 bits stored, signed, with Rescale Slope/Intercept to HU.
    """
    _check_size(n_slices, rows, cols)
    return list(iter_ct(phi, n_slices, rows, cols, seed, False))


def make_mr_series(
    phi: PlantedPHI, n_slices: int, rows: int = 256, cols: int = 256, seed: int = 0
) -> list[FileDataset]:
    """Make an MR Image Storage series of a head phantom for ``phi``.

    Parameters
    ----------
    phi : PlantedPHI
        The patient; its values are planted in every instance, including the CSA blobs.
    n_slices : int
        Number of axial slices (3 mm apart).
    rows, cols : int
        Image size.
    seed : int
        Seed of the pixel noise.

    Returns
    -------
    list of FileDataset
        Independent datasets with file meta (explicit VR little endian), 16 bits allocated,
        12 bits stored, unsigned.
    """
    _check_size(n_slices, rows, cols)
    return list(iter_mr(phi, n_slices, rows, cols, seed, False))


def write_corpus(
    out_dir: Path,
    patients: int = 20,
    ct_slices: int = 50,
    mr_slices: int = 50,
    ct_size: int = 512,
    mr_size: int = 256,
    seed: int = 0,
) -> CorpusSummary:
    """Write a corpus of ``patients`` × (one CT and one MR series) to ``out_dir``.

    Files are named ``patientNNNN/ct/NNNN.dcm`` and ``patientNNNN/mr/NNNN.dcm`` (no PHI in
    paths). Instances are generated and written one at a time, so memory stays small.

    Parameters
    ----------
    out_dir : Path
        Output folder, created if needed.
    patients : int
        Number of patients.
    ct_slices, mr_slices : int
        Slices per CT and per MR series; 0 leaves that series out.
    ct_size, mr_size : int
        Rows and columns of the CT and MR images.
    seed : int
        Seed of the planted values and of the pixel noise.

    Returns
    -------
    CorpusSummary
        The files written and the values planted in them.
    """
    if patients < 0 or ct_slices < 0 or mr_slices < 0:
        raise ValueError("write_corpus: counts must be >= 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    phis: list[PlantedPHI] = []
    paths: list[Path] = []
    total = 0
    for index in range(patients):
        phi = make_patient_phi(index, seed)
        phis.append(phi)
        for name, count, iterate, size in (
            ("ct", ct_slices, iter_ct, ct_size),
            ("mr", mr_slices, iter_mr, mr_size),
        ):
            if count == 0:
                continue
            _check_size(count, size, size)
            folder = out_dir / f"patient{index:04d}" / name
            folder.mkdir(parents=True, exist_ok=True)
            encoder: SeriesEncoder | None = None
            for i, ds in enumerate(iterate(phi, count, size, size, seed, True)):
                # Shared mode: every slice's dataset is the series template, changed in place.
                encoder = encoder or SeriesEncoder(ds)
                path = folder / f"{i + 1:04d}.dcm"
                data = encoder.encode(ds)
                path.write_bytes(data)
                total += len(data)
                paths.append(path)
    logger.info("wrote synthetic corpus: %d files, %d bytes", len(paths), total)
    return CorpusSummary(
        root=out_dir,
        files=len(paths),
        total_bytes=total,
        patients=tuple(phis),
        paths=tuple(paths),
    )


__all__ = [
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
    "UID_ROOT",
    "CorpusSummary",
    "PlantedPHI",
    "PlantedStudy",
    "make_ct_series",
    "make_mr_series",
    "make_patient_phi",
    "write_corpus",
]
