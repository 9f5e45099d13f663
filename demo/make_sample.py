"""Regenerate demo/sample: the data `make run` de-identifies.

- Two synthetic patients (CT and MR series, 128x128) from biobank.dicom.synthetic, with
  realistic identifiers planted everywhere a de-identifier must look, in folders named after
  the patients (as PACS exports often are).
- deid-data's GREYSCALE_IMAGE.dcm (MIT): an ultrasound with a burned-in name, MRN and date,
  to show burned-in text being masked.
- A text file, to show that a non-DICOM input is reported, not silently skipped.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi

OUT = Path(__file__).parent / "sample"


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for index in range(2):
        phi = make_patient_phi(index, seed=2026)
        folder = OUT / f"{phi.family_name}_{phi.given_name}_{phi.patient_id}"
        folder.mkdir(parents=True)
        series = make_ct_series(phi, 6, rows=128, cols=128) + make_mr_series(phi, 6, rows=128, cols=128)
        for n, ds in enumerate(series):
            ds.save_as(folder / f"IM{n:04d}.dcm", enforce_file_format=True)
    us = Path(str(resources.files("deid_data"))) / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    (OUT / "ultrasound").mkdir()
    shutil.copy(us, OUT / "ultrasound" / "US0001.dcm")
    (OUT / "export-notes.txt").write_text("Exported from PACS for the research project.\n")


if __name__ == "__main__":
    main()
