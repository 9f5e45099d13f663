"""Shared fixtures: a fixed site key, profiles, real test files (offline) and a de-id helper."""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file

from biobank.deid import (
    DeidRecord,
    PatientIdentity,
    Profile,
    Pseudonymizer,
    SiteKey,
    builtin_profile,
    deidentify_bytes,
    encode_dataset,
)

KEY_BYTES = bytes(range(32))
OTHER_KEY_BYTES = bytes(range(1, 33))


@pytest.fixture(scope="session")
def site_key() -> SiteKey:
    return SiteKey(KEY_BYTES)


@pytest.fixture(scope="session")
def pseudonymizer(site_key: SiteKey) -> Pseudonymizer:
    return Pseudonymizer(site_key)


@pytest.fixture(scope="session")
def research() -> Profile:
    return builtin_profile("research")


@pytest.fixture(scope="session")
def basic() -> Profile:
    return builtin_profile("basic")


def testdata(name: str) -> Path:
    """A file of pydicom's or pydicom-data's test set, offline (never downloads)."""
    found = get_testdata_file(name, download=False)
    if found is None:
        root = Path(str(resources.files("pydicom").joinpath("data")))
        matches = sorted(root.rglob(name))
        if not matches:
            raise FileNotFoundError(f"test file {name} is not installed")
        return matches[0]
    return Path(str(found))


def deid_data(name: str) -> Path:
    """A file of the deid-data package (MIT), found by name."""
    root = Path(str(resources.files("deid_data")))
    matches = sorted(root.rglob(name))
    if not matches:
        raise FileNotFoundError(f"deid-data file {name} is not installed")
    return matches[0]


@dataclass
class Deidentified:
    dataset: Dataset
    record: DeidRecord
    identity: PatientIdentity
    data: bytes


class NoText:
    """A text detector that finds nothing (for tests that are not about OCR)."""

    def detect(self, image: object) -> list[tuple[int, int, int, int]]:
        return []


def to_bytes(ds: Dataset) -> bytes:
    """Encode a dataset built in a test (adds file meta when missing)."""
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def run_deid(
    source: Dataset | bytes | Path,
    profile: Profile,
    pseudonymizer: Pseudonymizer,
    **kwargs: object,
) -> Deidentified:
    """De-identify a dataset, file bytes or a path through the public bytes API."""
    if isinstance(source, Path):
        data = source.read_bytes()
    elif isinstance(source, Dataset):
        data = to_bytes(source)
    else:
        data = source
    out = deidentify_bytes(data, profile, pseudonymizer, **kwargs)  # type: ignore[arg-type]
    return Deidentified(dcmread(io.BytesIO(out.data)), out.record, out.identity, out.data)


__all__ = [
    "NoText",
    "deid_data",
    "encode_dataset",
    "run_deid",
    "testdata",
    "to_bytes",
]
