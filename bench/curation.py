"""Curation benchmark: MR series classification, image QC, and the curation jobs on 2 executors.

    python bench/curation.py [--series 3000] [--qc-series 5] [--cohort-patients 100]
                             [--only classify,qc,cohort] [--runs 1] [--workdir DIR] [--json F]

Three measurements (issue 6, item 8):

- **classify**: ``biobank.curation.classify.classify_series`` on ``--series`` synthetic MR
  series of 20–30 headers each (no pixels), a realistic brain-protocol mix from Siemens, GE
  and Philips (localizers, T1 3D, T2, FLAIR, DWI with private b-values, ADC, post-contrast
  T1). Timed twice per series: on the headers as built in memory, and from their encoded
  bytes (``pydicom.dcmread(stop_before_pixels=True)`` + classify, as the job does).
- **qc**: ``biobank.curation.qc.measure`` on ``--qc-series`` MR series of 256×256×30
  (``make_mr_series`` written to files, read by ``load_series_files``); load and measure
  timed separately, medians.
- **cohort**: a site node (``init_node``) ingests a synthetic corpus (``write_corpus``,
  ``--cohort-patients`` × a CT and an MR series, so 200 series by default), which queues a
  ``classify-series`` and a ``qc-series`` job per series; ``JobRunner.run_pending`` is timed
  on ``LocalExecutor`` (2 processes) and, after re-queueing every job, on a Dask
  ``LocalCluster`` (2 worker processes, 1 thread each) through ``DaskExecutor``.

Prints a markdown table and writes ``curation-results.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))
sys.path.insert(0, str(BENCH_DIR))
from peers import terminate_as_exit  # noqa: E402

SUBJECTS = ("classify", "qc", "cohort")
JOB_KINDS = ("classify-series", "qc-series")
GENERATOR_VERSION = 1  # bump when the generated corpus changes
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"  # a bench-only root (deterministic UIDs)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

# Private b-value tags read by biobank.curation.summary: (group, offset, creator, VR).
SIEMENS_B = (0x0019, 0x0C, "SIEMENS MR HEADER", "IS")
GE_B = (0x0043, 0x39, "GEMS_PARM_01", "IS")
PHILIPS_B = (0x2001, 0x03, "Philips Imaging DD 001", "FL")
GE_PULSE = (0x0019, 0x9E, "GEMS_ACQU_01", "LO")


class Failed(RuntimeError):
    """A measurement could not be made (reported in the table, the others run)."""


# --- synthetic MR headers (after tests/curation/mrheaders.py) -----------------------------


@dataclass(frozen=True)
class Protocol:
    """One series kind of a vendor's brain protocol and the label it should get."""

    vendor: str
    name: str
    expected: str
    attrs: dict[str, Any]
    orientation: tuple[float, ...] = AXIAL
    b_values: tuple[float, ...] = ()  # cycled over the slices (positions repeat per b)
    b_tag: tuple[int, int, str, str] | None = None
    three_plane: bool = False


def _protocols() -> list[Protocol]:
    siemens = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "Prisma"}
    ge = {"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturerModelName": "SIGNA Premier"}
    philips = {"Manufacturer": "Philips Medical Systems", "ManufacturerModelName": "Ingenia"}
    gad = {"ContrastBolusAgent": "Gadovist 1.0"}
    adc_type = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"]
    return [
        # Siemens
        Protocol(
            "Siemens",
            "localizer",
            "localizer",
            {
                **siemens,
                "ScanningSequence": "GR",
                "SequenceVariant": ["SP", "OSP"],
                "SequenceName": "*fl2d1",
                "RepetitionTime": 8.6,
                "EchoTime": 4.0,
                "FlipAngle": 20,
                "SeriesDescription": "AAHead_Scout",
            },
            three_plane=True,
        ),
        Protocol(
            "Siemens",
            "t1_mprage_sag",
            "T1W",
            {
                **siemens,
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
            orientation=SAGITTAL,
        ),
        Protocol(
            "Siemens",
            "t2_tse_tra",
            "T2W",
            {
                **siemens,
                "ScanningSequence": "SE",
                "SequenceVariant": ["SK", "SP", "OSP"],
                "SequenceName": "*tse2d1_15",
                "RepetitionTime": 5000,
                "EchoTime": 98,
                "FlipAngle": 150,
                "SeriesDescription": "t2_tse_tra",
            },
        ),
        Protocol(
            "Siemens",
            "t2_tirm_flair",
            "FLAIR",
            {
                **siemens,
                "ScanningSequence": ["SE", "IR"],
                "SequenceVariant": ["SK", "SP", "MP"],
                "SequenceName": "*tir2d1_16",
                "RepetitionTime": 9000,
                "EchoTime": 81,
                "InversionTime": 2500,
                "SeriesDescription": "t2_tirm_tra_dark-fluid",
            },
        ),
        Protocol(
            "Siemens",
            "ep2d_diff",
            "DWI",
            {
                **siemens,
                "ScanningSequence": "EP",
                "SequenceVariant": ["SK", "SP"],
                "SequenceName": "*ep_b1000t",
                "RepetitionTime": 4200,
                "EchoTime": 64,
                "SeriesDescription": "ep2d_diff_b0_1000_tra",
            },
            b_values=(0.0, 1000.0),
            b_tag=SIEMENS_B,
        ),
        Protocol(
            "Siemens",
            "ep2d_diff_ADC",
            "ADC",
            {
                **siemens,
                "ImageType": adc_type,
                "ScanningSequence": "EP",
                "RepetitionTime": 4200,
                "EchoTime": 64,
                "SeriesDescription": "ep2d_diff_b0_1000_tra_ADC",
            },
        ),
        Protocol(
            "Siemens",
            "t1_se_tra_post",
            "T1W",
            {
                **siemens,
                **gad,
                "ScanningSequence": "SE",
                "SequenceVariant": ["SK", "SP"],
                "SequenceName": "*tse2d1_3",
                "RepetitionTime": 550,
                "EchoTime": 11,
                "SeriesDescription": "t1_tse_tra_KM",
            },
        ),
        # GE
        Protocol(
            "GE",
            "3-plane loc",
            "localizer",
            {
                **ge,
                "ScanningSequence": "GR",
                "SequenceVariant": "SS",
                "RepetitionTime": 5.4,
                "EchoTime": 1.6,
                "SeriesDescription": "3-plane loc",
            },
            three_plane=True,
        ),
        Protocol(
            "GE",
            "BRAVO",
            "T1W",
            {
                **ge,
                "ScanningSequence": "GR",
                "SequenceVariant": ["SS", "SK"],
                "ScanOptions": ["FAST_GEMS", "IR_GEMS"],
                "MRAcquisitionType": "3D",
                "RepetitionTime": 8.2,
                "EchoTime": 3.2,
                "InversionTime": 450,
                "FlipAngle": 12,
                "SeriesDescription": "Sag T1 3D BRAVO",
            },
            orientation=SAGITTAL,
        ),
        Protocol(
            "GE",
            "T2 FSE",
            "T2W",
            {
                **ge,
                "ScanningSequence": "SE",
                "ScanOptions": ["FAST_GEMS", "FC"],
                "RepetitionTime": 5200,
                "EchoTime": 102,
                "SeriesDescription": "Ax T2 FSE",
            },
        ),
        Protocol(
            "GE",
            "T2 FLAIR",
            "FLAIR",
            {
                **ge,
                "ScanningSequence": ["SE", "IR"],
                "ScanOptions": ["IR_GEMS", "FAST_GEMS"],
                "RepetitionTime": 9500,
                "EchoTime": 120,
                "InversionTime": 2300,
                "SeriesDescription": "Ax T2 FLAIR",
            },
        ),
        Protocol(
            "GE",
            "DWI",
            "DWI",
            {
                **ge,
                "ScanningSequence": ["EP", "SE"],
                "RepetitionTime": 5000,
                "EchoTime": 75,
                "SeriesDescription": "Ax DWI b1000",
            },
            b_values=(0.0, 1000001000.0),
            b_tag=GE_B,
        ),
        Protocol(
            "GE",
            "T1 post",
            "T1W",
            {
                **ge,
                **gad,
                "ScanningSequence": "SE",
                "ScanOptions": ["FAST_GEMS"],
                "RepetitionTime": 600,
                "EchoTime": 12,
                "SeriesDescription": "Ax T1 SE +C",
            },
        ),
        # Philips
        Protocol(
            "Philips",
            "Survey",
            "localizer",
            {
                **philips,
                "ScanningSequence": "GR",
                "RepetitionTime": 11,
                "EchoTime": 4.6,
                "SeriesDescription": "Survey",
            },
            three_plane=True,
        ),
        Protocol(
            "Philips",
            "T1W_3D_TFE",
            "T1W",
            {
                **philips,
                "ScanningSequence": "GR",
                "SequenceVariant": ["SK", "MP"],
                "MRAcquisitionType": "3D",
                "RepetitionTime": 8.1,
                "EchoTime": 3.7,
                "InversionTime": 1000,
                "FlipAngle": 8,
                "SeriesDescription": "T1W_3D_TFE sag",
            },
            orientation=SAGITTAL,
        ),
        Protocol(
            "Philips",
            "T2W_TSE",
            "T2W",
            {
                **philips,
                "ScanningSequence": "SE",
                "SequenceVariant": "SK",
                "RepetitionTime": 4000,
                "EchoTime": 98,
                "SeriesDescription": "T2W_TSE tra",
            },
        ),
        Protocol(
            "Philips",
            "FLAIR",
            "FLAIR",
            {
                **philips,
                "ScanningSequence": ["SE", "IR"],
                "RepetitionTime": 11000,
                "EchoTime": 125,
                "InversionTime": 2800,
                "SeriesDescription": "T2W_FLAIR tra",
            },
        ),
        Protocol(
            "Philips",
            "DWI",
            "DWI",
            {
                **philips,
                "ScanningSequence": "SE",
                "RepetitionTime": 3000,
                "EchoTime": 70,
                "SeriesDescription": "DWI_b800",
            },
            b_values=(0.0, 800.0),
            b_tag=PHILIPS_B,
        ),
        Protocol(
            "Philips",
            "ADC",
            "ADC",
            {
                **philips,
                "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
                "SeriesDescription": "dADC",
            },
        ),
        Protocol(
            "Philips",
            "T1W_SE post",
            "T1W",
            {
                **philips,
                **gad,
                "ScanningSequence": "SE",
                "RepetitionTime": 500,
                "EchoTime": 10,
                "SeriesDescription": "T1W_SE tra +GD",
            },
            orientation=CORONAL,
        ),
    ]


def _uid(*parts: object) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return f"{UID_ROOT}.{int.from_bytes(digest, 'big')}"


def _normal(iop: tuple[float, ...]) -> tuple[float, float, float]:
    r, c = iop[:3], iop[3:]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def make_series(protocol: Protocol, index: int, n: int, seed: int) -> list[Any]:
    """``n`` MR headers (no pixel data) of series ``index`` acquired with ``protocol``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    study = _uid(seed, "study", index // 6)  # ~6 series a study
    series = _uid(seed, "series", index)
    rng = random.Random(f"{seed}:{index}")
    thickness = 1.0 if protocol.attrs.get("MRAcquisitionType") == "3D" else 5.0
    repeats = max(1, len(protocol.b_values))
    seconds = 8 * 3600 + rng.randrange(10 * 3600)
    out: list[Any] = []
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MR_STORAGE
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = _uid(seed, "sop", index, i)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240312"
        ds.StudyTime = ds.SeriesTime = "081500"
        ds.AccessionNumber = f"A{index // 6:08d}"
        ds.Modality = "MR"
        ds.StationName = "MRC1"
        ds.StudyDescription = "MRI BRAIN W/WO CONTRAST"
        ds.PatientName = f"P{index // 12:06d}"
        ds.PatientID = f"P{index // 12:06d}"
        ds.PatientSex = "F" if index % 2 else "M"
        ds.BodyPartExamined = "BRAIN"
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = thickness
        ds.SpacingBetweenSlices = thickness
        ds.MagneticFieldStrength = 3
        ds.ImagingFrequency = 123.2
        ds.EchoTrainLength = 1
        ds.PercentSampling = 100
        ds.ProtocolName = protocol.attrs.get("SeriesDescription", protocol.name)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 1 + index % 6
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = i + 1
        ds.FrameOfReferenceUID = _uid(seed, "for", index // 6)
        iop = protocol.orientation
        if protocol.three_plane:
            iop = (AXIAL, CORONAL, SAGITTAL)[i % 3]
        ds.ImageOrientationPatient = list(iop)
        step = (i // 3 if protocol.three_plane else i // repeats) * thickness
        ds.ImagePositionPatient = [round(-100 + step * v, 2) for v in _normal(iop)]
        ds.SliceLocation = round(-100 + step, 2)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 256
        ds.PixelSpacing = [0.9, 0.9]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.WindowCenter, ds.WindowWidth = 600, 1200
        t = seconds + i // repeats
        ds.AcquisitionTime = f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}.{i % 10}00000"
        for key, value in protocol.attrs.items():
            setattr(ds, key, value)
        # A vendor's private blocks, as real headers have (CSA blobs, GE/Philips groups).
        if protocol.vendor == "Siemens":
            csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            csa.add_new(0x08, "CS", "IMAGE NUM 4")
            csa.add_new(0x10, "OB", bytes(rng.getrandbits(8) for _ in range(64)) * 60)
            csa.add_new(0x20, "OB", b"SV10\x04\x03\x02\x01" + b"\x00" * 3000)
        elif protocol.vendor == "GE":
            block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            block.add_new(0x2C, "SS", 1)
            block.add_new(0x30, "SS", 7)
            acq = ds.private_block(GE_PULSE[0], GE_PULSE[2], create=True)
            acq.add_new(GE_PULSE[1], GE_PULSE[3], "epi2" if protocol.b_values else "fse-xl")
        else:
            block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            block.add_new(0x20, "SL", 30)
            block.add_new(0x14, "LO", "MR")
        if protocol.b_tag:
            group, offset, creator, vr = protocol.b_tag
            b = protocol.b_values[i % repeats]
            value: Any = [int(b), 8, 0, 0] if protocol.b_tag is GE_B else b
            ds.private_block(group, creator, create=True).add_new(offset, vr, value)
        out.append(ds)
    return out


def encode(headers: list[Any]) -> list[bytes]:
    """Each header as a DICOM file (explicit VR little endian), without pixel data."""
    out = []
    for ds in headers:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


# --- machine load ---------------------------------------------------------------------------


@dataclass
class Load:
    """CPU seconds of this process tree and of the whole machine over one measurement."""

    wall: float = 0.0
    ours_cpu: float = 0.0
    other_cpu_percent: float = float("nan")


@contextlib.contextmanager
def measure_load() -> Iterator[Load]:
    import psutil

    me = psutil.Process()

    def tree_cpu() -> float:
        total = 0.0
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def machine_busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    load = Load()
    start, ours0, busy0 = time.perf_counter(), tree_cpu(), machine_busy()
    try:
        yield load
    finally:
        load.wall = time.perf_counter() - start
        load.ours_cpu = tree_cpu() - ours0
        other = machine_busy() - busy0 - load.ours_cpu
        cores = os.cpu_count() or 1
        if load.wall > 0:
            load.other_cpu_percent = max(0.0, 100.0 * other / (load.wall * cores))


# --- classification ---------------------------------------------------------------------------


@dataclass
class ClassifyResult:
    status: str = "ok"
    error: str = ""
    series: int = 0
    headers: int = 0
    seconds_in_memory: list[float] = field(default_factory=list)
    seconds_from_bytes: list[float] = field(default_factory=list)
    series_per_second_in_memory: float = float("nan")
    series_per_second_from_bytes: float = float("nan")
    ms_per_series_p50: float = float("nan")
    ms_per_series_p95: float = float("nan")
    bytes_ms_per_series_p50: float = float("nan")
    bytes_ms_per_series_p95: float = float("nan")
    distinct_series: int = 0
    generate_seconds: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    expected_agreement: float = float("nan")
    needs_review: int = 0
    by_protocol_mismatch: dict[str, int] = field(default_factory=dict)
    other_cpu_percent: float = float("nan")


def run_classify(args: argparse.Namespace) -> ClassifyResult:
    import pydicom

    from biobank.curation.classify import classify_series
    from biobank.dicom.io import quiet_pydicom

    quiet_pydicom()
    result = ClassifyResult(series=args.series)
    protocols = _protocols()
    rng = random.Random(args.seed)
    plan = [
        (protocols[rng.randrange(len(protocols))], rng.randint(args.min_headers, args.max_headers))
        for _ in range(args.series)
    ]
    result.headers = sum(n for _, n in plan)
    # Distinct series are generated once (untimed; pydicom's private blocks make building
    # them slow) and classified in turn: series i is distinct series i % distinct.
    distinct = max(1, min(args.distinct_series, args.series))
    t0 = time.perf_counter()
    print(f"  generating {distinct:,} distinct series ...", file=sys.stderr)
    pool: list[tuple[list[Any], list[bytes]]] = []
    for index in range(distinct):
        protocol, n = plan[index]
        headers = make_series(protocol, index, n, args.seed)
        pool.append((headers, encode(headers)))
    result.generate_seconds = time.perf_counter() - t0
    result.distinct_series = distinct
    plan = [(plan[i % distinct][0], len(pool[i % distinct][0])) for i in range(args.series)]
    result.headers = sum(n for _, n in plan)
    per_series_ms: list[float] = []
    per_series_bytes_ms: list[float] = []
    for run in range(args.runs):
        in_memory = from_bytes = 0.0
        labels: Counter[str] = Counter()
        agree = review = 0
        mismatch: Counter[str] = Counter()
        next_report = time.perf_counter() + 30.0
        with measure_load() as load:
            for index, (protocol, _) in enumerate(plan):
                headers, blobs = pool[index % distinct]
                if time.perf_counter() >= next_report:
                    print(f"  classify: {index:,}/{args.series:,} series", file=sys.stderr)
                    next_report = time.perf_counter() + 30.0
                t1 = time.perf_counter()
                c = classify_series(headers)
                t2 = time.perf_counter()
                parsed = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in blobs]
                c2 = classify_series(parsed)
                t3 = time.perf_counter()
                in_memory += t2 - t1
                from_bytes += t3 - t2
                if run == 0:
                    per_series_ms.append((t2 - t1) * 1000.0)
                    per_series_bytes_ms.append((t3 - t2) * 1000.0)
                if c2.label != c.label:
                    raise Failed(f"{protocol.name}: {c.label} in memory, {c2.label} from bytes")
                labels[str(c.label)] += 1
                review += bool(c.needs_review)
                if str(c.label) == protocol.expected:
                    agree += 1
                else:
                    mismatch[f"{protocol.vendor} {protocol.name} → {c.label}"] += 1
        result.seconds_in_memory.append(in_memory)
        result.seconds_from_bytes.append(from_bytes)
        result.labels = dict(sorted(labels.items()))
        result.expected_agreement = agree / args.series
        result.needs_review = review
        result.by_protocol_mismatch = dict(mismatch)
        result.other_cpu_percent = load.other_cpu_percent
        print(
            f"  classify run {run + 1}: {args.series / in_memory:,.0f} series/s in memory, "
            f"{args.series / from_bytes:,.0f} series/s from bytes",
            file=sys.stderr,
        )
    result.series_per_second_in_memory = args.series / statistics.median(result.seconds_in_memory)
    result.series_per_second_from_bytes = args.series / statistics.median(result.seconds_from_bytes)
    result.ms_per_series_p50 = _percentile(per_series_ms, 0.50)
    result.ms_per_series_p95 = _percentile(per_series_ms, 0.95)
    result.bytes_ms_per_series_p50 = _percentile(per_series_bytes_ms, 0.50)
    result.bytes_ms_per_series_p95 = _percentile(per_series_bytes_ms, 0.95)
    return result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --- QC ---------------------------------------------------------------------------------------


@dataclass
class QcResult:
    status: str = "ok"
    error: str = ""
    series: int = 0
    shape: tuple[int, int, int] = (0, 0, 0)
    load_seconds: list[float] = field(default_factory=list)
    measure_seconds: list[float] = field(default_factory=list)
    load_median: float = float("nan")
    measure_median: float = float("nan")
    measure_max: float = float("nan")
    decisions: dict[str, int] = field(default_factory=dict)
    other_cpu_percent: float = float("nan")


def run_qc(args: argparse.Namespace, workdir: Path) -> QcResult:
    from biobank.curation.qc import measure
    from biobank.curation.series import load_series_files
    from biobank.dicom.io import quiet_pydicom
    from biobank.dicom.synthetic import make_mr_series, make_patient_phi

    quiet_pydicom()
    result = QcResult(series=args.qc_series)
    folder = workdir / f"qc-mr-{args.qc_slices}x{args.qc_size}-g{GENERATOR_VERSION}"
    series_paths: list[list[Path]] = []
    for s in range(args.qc_series):
        sub = folder / f"series{s:03d}"
        marker = sub / "complete"
        paths = [sub / f"{i + 1:04d}.dcm" for i in range(args.qc_slices)]
        if not marker.exists():
            sub.mkdir(parents=True, exist_ok=True)
            datasets = make_mr_series(
                make_patient_phi(s, args.seed), args.qc_slices, args.qc_size, args.qc_size, seed=s
            )
            for path, ds in zip(paths, datasets, strict=True):
                ds.save_as(path, enforce_file_format=True)
            marker.touch()
        series_paths.append(paths)
    decisions: Counter[str] = Counter()
    with measure_load() as load:
        for _ in range(args.runs):
            for paths in series_paths:
                for path in paths:  # warm page cache: load time is decoding, not the disk
                    path.read_bytes()
                t0 = time.perf_counter()
                volumes = load_series_files(paths)
                t1 = time.perf_counter()
                report = measure(volumes[0])
                t2 = time.perf_counter()
                result.shape = volumes[0].shape
                result.load_seconds.append(t1 - t0)
                result.measure_seconds.append(t2 - t1)
                decisions[report.decision.value] += 1
    result.decisions = dict(decisions)
    result.load_median = statistics.median(result.load_seconds)
    result.measure_median = statistics.median(result.measure_seconds)
    result.measure_max = max(result.measure_seconds)
    result.other_cpu_percent = load.other_cpu_percent
    return result


# --- cohort on two executors ----------------------------------------------------------------


@dataclass
class ExecutorRun:
    executor: str
    seconds: float
    series_per_second: float
    jobs_per_second: float
    done: int
    failed: int
    retried: int
    cpu_seconds: float
    other_cpu_percent: float


@dataclass
class CohortResult:
    status: str = "ok"
    error: str = ""
    patients: int = 0
    series: int = 0
    instances: int = 0
    corpus: str = ""
    write_seconds: float = float("nan")
    ingest_seconds: float = float("nan")
    queued_jobs: int = 0
    startup_seconds: dict[str, float] = field(default_factory=dict)
    runs: list[ExecutorRun] = field(default_factory=list)
    median_series_per_second: dict[str, float] = field(default_factory=dict)
    median_seconds: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


def _warm_up(executor: Any) -> None:
    """Start the workers and import the handlers' modules there (builtins: picklable)."""
    code = "import biobank.curation.jobs, time; time.sleep(0.3)"
    futures = [executor.submit(exec, code) for _ in range(executor.parallelism)]
    for future in futures:
        future.result()


def _corpus(args: argparse.Namespace, workdir: Path) -> tuple[Path, float]:
    from biobank.dicom.synthetic import write_corpus

    key = (
        f"p{args.cohort_patients}-s{args.cohort_slices}-n{args.cohort_size}"
        f"-seed{args.seed}-g{GENERATOR_VERSION}"
    )
    folder = workdir / f"curation-corpus-{key}"
    marker = workdir / f"curation-corpus-{key}.complete"
    if folder.exists() and marker.exists():
        return folder, float("nan")
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    write_corpus(
        folder,
        patients=args.cohort_patients,
        ct_slices=args.cohort_slices,
        mr_slices=args.cohort_slices,
        ct_size=args.cohort_size,
        mr_size=args.cohort_size,
        seed=args.seed,
    )
    marker.touch()
    return folder, time.perf_counter() - start


def run_cohort(args: argparse.Namespace, workdir: Path) -> CohortResult:
    from biobank.catalog.curation import CurationRecords
    from biobank.catalog.jobs import JobRecords
    from biobank.curation.jobs import classify_series_job, qc_series_job
    from biobank.ingest.node import NodeRole, init_node
    from biobank.ingest.pipeline import ingest
    from biobank.jobs import DaskExecutor, JobContext, JobRunner, LocalExecutor

    result = CohortResult(patients=args.cohort_patients)
    corpus, result.write_seconds = _corpus(args, workdir)
    result.corpus = str(corpus)
    home = Path(tempfile.mkdtemp(prefix="curation-node-", dir=workdir))
    handlers = {"classify-series": classify_series_job, "qc-series": qc_series_job}
    cluster: Any = None
    client: Any = None
    executors: dict[str, Any] = {}
    try:
        node = init_node(home / "node", site="bench", role=NodeRole.SITE)
        start = time.perf_counter()
        report = ingest(node, [corpus], jobs=args.jobs, queue_jobs=JOB_KINDS)
        result.ingest_seconds = time.perf_counter() - start
        result.queued_jobs = report.queued_jobs
        result.instances = report.counts.get("stored", 0)
        with node.open_catalog() as catalog:
            series = [s.series_instance_uid for s in catalog.find_series(limit=1_000_000)]
            result.series = len(series)
            records = JobRecords(catalog)
            context = JobContext(catalog.url, str(node.blob_root.resolve()))

            t0 = time.perf_counter()
            executors["local"] = LocalExecutor(args.jobs)
            _warm_up(executors["local"])
            result.startup_seconds["local"] = time.perf_counter() - t0

            from distributed import Client, LocalCluster

            t0 = time.perf_counter()
            cluster = LocalCluster(
                n_workers=args.dask_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                local_directory=str(home / "dask"),
            )
            client = Client(cluster)
            executors["dask"] = DaskExecutor(client=client)
            _warm_up(executors["dask"])
            result.startup_seconds["dask"] = time.perf_counter() - t0

            first = True
            for _ in range(args.runs):
                for name in ("local", "dask"):
                    if not first:
                        for kind in JOB_KINDS:  # re-queue the done jobs
                            records.enqueue(kind, series)
                    first = False
                    pending = records.counts().get("pending", 0)
                    if pending != len(JOB_KINDS) * len(series):
                        raise Failed(f"{pending} jobs pending, expected {2 * len(series)}")
                    executor = executors[name]
                    runner = JobRunner(records, executor, handlers, context)
                    with measure_load() as load:
                        summary = runner.run_pending()
                    run = ExecutorRun(
                        executor=executor.name,
                        seconds=load.wall,
                        series_per_second=len(series) / load.wall,
                        jobs_per_second=summary.done / load.wall,
                        done=summary.done,
                        failed=summary.failed,
                        retried=summary.retried,
                        cpu_seconds=load.ours_cpu,
                        other_cpu_percent=load.other_cpu_percent,
                    )
                    print(
                        f"  cohort {name}: {run.seconds:.2f} s, "
                        f"{run.series_per_second:.1f} series/s, done {summary.done}, "
                        f"failed {summary.failed}, retried {summary.retried}",
                        file=sys.stderr,
                    )
                    result.runs.append(run)
                    if summary.failed or summary.retried or summary.done != 2 * len(series):
                        errors = [j.error for j in records.find() if j.error][:3]
                        raise Failed(f"{name}: {summary.to_json()}; errors: {errors}")
            for name in ("local", "dask"):
                mine = [r for r in result.runs if r.executor == executors[name].name]
                result.median_seconds[name] = statistics.median(r.seconds for r in mine)
                result.median_series_per_second[name] = len(series) / result.median_seconds[name]
            curation = CurationRecords(catalog)
            decisions: Counter[str] = Counter()
            labels: Counter[str] = Counter()
            for uid in series:
                record = curation.get(uid)
                decisions[str(record.decision.value if record.decision else None)] += 1
                labels[str(record.label)] += 1
            result.decisions, result.labels = dict(decisions), dict(labels)
    finally:
        for executor in executors.values():
            with contextlib.suppress(Exception):
                executor.close()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        shutil.rmtree(home, ignore_errors=True)
    return result


# --- output ---------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _table(
    args: argparse.Namespace,
    classify: ClassifyResult | None,
    qc: QcResult | None,
    cohort: CohortResult | None,
) -> str:
    lines = [
        f"## Curation — {os.cpu_count()} cores, {args.runs} run(s) (medians)",
        "",
        "| measurement | size | seconds | rate | notes | other CPU % |",
        "|---|---|---:|---:|---|---:|",
    ]

    def failed(name: str, r: Any) -> None:
        lines.append(f"| {name} | | | | **{r.status}**: {r.error.splitlines()[0][:200]} | |")

    if classify is not None:
        if classify.status != "ok":
            failed("classification", classify)
        else:
            size = (
                f"{classify.series:,} MR series, {classify.headers:,} headers "
                f"({args.min_headers}–{args.max_headers} a series; "
                f"{classify.distinct_series:,} distinct, cycled)"
            )
            agree = (
                f"labels as the protocol intends: {classify.expected_agreement:.0%}; "
                f"needs review {classify.needs_review:,}"
            )
            lines.append(
                f"| classify_series, headers in memory | {size} | "
                f"{_fmt(statistics.median(classify.seconds_in_memory), 2)} | "
                f"**{_fmt(classify.series_per_second_in_memory, 0)} series/s** | "
                f"p50 {_fmt(classify.ms_per_series_p50, 2)} ms, "
                f"p95 {_fmt(classify.ms_per_series_p95, 2)} ms a series; {agree} | "
                f"{_fmt(classify.other_cpu_percent, 0)} |"
            )
            lines.append(
                f"| dcmread (no pixels) + classify_series | the same, from encoded bytes | "
                f"{_fmt(statistics.median(classify.seconds_from_bytes), 2)} | "
                f"**{_fmt(classify.series_per_second_from_bytes, 0)} series/s** | "
                f"p50 {_fmt(classify.bytes_ms_per_series_p50, 2)} ms, "
                f"p95 {_fmt(classify.bytes_ms_per_series_p95, 2)} ms a series; as the "
                f"classify-series job reads them (without catalogue and blob store) | "
                f"{_fmt(classify.other_cpu_percent, 0)} |"
            )
    if qc is not None:
        if qc.status != "ok":
            failed("QC", qc)
        else:
            z, y, x = qc.shape
            size = f"{len(qc.measure_seconds)} × MR {x}×{y}×{z}"
            lines.append(
                f"| load_series_files | {size} | {_fmt(qc.load_median, 3)} | "
                f"{_fmt(1 / qc.load_median, 1)} series/s | median per series (warm cache) | "
                f"{_fmt(qc.other_cpu_percent, 0)} |"
            )
            lines.append(
                f"| qc.measure | {size} | **{_fmt(qc.measure_median, 3)}** | "
                f"{_fmt(1 / qc.measure_median, 1)} series/s | median per series, "
                f"max {_fmt(qc.measure_max, 3)} s; decisions {qc.decisions} | "
                f"{_fmt(qc.other_cpu_percent, 0)} |"
            )
    if cohort is not None:
        if cohort.status != "ok":
            failed("cohort jobs", cohort)
        else:
            size = (
                f"{cohort.series} series ({cohort.patients} patients × CT + MR, "
                f"{args.cohort_slices} slices of {args.cohort_size}²; {cohort.instances:,} "
                f"instances), {2 * cohort.series} jobs"
            )
            for name in ("local", "dask"):
                mine = [
                    r
                    for r in cohort.runs
                    if (r.executor.startswith("local") if name == "local" else "Dask" in r.executor)
                ]
                if not mine:
                    continue
                label = (
                    f"JobRunner.run_pending, LocalExecutor({args.jobs})"
                    if name == "local"
                    else f"JobRunner.run_pending, Dask LocalCluster ({args.dask_workers} "
                    "workers × 1 thread)"
                )
                cpu = statistics.median(r.cpu_seconds for r in mine)
                lines.append(
                    f"| {label} | {size} | {_fmt(cohort.median_seconds[name], 2)} | "
                    f"**{_fmt(cohort.median_series_per_second[name], 1)} series/s** | "
                    f"{_fmt(2 * cohort.series / cohort.median_seconds[name], 1)} jobs/s; "
                    f"CPU {_fmt(cpu, 1)} s; start-up "
                    f"{_fmt(cohort.startup_seconds.get(name, float('nan')), 1)} s (untimed) | "
                    f"{_fmt(statistics.median(r.other_cpu_percent for r in mine), 0)} |"
                )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SUBJECTS), help="classify,qc,cohort")
    parser.add_argument("--runs", type=int, default=1, help="repetitions (medians reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=3000, help="MR series to classify")
    parser.add_argument(
        "--distinct-series",
        type=int,
        default=200,
        help="series generated (untimed); the --series classified cycle over them",
    )
    parser.add_argument("--min-headers", type=int, default=20, help="headers a series, at least")
    parser.add_argument("--max-headers", type=int, default=30, help="headers a series, at most")
    parser.add_argument("--qc-series", type=int, default=5, help="MR series measured")
    parser.add_argument("--qc-slices", type=int, default=30)
    parser.add_argument("--qc-size", type=int, default=256, help="rows and columns")
    parser.add_argument("--cohort-patients", type=int, default=100, help="× a CT and an MR series")
    parser.add_argument("--cohort-slices", type=int, default=10)
    parser.add_argument("--cohort-size", type=int, default=128, help="rows and columns")
    parser.add_argument("--jobs", type=int, default=2, help="local pool processes (and ingest)")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the generated QC series and cohort corpus here (reused) and write "
        "curation-results.json here; default: a temporary folder, removed at the end",
    )
    parser.add_argument("--json", type=Path, help="results file (default: see --workdir)")
    return parser.parse_args(argv)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("biobank", "pydicom", "numpy", "scipy", "scikit-image", "dask", "distributed"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    only = [s for s in args.only.split(",") if s]
    if unknown := set(only) - set(SUBJECTS):
        print(f"unknown subjects: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.runs < 1 or args.min_headers < 3 or args.max_headers < args.min_headers:
        print("need --runs >= 1 and 3 <= --min-headers <= --max-headers", file=sys.stderr)
        return 2
    temporary = args.workdir is None
    if temporary:
        args.workdir = Path(tempfile.mkdtemp(prefix="biobank-curation-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (
        Path("curation-results.json") if temporary else args.workdir / "curation-results.json"
    )
    started = time.time()
    load_at_start = os.getloadavg()
    classify: ClassifyResult | None = None
    qc: QcResult | None = None
    cohort: CohortResult | None = None
    try:
        with terminate_as_exit():
            for subject in only:
                print(f"{subject} ...", file=sys.stderr)
                t0 = time.perf_counter()
                try:
                    if subject == "classify":
                        classify = run_classify(args)
                    elif subject == "qc":
                        qc = run_qc(args, args.workdir)
                    else:
                        cohort = run_cohort(args, args.workdir)
                except (Failed, Exception) as exc:  # reported; the other subjects run
                    error = f"{type(exc).__name__}: {exc}"
                    print(f"  {subject}: failed: {error}", file=sys.stderr)
                    if subject == "classify":
                        classify = ClassifyResult(status="failed", error=error)
                    elif subject == "qc":
                        qc = QcResult(status="failed", error=error)
                    else:
                        cohort = CohortResult(status="failed", error=error)
                print(f"  {subject}: {time.perf_counter() - t0:,.1f} s", file=sys.stderr)
            table = _table(args, classify, qc, cohort)
            print(table)
            payload = {
                "parameters": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                },
                "environment": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_at_start": load_at_start,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "seconds": time.time() - started,
                    "versions": _versions(),
                },
                "classify": asdict(classify) if classify else None,
                "qc": asdict(qc) if qc else None,
                "cohort": asdict(cohort) if cohort else None,
                "table_markdown": table,
            }
            json_path.write_text(json.dumps(payload, indent=2, default=str))
            print(f"\nresults: {json_path}", file=sys.stderr)
    finally:
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
    failed = [r for r in (classify, qc, cohort) if r is not None and r.status != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
