"""DICOM conformance of a series, instance by instance, recorded as QC findings.

Two kinds of checks make :class:`Finding` objects:

**dciodvfy** (Debian ``dicom3tools``) verifies each instance against its IOD. Its
``Error -`` and ``Warning -`` lines become findings of check ``dciodvfy``. Its messages
name attributes and modules (``Element=<Modality> Module=<GeneralSeries>``) but sometimes
quote a value (``DA [1] = <20240617>``, ``Character invalid for this VR = 'X' (0x58)``):
every quoted value is replaced by ``<value>`` (:func:`scrub_dciodvfy`), keeping only the
attribute, tag and module. Identical messages of several instances are merged into one
finding. When ``dciodvfy`` is not on ``PATH`` the series gets one warning saying so.

**Built-in checks** on the headers (nothing is decoded):

``geometry``
    Rows/Columns, Image Orientation (Patient) and Pixel Spacing are the same for every
    image (orientation cosines within :data:`ORIENTATION_TOLERANCE`, spacings within
    :data:`SPACING_TOLERANCE` relative). Slices are placed along the normal of the
    orientation; gaps between neighbours are compared with the median gap: a gap close to
    a multiple of it means missing slices (the count is given), any other difference beyond
    :data:`SPACING_TOLERANCE` is uneven spacing. Two slices less than
    :data:`POSITION_TOLERANCE` mm apart share a position (``duplicates``). A median gap
    wider than Slice Thickness is a warning (gaps between slices). Series without any
    position (projection radiographs) get no position checks.
``duplicates``
    Two instances with one SOP Instance UID (only possible among files: the catalogue keeps
    one) and the same pixel data under two SOP Instance UIDs.
``instance-number``
    Repeated Instance Numbers and gaps in their sequence (warnings only: numbering is
    Type 2 and often restarts per stack).

Instances are named by their rank (``instance 3 of 20``) when checked from files, and by
SOP Instance UID when checked on the node, whose data are de-identified. Messages carry
UIDs, tags, counts and geometry figures (sizes, mm, degrees), never another header value.

Decision (:func:`decide`): any error (geometry, duplicates or dciodvfy) quarantines the
series for a curator; warnings alone approve it. Nothing is excluded automatically: many
real scanners write files with dciodvfy errors that are still usable.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from biobank.catalog import Catalog
from biobank.catalog.curation import CurationRecords, Decision
from biobank.catalog.models import InstanceSummary
from biobank.curation.series import (
    MAX_INSTANCES,
    _BlobSource,
    _normal,
    _orientation,
    _position,
    catalog_blob,
    finite_floats,
)
from biobank.dicom.io import read_dataset
from biobank.errors import InvalidDicom, InvalidInput, NotFound
from biobank.jobs import JobContext
from biobank.store.blobs import FileBlobStore

logger = logging.getLogger(__name__)

#: Seconds dciodvfy may take on one instance.
DCIODVFY_TIMEOUT = 60.0
#: Largest difference of a direction cosine between two images of one orientation.
ORIENTATION_TOLERANCE = 1e-3
#: Relative tolerance of pixel spacing and of slice gaps against the median gap.
SPACING_TOLERANCE = 0.05
#: Slices closer than this (mm) along the normal share a position.
POSITION_TOLERANCE = 0.01
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DCIODVFY_LINE = re.compile(r"(?:^|\s-\s)(Error|Warning)\s-\s(.*)$")
# A value after "= <" ends at the last ">" before " - " or the end of the line; a value cut
# by a line break (LT/ST text) has no ">": the rest of the line goes.
_ASSIGNED_VALUE = re.compile(r"(\]\s*=\s*)<.*?(?:>(?=\s+-\s|\s*$)|$)")
_ANGLE_VALUE = re.compile(r"<([^<>]*)>")
_CHAR_VALUE = re.compile(r"'[^']*'\s*\(0x[0-9A-Fa-f]+\)")
_DOUBLE_QUOTED = re.compile(r'"[^"]*"')
_NAME_BEFORE = re.compile(r"(?:Element=|Module=|Macro=|IOD=|[Aa]ttribute\s|[Mm]odule\s)$")


class Severity(enum.StrEnum):
    """How bad a finding is: errors quarantine a series, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One conformance problem.

    Attributes
    ----------
    severity : Severity
        ``error`` or ``warning``.
    check : str
        ``dciodvfy``, ``geometry``, ``duplicates`` or ``instance-number``.
    message : str
        What is wrong and what to do; no header value other than UIDs and tags.
    instance : str or None
        The instance(s) concerned (``instance 3 of 20`` or a SOP Instance UID); ``None``
        for the whole series.
    """

    severity: Severity
    check: str
    message: str
    instance: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the form recorded in the catalogue)."""
        return {
            "severity": self.severity.value,
            "check": self.check,
            "instance": self.instance,
            "message": self.message,
        }


@dataclass(frozen=True)
class ConformanceReport:
    """The findings of one series and the decision of the rules."""

    series_instance_uid: str
    instances: int
    findings: tuple[Finding, ...]
    decision: Decision
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``biobank curate check --json`` prints)."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "instances": self.instances,
            "findings": [f.to_json() for f in self.findings],
            "decision": self.decision.value,
            "reasons": list(self.reasons),
        }


@dataclass
class _Slice:
    label: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None


@dataclass
class _Instance:
    label: str
    sop_instance_uid: str
    size: tuple[int, int] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    instance_number: int | None
    digest: str | None
    slices: list[_Slice] = field(default_factory=list)


# -- dciodvfy ----------------------------------------------------------------------------


def scrub_dciodvfy(message: str) -> str:
    """Replace every value quoted in a dciodvfy message by ``<value>``.

    Attribute, module and macro names (``Element=<Modality>``, ``attribute <CTDIvol>``)
    and tags are kept; ``= <...>`` (up to ``> -`` or the end of the line, so a value
    holding ``<``, ``>`` or a line break goes whole), ``<...>`` elsewhere, ``"..."`` and
    ``'c' (0xNN)`` are values.
    """

    def angle(match: re.Match[str]) -> str:
        if _NAME_BEFORE.search(message[: match.start()]):
            return match.group(0)
        return "<value>"

    scrubbed = _ASSIGNED_VALUE.sub(r"\1<value>", message)  # "LO [1] = <...> - ..."
    scrubbed = _ANGLE_VALUE.sub(angle, scrubbed)
    scrubbed = _CHAR_VALUE.sub("<value>", scrubbed)
    scrubbed = _DOUBLE_QUOTED.sub('"<value>"', scrubbed)
    return " ".join(scrubbed.split())


def parse_dciodvfy(output: str, instance: str | None = None) -> list[Finding]:
    """Findings from dciodvfy's output: its ``Error -`` and ``Warning -`` lines, scrubbed."""
    findings: list[Finding] = []
    for line in output.splitlines():
        match = _DCIODVFY_LINE.search(line.strip())
        if match is None:
            continue
        severity = Severity.ERROR if match.group(1) == "Error" else Severity.WARNING
        prefix = line.strip()[: match.start()].strip()
        text = scrub_dciodvfy(match.group(2))
        if prefix.startswith("(0x"):  # "(0x0009,0x102a)  ?  - Warning - Unrecognized tag"
            text = f"{prefix.split()[0]} {text}"
        findings.append(Finding(severity, "dciodvfy", text, instance))
    return findings


def run_dciodvfy(
    path: Path,
    instance: str | None = None,
    *,
    executable: str = "dciodvfy",
    timeout: float = DCIODVFY_TIMEOUT,
) -> list[Finding]:
    """Run dciodvfy on one file and return its findings.

    A missing program, a time-out or a crash is a warning finding, not an exception.
    """
    program = shutil.which(executable)
    if program is None:
        return [_no_dciodvfy()]
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program on a file we name
            [program, str(path)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [
            Finding(
                Severity.WARNING,
                "dciodvfy",
                f"dciodvfy did not finish within {timeout:g} s; run it by hand on the instance",
                instance,
            )
        ]
    except OSError as exc:
        return [
            Finding(
                Severity.WARNING,
                "dciodvfy",
                f"dciodvfy could not be run ({exc.__class__.__name__}); check the "
                "dicom3tools installation",
                instance,
            )
        ]
    output = done.stdout.decode("utf-8", "replace") + "\n" + done.stderr.decode("utf-8", "replace")
    return parse_dciodvfy(output, instance)


def _no_dciodvfy() -> Finding:
    return Finding(
        Severity.WARNING,
        "dciodvfy",
        "dciodvfy not available: install Debian dicom3tools (apt-get install dicom3tools) "
        "to verify instances against their IOD",
    )


def _merge(findings: list[Finding], total: int) -> list[Finding]:
    """One finding per distinct (severity, check, message), naming all its instances."""
    grouped: dict[tuple[Severity, str, str], list[str]] = defaultdict(list)
    for finding in findings:
        key = (finding.severity, finding.check, finding.message)
        if finding.instance is not None:
            grouped[key].append(finding.instance)
        else:
            grouped.setdefault(key, [])
    merged: list[Finding] = []
    for (severity, check, message), instances in grouped.items():
        merged.append(Finding(severity, check, message, _describe(instances, total)))
    return merged


def _describe(instances: list[str], total: int) -> str | None:
    if not instances:
        return None
    if len(instances) == 1:
        return instances[0]
    if total > 1 and len(instances) == total:
        return f"all {total} instances"
    shown = ", ".join(instances[:3])
    more = f" and {len(instances) - 3} more" if len(instances) > 3 else ""
    return f"{shown}{more}"


# -- reading -----------------------------------------------------------------------------


def _summarise(ds: Dataset, label: str) -> _Instance:
    pixel_keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
    digest = None
    slices: list[_Slice] = []
    size: tuple[int, int] | None = None
    if pixel_keyword is not None:
        raw = ds[pixel_keyword].value
        if isinstance(raw, bytes | bytearray):
            digest = hashlib.sha256(raw).hexdigest()
        try:
            size = (int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError):
            size = None
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        for index in range(frames):
            frame_label = label if frames == 1 else f"{label}, frame {index + 1}"
            slices.append(_Slice(frame_label, _position(ds, index), _orientation(ds, index)))
    spacing = finite_floats(ds.get("PixelSpacing"), 2) if ds.get("PixelSpacing") else None
    try:
        thickness = float(ds.get("SliceThickness") or 0) or None
    except (TypeError, ValueError):
        thickness = None
    number = ds.get("InstanceNumber")
    try:
        instance_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None
    return _Instance(
        label=label,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        size=size,
        pixel_spacing=(spacing[0], spacing[1]) if spacing else None,
        slice_thickness=thickness,
        instance_number=instance_number,
        digest=digest,
        slices=slices,
    )


# -- built-in checks ---------------------------------------------------------------------


def check_geometry(instances: Sequence[_Instance]) -> list[Finding]:
    """Sizes, orientation, pixel spacing and slice positions of a series' images."""
    images = [i for i in instances if i.size is not None]
    findings: list[Finding] = []
    sizes = Counter(i.size for i in images)
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        assert common is not None
        for image in images:
            if image.size != common:
                assert image.size is not None
                findings.append(
                    _error(
                        "geometry",
                        f"image size {image.size[0]}x{image.size[1]} differs from the "
                        f"series' {common[0]}x{common[1]}; split the series or remove the "
                        "instance",
                        image.label,
                    )
                )
    spacings = [i for i in images if i.pixel_spacing is not None]
    if spacings:
        reference = Counter(i.pixel_spacing for i in spacings).most_common(1)[0][0]
        assert reference is not None
        for image in spacings:
            assert image.pixel_spacing is not None
            if not np.allclose(image.pixel_spacing, reference, rtol=SPACING_TOLERANCE, atol=0):
                findings.append(
                    _error(
                        "geometry",
                        "Pixel Spacing (0028,0030) differs from the rest of the series; "
                        "check the reconstruction or split the series",
                        image.label,
                    )
                )
    slices = [s for i in images for s in i.slices]
    findings.extend(_check_slices(slices, images))
    return findings


def _check_slices(slices: list[_Slice], images: Sequence[_Instance]) -> list[Finding]:
    findings: list[Finding] = []
    oriented = [s for s in slices if s.orientation is not None]
    placed = [s for s in slices if s.position is not None]
    if not oriented and not placed:
        return findings  # projection images: no slice geometry to check
    for s in slices:
        if s.position is None or s.orientation is None:
            findings.append(
                _error(
                    "geometry",
                    "Image Position (Patient) (0020,0032) or Image Orientation (Patient) "
                    "(0020,0037) is missing: the slice cannot be placed; fix or remove it",
                    s.label,
                )
            )
    counts = Counter(tuple(round(v, 3) for v in s.orientation or ()) for s in oriented)
    reference = np.asarray(counts.most_common(1)[0][0])
    for s in oriented:
        delta = float(np.max(np.abs(np.asarray(s.orientation) - reference)))
        if delta > ORIENTATION_TOLERANCE:
            findings.append(
                _error(
                    "geometry",
                    "Image Orientation (Patient) (0020,0037) differs from the rest of the "
                    f"series (largest cosine difference {delta:.3g}); split the series or "
                    "remove the slice",
                    s.label,
                )
            )
    normal = _normal(tuple(float(v) for v in reference))
    usable = [
        s
        for s in slices
        if s.position is not None
        and s.orientation is not None
        and float(np.max(np.abs(np.asarray(s.orientation) - reference))) <= ORIENTATION_TOLERANCE
    ]
    if normal is None or len(usable) < 2:
        return findings
    keyed = sorted(
        ((float(np.dot(normal, s.position or (0.0, 0.0, 0.0))), s) for s in usable),
        key=lambda pair: pair[0],
    )
    distances = np.asarray([d for d, _ in keyed])
    gaps = np.diff(distances)
    for index, gap in enumerate(gaps):
        if gap < POSITION_TOLERANCE:
            first, second = keyed[index][1].label, keyed[index + 1][1].label
            findings.append(
                _error(
                    "duplicates",
                    f"{first} and {second} share one slice position; remove the repeated "
                    "slice or split the stacks into series",
                    second,
                )
            )
    positive = gaps[gaps >= POSITION_TOLERANCE]
    if positive.size == 0:
        return findings
    median = float(np.median(positive))
    for index, gap in enumerate(gaps):
        if gap < POSITION_TOLERANCE or abs(gap - median) <= SPACING_TOLERANCE * median:
            continue
        before, after = keyed[index][1].label, keyed[index + 1][1].label
        steps = gap / median
        missing = round(steps) - 1
        if missing >= 1 and abs(steps - round(steps)) <= SPACING_TOLERANCE * round(steps):
            message = (
                f"missing slices: a gap of {gap:.3g} mm between {before} and {after}, where "
                f"slices are {median:.3g} mm apart ({missing} slice(s) expected there); "
                "find the missing instances or re-export the series"
            )
        else:
            message = (
                f"uneven slice spacing: a gap of {gap:.3g} mm between {before} and {after}, "
                f"where slices are {median:.3g} mm apart; check the series for a second "
                "stack or missing slices"
            )
        findings.append(_error("geometry", message, after))
    thicknesses = [i.slice_thickness for i in images if i.slice_thickness]
    if thicknesses:
        thickness = float(np.median(thicknesses))
        if median > thickness * (1 + SPACING_TOLERANCE):
            findings.append(
                Finding(
                    Severity.WARNING,
                    "geometry",
                    f"slices are {median:.3g} mm apart but Slice Thickness (0018,0050) is "
                    f"{thickness:.3g} mm: there are gaps between slices; check that this "
                    "is intended before measuring volumes",
                )
            )
    return findings


def check_duplicates(instances: Sequence[_Instance]) -> list[Finding]:
    """The same SOP Instance UID twice, and the same pixel data under two UIDs."""
    findings: list[Finding] = []
    by_uid: dict[str, list[_Instance]] = defaultdict(list)
    for instance in instances:
        if instance.sop_instance_uid:
            by_uid[instance.sop_instance_uid].append(instance)
    for group in by_uid.values():
        if len(group) < 2:
            continue
        labels = ", ".join(i.label for i in group)
        same = len({i.digest for i in group}) == 1
        findings.append(
            Finding(
                Severity.WARNING if same else Severity.ERROR,
                "duplicates",
                f"{labels} share one SOP Instance UID"
                + (
                    " and hold the same pixel data (a copied file; ingest keeps one)"
                    if same
                    else " but hold different pixel data; find which one is the instance"
                ),
                group[-1].label,
            )
        )
    by_digest: dict[str, list[_Instance]] = defaultdict(list)
    for instance in instances:
        if instance.digest is not None:
            by_digest[instance.digest].append(instance)
    for group in by_digest.values():
        if len({i.sop_instance_uid for i in group}) < 2:
            continue
        labels = ", ".join(i.label for i in group)
        findings.append(
            _error(
                "duplicates",
                f"{labels} hold the same pixel data under different SOP Instance UIDs; "
                "remove the copies",
                group[-1].label,
            )
        )
    return findings


def check_instance_numbers(instances: Sequence[_Instance]) -> list[Finding]:
    """Repeated Instance Numbers (0020,0013) and gaps in their sequence (warnings)."""
    numbered = [i for i in instances if i.instance_number is not None and i.size is not None]
    findings: list[Finding] = []
    counts = Counter(i.instance_number for i in numbered)
    for number, count in sorted(counts.items(), key=lambda kv: kv[0] or 0):
        if count > 1:
            labels = ", ".join(i.label for i in numbered if i.instance_number == number)
            findings.append(
                Finding(
                    Severity.WARNING,
                    "instance-number",
                    f"{labels} share one Instance Number (0020,0013); check for repeated "
                    "acquisitions",
                )
            )
    values = sorted(n for n in counts if n is not None)
    missing = sum(b - a - 1 for a, b in zip(values, values[1:], strict=False) if b - a > 1)
    if missing:
        findings.append(
            Finding(
                Severity.WARNING,
                "instance-number",
                f"{missing} Instance Number(s) (0020,0013) missing from the sequence; check "
                "that every instance was exported",
            )
        )
    return findings


def _error(check: str, message: str, instance: str | None = None) -> Finding:
    return Finding(Severity.ERROR, check, message, instance)


# -- decision ----------------------------------------------------------------------------


def decide(findings: Iterable[Finding]) -> tuple[Decision, list[str]]:
    """The rules' decision: quarantine on any error, approve otherwise.

    Errors of the built-in checks (geometry, duplicates) and of dciodvfy quarantine the
    series for a curator; nothing is excluded automatically, since many real scanners'
    files have dciodvfy errors and are still usable. Warnings alone approve.
    """
    errors = Counter(f.check for f in findings if f.severity is Severity.ERROR)
    if not errors:
        return Decision.APPROVE, []
    reasons = [
        f"{check}: {count} error finding(s); review them with `biobank curate check`"
        for check, count in sorted(errors.items())
    ]
    return Decision.QUARANTINE, reasons


# -- series ------------------------------------------------------------------------------


def _report(
    series_instance_uid: str, instances: list[_Instance], dciodvfy: list[Finding]
) -> ConformanceReport:
    findings = [
        *_merge(dciodvfy, len(instances)),
        *check_geometry(instances),
        *check_duplicates(instances),
        *check_instance_numbers(instances),
    ]
    decision, reasons = decide(findings)
    return ConformanceReport(
        series_instance_uid=series_instance_uid,
        instances=len(instances),
        findings=tuple(findings),
        decision=decision,
        reasons=tuple(reasons),
    )


def check_instance_files(
    paths: Iterable[Path],
    *,
    verify: bool = True,
    executable: str = "dciodvfy",
    timeout: float = DCIODVFY_TIMEOUT,
) -> list[ConformanceReport]:
    """Check DICOM files; one report per series, in order of first appearance.

    Instances are named by their rank among the files (``instance 3 of 20``); files that
    are not DICOM are skipped.

    Parameters
    ----------
    paths : iterable of Path
        The files (folders are not expanded).
    verify : bool
        Run dciodvfy on each instance.
    executable : str
        The dciodvfy program (looked up on ``PATH``).
    timeout : float
        Seconds dciodvfy may take on one instance.

    Returns
    -------
    list of ConformanceReport

    Raises
    ------
    InvalidInput
        If no file is DICOM or a file cannot be read.
    """
    files = list(paths)
    available = shutil.which(executable) is not None
    groups: dict[str, tuple[list[_Instance], list[Finding]]] = {}
    for rank, path in enumerate(files, start=1):
        label = f"instance {rank} of {len(files)}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(
                f"{label} could not be read ({exc.__class__.__name__}); check the path and "
                "its permissions"
            ) from None
        try:
            ds = read_dataset(data, source=label)
        except InvalidDicom:
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        instances, dciodvfy = groups.setdefault(uid, ([], []))
        instances.append(_summarise(ds, label))
        if verify and available:
            dciodvfy.extend(run_dciodvfy(path, label, executable=executable, timeout=timeout))
    if not groups:
        raise InvalidInput("no DICOM file was found; give the folder or files of a series")
    reports = []
    for uid, (instances, dciodvfy) in groups.items():
        if verify and not available:
            dciodvfy = [_no_dciodvfy()]
        reports.append(_report(uid, instances, dciodvfy))
    return reports


def check_series(
    catalog: Catalog,
    store: _BlobSource,
    series_instance_uid: str,
    *,
    verify: bool = True,
    executable: str = "dciodvfy",
    timeout: float = DCIODVFY_TIMEOUT,
) -> ConformanceReport:
    """Check one catalogued series from the node's blob store.

    Instances are named by SOP Instance UID (the node's data are de-identified). For
    dciodvfy each instance is written to a private temporary file, removed afterwards.

    Raises
    ------
    NotFound
        If the catalogue has no instance of the series, or a blob is missing.
    """
    summaries = catalog.find_instances(series_instance_uid=series_instance_uid, limit=MAX_INSTANCES)
    if not summaries:
        raise NotFound(
            "no instance of that series is catalogued; list the node's series with "
            "`biobank ls series`"
        )
    available = shutil.which(executable) is not None
    instances: list[_Instance] = []
    dciodvfy: list[Finding] = [] if available or not verify else [_no_dciodvfy()]
    with tempfile.TemporaryDirectory(prefix="biobank-conformance-") as scratch:
        target = Path(scratch) / "instance.dcm"
        for summary, data in _blobs(store, summaries):
            label = summary.sop_instance_uid or f"blob {summary.blob_digest[:12]}"
            ds = read_dataset(data, source=label)
            instances.append(_summarise(ds, label))
            if verify and available:
                target.write_bytes(data)
                dciodvfy.extend(run_dciodvfy(target, label, executable=executable, timeout=timeout))
    return _report(series_instance_uid, instances, dciodvfy)


def _blobs(
    store: _BlobSource, summaries: Sequence[InstanceSummary]
) -> Iterator[tuple[InstanceSummary, bytes]]:
    for summary in summaries:  # one instance in memory at a time
        yield summary, catalog_blob(store, summary.blob_digest)


def conformance_series_job(context: JobContext, series_instance_uid: str) -> dict[str, Any]:
    """Job ``conformance-series``: check the series' conformance; record the findings.

    Raises
    ------
    NotFound
        If the series is not catalogued.
    """
    catalog = Catalog(context.catalog_url)
    store = FileBlobStore(Path(context.blob_root), fsync=False)
    try:
        report = check_series(catalog, store, series_instance_uid)
        CurationRecords(catalog).record_conformance(
            series_instance_uid,
            [f.to_json() for f in report.findings],
            report.decision,
            list(report.reasons),
        )
        logger.info(
            "conformance of a series: %d finding(s), %s",
            len(report.findings),
            report.decision.value,
        )
        return {
            "decision": report.decision.value,
            "reasons": list(report.reasons),
            "findings": len(report.findings),
        }
    finally:
        catalog.close()


__all__ = [
    "DCIODVFY_TIMEOUT",
    "ORIENTATION_TOLERANCE",
    "POSITION_TOLERANCE",
    "SPACING_TOLERANCE",
    "ConformanceReport",
    "Finding",
    "Severity",
    "check_duplicates",
    "check_geometry",
    "check_instance_files",
    "check_instance_numbers",
    "check_series",
    "conformance_series_job",
    "decide",
    "parse_dciodvfy",
    "run_dciodvfy",
    "scrub_dciodvfy",
]
