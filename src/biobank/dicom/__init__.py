"""DICOM nouns shared by the services: synthetic test data and (later) readers and writers."""

from biobank.dicom.json import header_dict, header_json
from biobank.dicom.synthetic import (
    CorpusSummary,
    PlantedPHI,
    PlantedStudy,
    make_ct_series,
    make_mr_series,
    make_patient_phi,
    write_corpus,
)

__all__ = [
    "CorpusSummary",
    "PlantedPHI",
    "PlantedStudy",
    "header_dict",
    "header_json",
    "make_ct_series",
    "make_mr_series",
    "make_patient_phi",
    "write_corpus",
]
