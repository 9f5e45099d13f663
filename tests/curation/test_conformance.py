"""DICOM conformance: dciodvfy findings (scrubbed), geometry, slices, duplicates, the job."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import FileDataset

from biobank.catalog.curation import CurationRecords, Decision
from biobank.curation.conformance import (
    ConformanceReport,
    Finding,
    Severity,
    check_instance_files,
    conformance_series_job,
    decide,
    parse_dciodvfy,
    scrub_dciodvfy,
)
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.ingest.node import NodeRole, init_node
from biobank.ingest.pipeline import ingest
from biobank.jobs import JobContext

# dciodvfy is a real peer here: `make test` installs Debian dicom3tools. A missing program is
# a failure with the fix, never a skip (a skip would hide that nothing was checked).
DCIODVFY = shutil.which("dciodvfy")


def _require_dciodvfy() -> None:
    assert DCIODVFY is not None, "dciodvfy is missing: apt-get install dicom3tools (make test does)"


needs_dciodvfy = pytest.mark.usefixtures("dciodvfy_present")


@pytest.fixture
def dciodvfy_present() -> None:
    _require_dciodvfy()


Edit = Callable[[list[FileDataset]], list[FileDataset]]


def _series(n: int = 6, size: int = 32) -> list[FileDataset]:
    return make_ct_series(make_patient_phi(0, 7), n, size, size)


def _write(folder: Path, datasets: list[FileDataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # planted invalid values warn in pydicom
        for index, ds in enumerate(datasets):
            path = folder / f"{index:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _check(
    tmp_path: Path, datasets: list[FileDataset], *, verify: bool = False
) -> ConformanceReport:
    reports = check_instance_files(_write(tmp_path / "in", datasets), verify=verify)
    assert len(reports) == 1
    return reports[0]


def _of(report: ConformanceReport, check: str) -> list[Finding]:
    return [f for f in report.findings if f.check == check and f.severity is Severity.ERROR]


def test_a_clean_series_is_approved(tmp_path: Path) -> None:
    report = _check(tmp_path, _series())
    assert report.instances == 6
    assert [f for f in report.findings if f.severity is Severity.ERROR] == []
    assert report.decision is Decision.APPROVE and report.reasons == ()


@needs_dciodvfy
def test_a_clean_series_has_no_dciodvfy_error(tmp_path: Path) -> None:
    report = _check(tmp_path, _series(3), verify=True)
    assert report.decision is Decision.APPROVE, report.findings
    assert any(f.check == "dciodvfy" for f in report.findings)  # its warnings are kept


def test_a_removed_middle_slice_is_a_missing_slice(tmp_path: Path) -> None:
    datasets = _series(6)
    del datasets[3]
    report = _check(tmp_path, datasets)
    [finding] = _of(report, "geometry")
    assert "missing slices" in finding.message and "1 slice(s) expected" in finding.message
    assert "2.5 mm apart" in finding.message
    assert report.decision is Decision.QUARANTINE
    assert any(r.startswith("geometry:") for r in report.reasons)


def test_two_missing_slices_are_counted(tmp_path: Path) -> None:
    datasets = _series(7)
    del datasets[2:4]
    [finding] = _of(_check(tmp_path, datasets), "geometry")
    assert "2 slice(s) expected" in finding.message


def test_a_duplicated_position_is_an_error(tmp_path: Path) -> None:
    datasets = _series(5)
    datasets[3].ImagePositionPatient = list(datasets[2].ImagePositionPatient)
    report = _check(tmp_path, datasets)
    [finding] = _of(report, "duplicates")
    assert "share one slice position" in finding.message
    assert "instance 3 of 5" in finding.message and "instance 4 of 5" in finding.message
    assert report.decision is Decision.QUARANTINE


def test_a_duplicated_sop_instance_uid_is_an_error(tmp_path: Path) -> None:
    datasets = _series(4)
    datasets[3].SOPInstanceUID = datasets[1].SOPInstanceUID
    datasets[3].file_meta.MediaStorageSOPInstanceUID = datasets[1].SOPInstanceUID
    report = _check(tmp_path, datasets)
    [finding] = _of(report, "duplicates")
    assert "share one SOP Instance UID" in finding.message
    assert datasets[1].SOPInstanceUID not in finding.message  # files: named by rank only
    assert report.decision is Decision.QUARANTINE


def test_a_copied_file_is_a_warning_and_copied_pixels_an_error(tmp_path: Path) -> None:
    datasets = _series(3)
    paths = _write(tmp_path / "in", datasets)
    shutil.copy(paths[1], tmp_path / "in" / "copy.dcm")
    [report] = check_instance_files([*paths, tmp_path / "in" / "copy.dcm"], verify=False)
    copied = [f for f in report.findings if "SOP Instance UID" in f.message]
    assert [f.severity for f in copied] == [Severity.WARNING]

    datasets = _series(3)
    datasets[2].PixelData = datasets[1].PixelData
    report = _check(tmp_path / "b", datasets)
    [finding] = [f for f in _of(report, "duplicates") if "same pixel data" in f.message]
    assert "different SOP Instance UIDs" in finding.message


def test_a_changed_orientation_on_one_slice_is_an_error(tmp_path: Path) -> None:
    datasets = _series(5)
    datasets[2].ImageOrientationPatient = [1, 0, 0, 0, 0.9063, -0.4226]  # tilted 25°
    report = _check(tmp_path, datasets)
    errors = _of(report, "geometry")
    assert any("Image Orientation" in f.message and f.instance == "instance 3 of 5" for f in errors)
    assert report.decision is Decision.QUARANTINE


def test_mixed_sizes_are_an_error(tmp_path: Path) -> None:
    datasets = _series(4)
    other = make_ct_series(make_patient_phi(0, 7), 4, 48, 48)[2]
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "ImagePositionPatient",
        "PixelSpacing",
    ):
        setattr(other, keyword, getattr(datasets[2], keyword))
    datasets[2] = other
    report = _check(tmp_path, datasets)
    [finding] = _of(report, "geometry")
    assert "48x48 differs from the series' 32x32" in finding.message
    assert finding.instance == "instance 3 of 4"


def test_slice_gaps_wider_than_thickness_warn(tmp_path: Path) -> None:
    datasets = _series(4)
    for ds in datasets:
        ds.SliceThickness = 1.0
    report = _check(tmp_path, datasets)
    assert report.decision is Decision.APPROVE
    assert any("Slice Thickness" in f.message for f in report.findings)


def test_instance_number_duplicates_and_gaps_warn(tmp_path: Path) -> None:
    datasets = _series(5)
    datasets[1].InstanceNumber = datasets[0].InstanceNumber
    datasets[4].InstanceNumber = 40
    report = _check(tmp_path, datasets)
    found = [f for f in report.findings if f.check == "instance-number"]
    assert {f.severity for f in found} == {Severity.WARNING}
    assert any("share one Instance Number" in f.message for f in found)
    assert any("missing from the sequence" in f.message for f in found)
    assert report.decision is Decision.APPROVE


def test_scrubbing_keeps_names_and_drops_values() -> None:
    line = (
        "Error - Value invalid for this VR - (0x0010,0x0020) LO Patient ID  LO [1] = "
        "<SECRET123> - Length invalid for this VR = 80, expected <= 64"
    )
    assert "SECRET123" not in scrub_dciodvfy(line)
    assert "(0x0010,0x0020) LO Patient ID" in scrub_dciodvfy(line)
    assert "<value>" in scrub_dciodvfy(line)
    tricky = "Error - Value invalid - LT [1] = <a <SECRET> b> - Character invalid"
    assert "SECRET" not in scrub_dciodvfy(tricky)
    assert scrub_dciodvfy("Error - Value dubious - LT [1] = <line one SECRET") == (
        "Error - Value dubious - LT [1] = <value>"
    )
    kept = "Missing attribute Type 1 Required Element=<Modality> Module=<GeneralSeries>"
    assert scrub_dciodvfy(kept) == kept
    char = "Value invalid - DA [1] = <19AB0101> - Character invalid for this VR = 'A' (0x41)"
    assert "19AB" not in scrub_dciodvfy(char) and "'A'" not in scrub_dciodvfy(char)
    assert "Jane" not in scrub_dciodvfy('Warning - bad value "Jane Doe" of attribute <Name>')
    output = (
        "CTImage\n"
        "(0x0009,0x102a)  ?  - Warning - Unrecognized tag - assuming explicit VR OK\n"
        f"Error - {kept}\n"
    )
    findings = parse_dciodvfy(output, "instance 1 of 1")
    assert [f.severity for f in findings] == [Severity.WARNING, Severity.ERROR]
    assert findings[0].message.startswith("(0x0009,0x102a) Unrecognized tag")


def test_missing_dciodvfy_is_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    [report] = check_instance_files(_write(tmp_path / "in", _series(3)))
    found = [f for f in report.findings if f.check == "dciodvfy"]
    assert len(found) == 1 and found[0].severity is Severity.WARNING
    assert "dciodvfy not available: install Debian dicom3tools" in found[0].message
    assert report.decision is Decision.APPROVE


@needs_dciodvfy
def test_dciodvfy_errors_on_a_broken_instance_are_scrubbed(tmp_path: Path) -> None:
    datasets = _series(3)
    del datasets[1].Modality
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values
        datasets[2].PatientID = "PLANTEDVALUE" * 6  # too long for LO: dciodvfy quotes it
        datasets[2].StudyDate = "19AB0101"
    report = _check(tmp_path, datasets, verify=True)
    errors = _of(report, "dciodvfy")
    modality = [f for f in errors if "Element=<Modality>" in f.message]
    assert [f.instance for f in modality] == ["instance 2 of 3"]
    assert any("Patient ID" in f.message for f in errors)
    text = " ".join(f.message for f in report.findings)
    assert "PLANTEDVALUE" not in text and "19AB0101" not in text
    assert report.decision is Decision.QUARANTINE
    assert any(r.startswith("dciodvfy:") for r in report.reasons)


def test_decide() -> None:
    assert decide([]) == (Decision.APPROVE, [])
    warning = Finding(Severity.WARNING, "dciodvfy", "w")
    assert decide([warning]) == (Decision.APPROVE, [])
    decision, reasons = decide([warning, Finding(Severity.ERROR, "geometry", "e")])
    assert decision is Decision.QUARANTINE and len(reasons) == 1


def test_the_job_records_findings_on_an_ingested_node(tmp_path: Path) -> None:
    datasets = _series(5)
    del datasets[2]  # a missing slice
    _write(tmp_path / "in", datasets)
    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    ingest(node, [tmp_path / "in"], jobs=1)
    with node.open_catalog() as catalog:
        [series] = catalog.find_series()
        uid = series.series_instance_uid
        result = conformance_series_job(JobContext(catalog.url, str(node.blob_root.resolve())), uid)
        record = CurationRecords(catalog).get(uid)
    assert result["decision"] == "quarantine"
    assert record.conformance is not None
    geometry = [f for f in record.conformance if f["check"] == "geometry"]
    assert any("missing slices" in f["message"] for f in geometry)
    instances = {f["instance"] for f in geometry}
    assert all(i and i.startswith(("1.", "2.")) for i in instances)  # named by SOP UID
    assert record.decision is Decision.QUARANTINE
