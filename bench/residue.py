"""Planted-PHI residue and output validity of a de-identifier's output folder.

Each output file is matched to its source instance by the tail of its pixel data (the
de-identifiers here leave pixels alone), then its header bytes - everything before the pixel
data - are searched for every value planted for that patient, in ISO 8859-1 and in UTF-8.
A file that cannot be matched is searched whole for every patient's values. The attributes
that still hold a value are named from a pydicom walk of 25 files with residue, spread over
the output.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from biobank.dicom.synthetic import PlantedPHI

TAIL = 4096  # bytes of pixel data that identify a source instance
ATTRIBUTE_SAMPLE = 25  # files with residue whose attributes are named


@dataclass(frozen=True)
class SourceInstance:
    patient: int
    pixel_bytes: int


@dataclass
class ResidueReport:
    files: int = 0
    matched: int = 0
    files_with_phi: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    attributes: Counter[str] = field(default_factory=Counter)
    attribute_sample: int = 0
    dciodvfy_errors: list[int] = field(default_factory=list)
    dciodvfy_warnings: int = 0
    dciodvfy_top_errors: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "matched_to_source": self.matched,
            "files_with_planted_phi": self.files_with_phi,
            "categories": _ranked(self.categories),
            "attributes": _ranked(self.attributes),
            "attribute_sample_files": self.attribute_sample,
            "dciodvfy_errors_per_file": self.dciodvfy_errors,
            "dciodvfy_warnings": self.dciodvfy_warnings,
            "dciodvfy_top_errors": dict(self.dciodvfy_top_errors.most_common(5)),
        }


def _ranked(counter: Counter[str]) -> dict[str, int]:
    """Most frequent first, then by name: the same run gives the same order."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


Patterns = list[tuple[bytes, str]]


def _patterns(phi: PlantedPHI) -> Patterns:
    out: Patterns = []
    for category, values in phi.categories().items():
        for value in values:
            encodings = {value.encode("latin-1"), value.encode("utf-8")}
            out.extend((enc, category) for enc in sorted(encodings))
    return out


class ResidueChecker:
    """Knows the corpus: which planted values belong to which source instance."""

    def __init__(self, corpus: Path, patients: list[PlantedPHI]) -> None:
        self.patterns = {phi.index: _patterns(phi) for phi in patients}
        self.all_patterns: Patterns = [p for pats in self.patterns.values() for p in pats]
        self.sources: dict[bytes, SourceInstance] = {}
        for path in corpus.rglob("*.dcm"):
            patient = int(path.parts[-3].removeprefix("patient"))
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            pixel_bytes = int(ds.Rows) * int(ds.Columns) * 2
            self.sources[path.read_bytes()[-TAIL:]] = SourceInstance(patient, pixel_bytes)

    def check(self, out_dir: Path, *, validate: int = 5) -> ResidueReport:
        report = ResidueReport()
        files = sorted(p for p in out_dir.rglob("*") if p.is_file())
        with_phi: list[tuple[Path, list[bytes]]] = []
        for path in files:
            data = path.read_bytes()
            if data[128:132] != b"DICM" and path.suffix != ".dcm":
                continue  # not an instance (a log or report a tool left)
            report.files += 1
            source = self.sources.get(data[-TAIL:])
            if source is not None:
                report.matched += 1
                header = data[: len(data) - source.pixel_bytes]
                patterns = self.patterns[source.patient]
            else:
                header, patterns = data, self.all_patterns
            found = {(pat, cat) for pat, cat in patterns if pat in header}
            if found:
                report.categories.update({cat for _, cat in found})
                with_phi.append((path, [pat for pat, _ in found]))
        report.files_with_phi = len(with_phi)
        # Name the attributes in files spread over the output (CT and MR alike).
        step = max(1, len(with_phi) // ATTRIBUTE_SAMPLE)
        for path, found_patterns in with_phi[::step][:ATTRIBUTE_SAMPLE]:
            report.attribute_sample += 1
            report.attributes.update(_attributes(path, found_patterns))
        if validate:
            _validate(files, validate, report)
        return report


def _label(ds: Dataset, elem: Any, prefix: str) -> str:
    if elem.tag.is_private and not elem.tag.is_private_creator:
        creator = elem.private_creator or "?"
        return f"{prefix}({elem.tag.group:04X},xx{elem.tag.element & 0xFF:02X}) {creator}"
    return prefix + (elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})")


def _element_bytes(value: Any) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    text = str(value)
    return [text.encode("latin-1", "replace"), text.encode("utf-8")]


def _walk(ds: Dataset, patterns: list[bytes], prefix: str, out: set[str]) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _walk(item, patterns, f"{_label(ds, elem, prefix)}>", out)
            continue
        if elem.tag == 0x7FE00010:
            continue
        blobs = _element_bytes(elem.value)
        if any(p in b for p in patterns for b in blobs):
            out.add(_label(ds, elem, prefix))


def _attributes(path: Path, patterns: list[bytes]) -> set[str]:
    out: set[str] = set()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - a broken output file is itself a finding
        return {"<unreadable>"}
    _walk(ds.file_meta, patterns, "", out)
    _walk(ds, patterns, "", out)
    return out or {"<bytes outside parsed elements>"}


def _validate(files: list[Path], count: int, report: ResidueReport) -> None:
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None or not files:
        return
    step = max(1, len(files) // count)
    for path in files[::step][:count]:
        proc = subprocess.run([dciodvfy, str(path)], capture_output=True, check=False)
        lines = (proc.stdout + proc.stderr).decode("latin-1").splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        report.dciodvfy_errors.append(len(errors))
        report.dciodvfy_warnings += sum(1 for line in lines if "Warning" in line)
        report.dciodvfy_top_errors.update(errors)
