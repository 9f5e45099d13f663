"""Write the demo clinical records (demo/clinical/*.csv) that go with the demo images.

The two patients of ``demo/sample`` get clinical records under the same PatientID and
IssuerOfPatientID as their DICOM files, read here with pydicom, so that on import their
records get the same pseudonym as their images and land on the same OMOP person:

- the man (``VAN DEN BERGH_JÖRG_…``) in ``prostate.csv`` (his MR is the staging MRI) and
  ``prostate_followup.csv``;
- the woman (``KOWALCZYK_ÅSLAUG_…``) in ``breast.csv`` (a prostate record for her would be
  nonsense, and would teach nothing).

Around them, invented patients (IDs that exist nowhere) so that summaries and outliers have
something to show: one of them has a PSA far above the others (an outlier) and one record of
``prostate.csv`` is deliberately invalid (a PI-RADS of 6, a Gleason 4+3 graded ISUP 2 and a
treatment before its diagnosis) to show the import report. Everything is deterministic: the
same files on every run.

    .venv/bin/python demo/make_clinical.py [OUTPUT_FOLDER]
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "sample"
OUT = HERE / "clinical"
SEED = 20241104

PROSTATE_COLUMNS = [
    "patient_id",
    "issuer_of_patient_id",
    "sex",
    "birth_date",
    "diagnosis_date",
    "histology",
    "psa",
    "psa_date",
    "mri_date",
    "prostate_volume",
    "pirads",
    "biopsy_date",
    "biopsy_type",
    "cores_taken",
    "cores_positive",
    "gleason_primary",
    "gleason_secondary",
    "gleason_score",
    "isup_grade",
    "ct",
    "cn",
    "cm",
    "treatment_type",
    "treatment_start_date",
    "adt_with_treatment",
    "surgical_margin",
]
FOLLOWUP_COLUMNS = [
    "patient_id",
    "issuer_of_patient_id",
    "followup_date",
    "vital_status",
    "death_date",
    "cause_of_death",
    "disease_status",
    "progression_date",
    "psa",
]
BREAST_COLUMNS = [
    "patient_id",
    "issuer_of_patient_id",
    "sex",
    "birth_date",
    "menopausal_status",
    "diagnosis_date",
    "histology",
    "laterality",
    "birads",
    "tumour_size",
    "grade",
    "er_status",
    "er_percent",
    "pr_status",
    "pr_percent",
    "her2_ihc",
    "her2_status",
    "ki67",
    "ct",
    "cn",
    "cm",
    "neoadjuvant_chemotherapy",
    "neoadjuvant_start_date",
    "surgery",
    "surgery_date",
    "radiotherapy",
    "radiotherapy_start_date",
    "followup_months",
    "relapse",
    "relapse_months",
    "vital_status",
    "cause_of_death",
]

ISUP = {(3, 3): 1, (3, 4): 2, (4, 3): 3, (4, 4): 4, (3, 5): 4, (5, 3): 4}


@dataclass(frozen=True)
class DemoPatient:
    """A patient of demo/sample, as its DICOM files name them."""

    folder: str
    patient_id: str
    issuer: str
    sex: str
    birth_date: dt.date
    studies: dict[str, dt.date]
    """Modality → study date."""


def _date(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def read_demo_patients(sample: Path = SAMPLE) -> list[DemoPatient]:
    """The patients of the ``<NAME>_<MRN>`` folders of demo/sample, sorted by folder."""
    found = []
    for folder in sorted(p for p in sample.iterdir() if p.is_dir() and "_" in p.name):
        studies: dict[str, dt.date] = {}
        identity: tuple[str, str, str, dt.date] | None = None
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            identity = (
                str(ds.PatientID),
                str(ds.get("IssuerOfPatientID", "")),
                str(ds.PatientSex),
                _date(ds.PatientBirthDate),
            )
            studies.setdefault(str(ds.Modality), _date(ds.StudyDate))
        if identity is None:
            continue
        if not folder.name.endswith("_" + identity[0]):
            raise SystemExit(f"{folder.name}: the folder's MRN is not the files' PatientID")
        found.append(DemoPatient(folder.name, *identity, studies))
    return found


def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _prostate_row(
    patient_id: str,
    issuer: str,
    birth: dt.date,
    diagnosis: dt.date,
    rng: random.Random,
    *,
    psa: float | None = None,
    mri: dt.date | None = None,
    metastatic: bool = False,
) -> dict[str, str]:
    primary, secondary = rng.choice([(3, 3), (3, 4), (3, 4), (4, 3), (4, 4), (3, 5)])
    if metastatic:
        primary, secondary = 4, 5
    score = primary + secondary
    isup = ISUP.get((primary, secondary), 5)
    psa_value = psa if psa is not None else round(rng.lognormvariate(2.0, 0.45), 1)
    mri_date = mri or diagnosis - dt.timedelta(days=rng.randint(20, 40))
    biopsy = mri_date + dt.timedelta(days=rng.randint(7, 14))
    cores = rng.choice([12, 14, 16])
    treatment = rng.choice(
        [
            "active_surveillance",
            "radical_prostatectomy",
            "radical_prostatectomy",
            "external_beam_radiotherapy",
            "brachytherapy",
        ]
    )
    if isup == 1:
        treatment = "active_surveillance"
    if metastatic:
        treatment = "adt"
    with_adt = treatment in ("external_beam_radiotherapy", "brachytherapy", "radical_prostatectomy")
    return {
        "patient_id": patient_id,
        "issuer_of_patient_id": issuer,
        "sex": "male",
        "birth_date": _iso(birth),
        "diagnosis_date": _iso(diagnosis),
        "histology": "acinar_adenocarcinoma",
        "psa": f"{psa_value:g}",
        "psa_date": _iso(mri_date - dt.timedelta(days=rng.randint(10, 30))),
        "mri_date": _iso(mri_date),
        "prostate_volume": str(rng.randint(25, 80)),
        "pirads": str(5 if metastatic else rng.choice([3, 4, 4, 5])),
        "biopsy_date": _iso(biopsy),
        "biopsy_type": rng.choice(["targeted", "both", "both"]),
        "cores_taken": str(cores),
        "cores_positive": str(rng.randint(1, cores // 2)),
        "gleason_primary": str(primary),
        "gleason_secondary": str(secondary),
        "gleason_score": str(score),
        "isup_grade": str(isup),
        "ct": "T3b" if metastatic else rng.choice(["T1c", "T2a", "T2b", "T2c", "T3a"]),
        "cn": "N1" if metastatic else "N0",
        "cm": "M1b" if metastatic else "M0",
        "treatment_type": treatment,
        "treatment_start_date": _iso(diagnosis + dt.timedelta(days=rng.randint(21, 60))),
        "adt_with_treatment": _flag(rng.random() < 0.3) if with_adt else "",
        "surgical_margin": rng.choice(["R0", "R0", "R1"])
        if treatment == "radical_prostatectomy"
        else "",
    }


def prostate_records(man: DemoPatient, rng: random.Random) -> list[dict[str, str]]:
    """The demo man's baseline record, invented patients, an outlier and an invalid record."""
    mri = man.studies.get("MR")
    rows = [
        {
            "patient_id": man.patient_id,
            "issuer_of_patient_id": man.issuer,
            "sex": "male",
            "birth_date": _iso(man.birth_date),
            "diagnosis_date": _iso(mri + dt.timedelta(days=21) if mri else None),
            "histology": "acinar_adenocarcinoma",
            "psa": "8.4",
            "psa_date": _iso(man.studies.get("CT")),
            "mri_date": _iso(mri),
            "prostate_volume": "42",
            "pirads": "4",
            "biopsy_date": _iso(mri + dt.timedelta(days=14) if mri else None),
            "biopsy_type": "both",
            "cores_taken": "14",
            "cores_positive": "5",
            "gleason_primary": "3",
            "gleason_secondary": "4",
            "gleason_score": "7",
            "isup_grade": "2",
            "ct": "T2c",
            "cn": "N0",
            "cm": "M0",
            "treatment_type": "radical_prostatectomy",
            "treatment_start_date": _iso(mri + dt.timedelta(days=71) if mri else None),
            "adt_with_treatment": "no",
            "surgical_margin": "R0",
        }
    ]
    for n in range(10):
        birth = dt.date(rng.randint(1940, 1965), rng.randint(1, 12), rng.randint(1, 28))
        diagnosis = dt.date(rng.randint(2019, 2024), rng.randint(1, 12), rng.randint(1, 28))
        metastatic = n == 6
        rows.append(
            _prostate_row(
                f"DEMO-PR-{n + 1:03d}",
                man.issuer,
                birth,
                diagnosis,
                rng,
                psa=486.0 if metastatic else None,
                metastatic=metastatic,
            )
        )
    invalid = _prostate_row(
        "DEMO-PR-099", man.issuer, dt.date(1958, 3, 14), dt.date(2023, 6, 12), rng
    )
    invalid |= {
        "pirads": "6",  # PI-RADS goes to 5
        "gleason_primary": "4",
        "gleason_secondary": "3",
        "gleason_score": "7",
        "isup_grade": "2",  # 4+3 is grade group 3
        "treatment_type": "external_beam_radiotherapy",
        "treatment_start_date": "2023-05-02",  # before the diagnosis
        "adt_with_treatment": "yes",
        "surgical_margin": "",
    }
    rows.insert(8, invalid)
    return rows


def followup_records(
    man: DemoPatient, prostate: list[dict[str, str]], rng: random.Random
) -> list[dict[str, str]]:
    """Follow-up visits: the demo man twice, a few invented patients, one death."""
    baseline = {row["patient_id"]: row for row in prostate}
    rows: list[dict[str, str]] = []

    def visit(patient_id: str, day: dt.date, **values: str) -> None:
        row = dict.fromkeys(FOLLOWUP_COLUMNS, "")
        row |= {
            "patient_id": patient_id,
            "issuer_of_patient_id": baseline[patient_id]["issuer_of_patient_id"],
            "followup_date": _iso(day),
            "vital_status": "alive",
        }
        row |= values
        rows.append(row)

    diagnosis = dt.date.fromisoformat(baseline[man.patient_id]["diagnosis_date"])
    for days, psa in ((150, "0.03"), (330, "0.02")):
        day = diagnosis + dt.timedelta(days=days)
        visit(man.patient_id, day, disease_status="no_evidence_of_disease", psa=psa)
    for patient_id in ("DEMO-PR-001", "DEMO-PR-002", "DEMO-PR-004"):
        start = dt.date.fromisoformat(baseline[patient_id]["diagnosis_date"])
        visit(
            patient_id,
            start + dt.timedelta(days=rng.randint(170, 200)),
            disease_status="stable_disease",
            psa=f"{round(rng.uniform(0.05, 6.0), 2):g}",
        )
    metastatic = "DEMO-PR-007"
    start = dt.date.fromisoformat(baseline[metastatic]["diagnosis_date"])
    progression = start + dt.timedelta(days=240)
    visit(
        metastatic,
        start + dt.timedelta(days=250),
        disease_status="metastatic_progression",
        progression_date=_iso(progression),
        psa="212",
    )
    visit(
        metastatic,
        start + dt.timedelta(days=420),
        vital_status="deceased",
        death_date=_iso(start + dt.timedelta(days=410)),
        cause_of_death="prostate_cancer",
        disease_status="metastatic_progression",
        progression_date=_iso(progression),
    )
    return rows


def breast_records(woman: DemoPatient, rng: random.Random) -> list[dict[str, str]]:
    """The demo woman's record (her chest CT found the tumour) and three invented patients."""
    ct = woman.studies.get("CT") or dt.date(2024, 1, 29)
    diagnosis = ct + dt.timedelta(days=11)
    rows = [
        {
            "patient_id": woman.patient_id,
            "issuer_of_patient_id": woman.issuer,
            "sex": "female",
            "birth_date": _iso(woman.birth_date),
            "menopausal_status": "postmenopausal",
            "diagnosis_date": _iso(diagnosis),
            "histology": "invasive_ductal_nst",
            "laterality": "left",
            "birads": "5",
            "tumour_size": "23",
            "grade": "2",
            "er_status": "positive",
            "er_percent": "90",
            "pr_status": "positive",
            "pr_percent": "40",
            "her2_ihc": "1+",
            "her2_status": "negative",
            "ki67": "18",
            "ct": "T2",
            "cn": "N0",
            "cm": "M0",
            "neoadjuvant_chemotherapy": "no",
            "neoadjuvant_start_date": "",
            "surgery": "breast_conserving",
            "surgery_date": _iso(diagnosis + dt.timedelta(days=32)),
            "radiotherapy": "yes",
            "radiotherapy_start_date": _iso(diagnosis + dt.timedelta(days=73)),
            "followup_months": "18",
            "relapse": "no",
            "relapse_months": "",
            "vital_status": "alive",
            "cause_of_death": "",
        }
    ]
    for n in range(3):
        start = dt.date(rng.randint(2019, 2023), rng.randint(1, 12), rng.randint(1, 28))
        neoadjuvant = n == 1
        er = rng.choice([0, 60, 95])
        pr = 0 if er == 0 else rng.choice([5, 30, 80])
        followup = rng.randint(12, 48)
        relapse = n == 2
        rows.append(
            {
                "patient_id": f"DEMO-BR-{n + 1:03d}",
                "issuer_of_patient_id": woman.issuer,
                "sex": "female",
                "birth_date": _iso(
                    dt.date(rng.randint(1945, 1980), rng.randint(1, 12), rng.randint(1, 28))
                ),
                "menopausal_status": rng.choice(["premenopausal", "postmenopausal"]),
                "diagnosis_date": _iso(start),
                "histology": rng.choice(["invasive_ductal_nst", "invasive_lobular"]),
                "laterality": rng.choice(["left", "right"]),
                "birads": rng.choice(["4C", "5"]),
                "tumour_size": str(rng.randint(8, 45)),
                "grade": str(rng.randint(1, 3)),
                "er_status": "positive" if er else "negative",
                "er_percent": str(er),
                "pr_status": "positive" if pr else "negative",
                "pr_percent": str(pr),
                "her2_ihc": "3+" if neoadjuvant else "0",
                "her2_status": "positive" if neoadjuvant else "negative",
                "ki67": str(rng.randint(5, 60)),
                "ct": rng.choice(["T1c", "T2"]),
                "cn": rng.choice(["N0", "N1"]),
                "cm": "M0",
                "neoadjuvant_chemotherapy": _flag(neoadjuvant),
                "neoadjuvant_start_date": _iso(start + dt.timedelta(days=20))
                if neoadjuvant
                else "",
                "surgery": rng.choice(["breast_conserving", "mastectomy"]),
                "surgery_date": _iso(start + dt.timedelta(days=180 if neoadjuvant else 35)),
                "radiotherapy": "yes",
                "radiotherapy_start_date": _iso(
                    start + dt.timedelta(days=230 if neoadjuvant else 80)
                ),
                "followup_months": str(followup),
                "relapse": _flag(relapse),
                "relapse_months": str(followup - 4) if relapse else "",
                "vital_status": "alive",
                "cause_of_death": "",
            }
        )
    return rows


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row.get(name, "") for name in columns})


def main(out: Path = OUT) -> None:
    """Write {prostate,prostate_followup,breast}.csv into ``out`` (default demo/clinical)."""
    patients = read_demo_patients()
    men = [p for p in patients if p.sex == "M"]
    women = [p for p in patients if p.sex == "F"]
    if not men or not women:
        raise SystemExit("demo/sample must hold a man and a woman (run demo/make_sample.py)")
    rng = random.Random(SEED)
    out.mkdir(parents=True, exist_ok=True)
    prostate = prostate_records(men[0], rng)
    files = {
        "prostate.csv": (PROSTATE_COLUMNS, prostate),
        "prostate_followup.csv": (FOLLOWUP_COLUMNS, followup_records(men[0], prostate, rng)),
        "breast.csv": (BREAST_COLUMNS, breast_records(women[0], rng)),
    }
    for name, (columns, rows) in files.items():
        _write(out / name, columns, rows)
        print(f"{out / name}: {len(rows)} records")  # noqa: T201 - a script's output


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
