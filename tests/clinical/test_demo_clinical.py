"""The demo: clinical records of demo/clinical land on the persons of the demo images."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from biobank.catalog.omop import CLINICAL_RECORD, IMAGE_OCCURRENCE, MEASUREMENT, PERSON
from biobank.catalog.schema import PATIENT
from biobank.cli.main import app
from biobank.ingest.node import open_node

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
FILES = {"prostate": 1, "prostate_followup": 0, "breast": 0}
"""Demo CSV per form, with how many records are deliberately invalid."""


def test_make_clinical_is_deterministic(tmp_path: Path) -> None:
    before = {name: (DEMO / "clinical" / f"{name}.csv").read_bytes() for name in FILES}
    result = subprocess.run(
        [sys.executable, str(DEMO / "make_clinical.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    after = {name: (DEMO / "clinical" / f"{name}.csv").read_bytes() for name in FILES}
    assert after == before, "demo/clinical is stale: run demo/make_clinical.py and commit it"


def test_demo_clinical_records_match_the_demo_images(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert runner.invoke(app, ["init", "--home", str(home), "--site", "demo"]).exit_code == 0
    ingest = runner.invoke(app, ["ingest", str(DEMO / "sample"), "--home", str(home)])
    assert ingest.exit_code == 0, ingest.output
    for form, invalid in FILES.items():
        path = DEMO / "clinical" / f"{form}.csv"
        result = runner.invoke(
            app, ["clinical", "import", str(path), "--form", form, "--home", str(home), "--json"]
        )
        assert result.exit_code == (1 if invalid else 0), result.output
        report = json.loads(result.stdout)
        with path.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert report["rejected"] == invalid and report["created"] == len(rows) - invalid

    node = open_node(home)
    with node.open_catalog() as catalog, catalog._reading("demo test") as conn:
        pseudonyms = set(conn.execute(select(PATIENT.c.patient_pseudonym)).scalars())
        series = func.count(IMAGE_OCCURRENCE.c.image_occurrence_id)
        images = dict(
            conn.execute(
                select(PERSON.c.person_source_value, series)
                .join(IMAGE_OCCURRENCE, IMAGE_OCCURRENCE.c.person_id == PERSON.c.person_id)
                .group_by(PERSON.c.person_source_value)
            ).all()
        )  # fmt: skip
        clinical = dict(
            conn.execute(
                select(CLINICAL_RECORD.c.patient_pseudonym, func.count())
                .group_by(CLINICAL_RECORD.c.patient_pseudonym)
            ).all()
        )  # fmt: skip
        measured = set(
            conn.execute(
                select(PERSON.c.person_source_value).join(
                    MEASUREMENT, MEASUREMENT.c.person_id == PERSON.c.person_id
                )
            ).scalars()
        )
    # the two patients of demo/sample with a name folder (the ultrasound has no clinical data)
    both = {p for p in pseudonyms if p in images and p in clinical}
    assert len(both) == 2, (pseudonyms, images, clinical)
    assert all(images[p] == 2 for p in both)  # a CT and an MR series each
    assert sorted(clinical[p] for p in both) == [1, 3]  # breast; prostate + two follow-ups
    assert both <= measured  # OMOP measurements (PSA, receptors …) on the same persons
