"""What the catalogue indexes of an instance: the main attributes, typed, and the header."""

from __future__ import annotations

import datetime as dt

from pydicom import Dataset

from biobank.catalog import InstanceRecord
from biobank.dicom.json import header_json
from biobank.dicom.values import encodings_of, read_int, read_strings

_ABSENT = -(2**31)


def _text(ds: Dataset, tag: int, vr: str, encodings: list[str], limit: int = 0) -> str | None:
    values = read_strings(ds, tag, vr, encodings)
    text = "\\".join(values).strip() if values else ""
    if not text:
        return None
    return text[:limit] if limit else text


def _date(ds: Dataset, tag: int) -> dt.date | None:
    """A DA value as a date; None when absent or not a valid date (the header keeps it)."""
    values = read_strings(ds, tag, "DA", [])
    value = values[0].strip() if values else ""
    if len(value) == 10 and value[4] == "." and value[7] == ".":  # ACR-NEMA style
        value = value.replace(".", "")
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def _int(ds: Dataset, tag: int) -> int | None:
    value = read_int(ds, tag, _ABSENT)
    return None if value == _ABSENT or not -(2**31) < value < 2**31 else value


#: Series-level QIDO-RS return attributes without a column of their own (PS3.18 Table
#: 6.7.1-2a): Performed Procedure Step Start Date and Time, Request Attributes Sequence.
SERIES_EXTRA = (0x00400244, 0x00400245, 0x00400275)


def _series_extra(ds: Dataset) -> str | None:
    """The :data:`SERIES_EXTRA` attributes of ``ds`` as a DICOM JSON object (None if none)."""
    present = [tag for tag in SERIES_EXTRA if tag in ds]
    if not present:
        return None
    subset = Dataset()
    for tag in present:
        subset[tag] = ds[tag]
    return header_json(subset)


def instance_record(
    ds: Dataset,
    *,
    transfer_syntax_uid: str,
    blob_digest: str,
    blob_size: int,
    header_json: str,
    deid_record_json: str | None,
) -> InstanceRecord:
    """The catalogue's record of the stored instance ``ds`` (already de-identified)."""
    enc = encodings_of(ds)
    uid = read_strings
    return InstanceRecord(
        patient_pseudonym=(_text(ds, 0x00100020, "LO", enc, 64) or ""),
        study_instance_uid=uid(ds, 0x0020000D, "UI", [])[0],
        series_instance_uid=uid(ds, 0x0020000E, "UI", [])[0],
        sop_instance_uid=uid(ds, 0x00080018, "UI", [])[0],
        sop_class_uid=uid(ds, 0x00080016, "UI", [])[0],
        blob_digest=blob_digest,
        blob_size=blob_size,
        header_json=header_json,
        patient_name=_text(ds, 0x00100010, "PN", enc),
        patient_sex=_text(ds, 0x00100040, "CS", enc, 16),
        patient_birth_date=_date(ds, 0x00100030),
        study_date=_date(ds, 0x00080020),
        study_time=_text(ds, 0x00080030, "TM", enc, 32),
        accession_number=_text(ds, 0x00080050, "SH", enc, 64),
        study_id=_text(ds, 0x00200010, "SH", enc, 64),
        study_description=_text(ds, 0x00081030, "LO", enc),
        referring_physician_name=_text(ds, 0x00080090, "PN", enc),
        modality=_text(ds, 0x00080060, "CS", enc, 16),
        series_number=_int(ds, 0x00200011),
        series_description=_text(ds, 0x0008103E, "LO", enc),
        body_part_examined=_text(ds, 0x00180015, "CS", enc, 64),
        series_date=_date(ds, 0x00080021),
        series_time=_text(ds, 0x00080031, "TM", enc, 32),
        protocol_name=_text(ds, 0x00181030, "LO", enc),
        manufacturer=_text(ds, 0x00080070, "LO", enc),
        manufacturer_model_name=_text(ds, 0x00081090, "LO", enc),
        instance_number=_int(ds, 0x00200013),
        transfer_syntax_uid=transfer_syntax_uid or None,
        rows=_int(ds, 0x00280010),
        columns=_int(ds, 0x00280011),
        number_of_frames=_int(ds, 0x00280008),
        bits_allocated=_int(ds, 0x00280100),
        extra_attributes=_series_extra(ds),
        deid_record_json=deid_record_json,
    )


__all__ = ["instance_record"]
