"""Cohort search benchmark: five representative cohort counts over 100,000 synthetic patients.

    python bench/cohort.py [--patients 100000] [--runs 30] [--backends sqlite,postgresql]
                           [--workdir DIR] [--json F]

A synthetic catalogue is written with bulk inserts (``executemany`` on SQLite, ``COPY`` on
PostgreSQL), straight into a migrated catalogue (``Catalog.open``): ``person``,
``condition_occurrence`` (prostate, breast, lung, colorectal cancer, ages ~N(65, 10)),
``measurement`` (PSA log-normal, ISUP grade, Gleason score, PI-RADS, PD-L1), ``observation``
(HER2 status), one ``procedure_occurrence`` per study and one ``image_occurrence`` per series
(1–4 studies per patient, 3–8 series per study), and the catalogue rows the compiler joins
(``patient``, ``study``, ``series``, ``series_curation`` with label, plane and decision).
A bulk load bypasses the write paths that keep the compiler's ``cohort_series`` table, so it
is then filled by :func:`biobank.catalog.cohort_series.rebuild` (what migration 0006 and
``biobank omop sync`` run), inside the timed load. Then each query runs ``--runs`` times
(after one warm-up) through ``biobank.datasets.service.count`` — parsing, compiling, the one
SQL statement, count protection — and the p50/p95 latencies are printed against the target
(p95 < 200 ms).

SQLite: a file in the work directory. PostgreSQL: a scratch database ``bb_bench_cohort`` on
127.0.0.1:5432 (user postgres), dropped afterwards. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from sqlalchemy import create_engine, text  # noqa: E402

from biobank.catalog import Catalog, cohort_series, sqlite_url  # noqa: E402
from biobank.datasets import count, parse_query  # noqa: E402

TARGET_P95_MS = 200.0
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_DATABASE = "bb_bench_cohort"
NOW = "2026-01-01 00:00:00"

# -- the five queries ------------------------------------------------------------------------


def _or(key: str, type_: str, value: Any) -> dict[str, Any]:
    return {
        "operand": "OR",
        "children": [{"key": key, "type": type_, "system": "", "value": value}],
    }


def _lens(*groups: dict[str, Any], stratify: Sequence[str] = ()) -> dict[str, Any]:
    query: dict[str, Any] = {
        "id": "bench",
        "ast": {"operand": "OR", "children": [{"operand": "AND", "children": list(groups)}]},
    }
    if stratify:
        query["stratify"] = list(stratify)
    return query


QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "men-isup3-t2w-axial": (
        "men 50–70 at diagnosis, ISUP ≥ 3, with a T2W axial MR series",
        _lens(
            _or("gender", "EQUALS", "male"),
            _or("age_at_diagnosis", "BETWEEN", {"min": 50, "max": 70}),
            _or("prostate.isup_grade", "GREATER_THAN", 2),
            _or("series_label", "EQUALS", "T2W"),
            _or("orientation", "EQUALS", "axial"),
            _or("modality", "EQUALS", "MR"),
        ),
    ),
    "eucaim-breast-mr": (
        "EUCAIM keys: female, breast cancer (SNOMED), MR of the breast, Siemens or Philips",
        _lens(
            _or("SNOMEDCT263495000", "EQUALS", "SNOMEDCT248152002"),
            _or("SNOMEDCT439401001", "EQUALS", "SNOMEDCT254837009"),
            _or("RID10311", "EQUALS", "RID10312"),
            _or("SNOMEDCT123037004", "EQUALS", "SNOMEDCT76752008"),
            {
                "operand": "OR",
                "children": [
                    {"key": "C25392", "type": "EQUALS", "value": "Siemens"},
                    {"key": "C25392", "type": "EQUALS", "value": "Philips"},
                ],
            },
        ),
    ),
    "psa-pirads-by-age": (
        "PSA > 10 and PI-RADS ≥ 4, stratified by age decade",
        _lens(
            _or("prostate.psa", "GREATER_THAN", 10),
            _or("prostate.pirads", "BETWEEN", {"min": 4, "max": 5}),
            stratify=["age_decade"],
        ),
    ),
    "ct-chest-over-60": (
        "approved CT of the chest at age ≥ 60 (series-level criteria only)",
        _lens(
            _or("modality", "EQUALS", "CT"),
            _or("body_part", "EQUALS", "CHEST"),
            _or("age_at_imaging", "BETWEEN", {"min": 60}),
            _or("curation_decision", "EQUALS", "approve"),
        ),
    ),
    "beacon-c61-gleason": (
        "Beacon v2 filters: diagnosis C61 (as submitted), Gleason 4+3, exists DWI",
        {
            "meta": {"apiVersion": "v2.0"},
            "query": {
                "filters": [
                    {"id": "diagnosis", "operator": "=", "value": "C61"},
                    {"id": "prostate.gleason_score", "operator": "=", "value": "4+3"},
                    {"id": "series_label", "operator": "=", "value": "DWI"},
                ],
                "requestedGranularity": "count",
            },
        },
    ),
}

# -- the synthetic catalogue -----------------------------------------------------------------

DIAGNOSES = (  # (share, concept id, SNOMED code, submitted code, name)
    (0.35, 4163261, "399068003", "C61", "prostate"),
    (0.25, 4112853, "254837009", "C50.9", "breast"),
    (0.25, 4115276, "93880001", "C34.9", "lung"),
    (0.15, 4180790, "363406005", "C18.9", "colorectal"),
)
MODALITY = {
    "prostate": (("MR", 0.8), ("CT", 0.2)),
    "breast": (("MR", 0.5), ("MG", 0.3), ("US", 0.2)),
    "lung": (("CT", 0.9), ("PT", 0.1)),
    "colorectal": (("CT", 0.6), ("MR", 0.4)),
}
BODY_PART = {
    "prostate": (("PROSTATE", 0.7), ("PELVIS", 0.3)),
    "breast": (("BREAST", 1.0),),
    "lung": (("CHEST", 0.9), ("ABDOMEN", 0.1)),
    "colorectal": (("ABDOMEN", 0.5), ("PELVIS", 0.5)),
}
MANUFACTURERS = (
    ("SIEMENS", 0.35),
    ("GE MEDICAL SYSTEMS", 0.3),
    ("Philips Medical Systems", 0.25),
    ("TOSHIBA", 0.1),
)
MR_LABELS = (
    ("T2W", 0.35),
    ("DWI", 0.2),
    ("ADC", 0.15),
    ("T1W", 0.15),
    ("DCE", 0.1),
    ("localizer", 0.05),
)
PLANES = (("axial", 0.65), ("sagittal", 0.15), ("coronal", 0.15), ("oblique", 0.05))
DECISIONS = (("approve", 0.85), ("quarantine", 0.1), ("exclude", 0.05))
ISUP_GLEASON = {1: "3+3", 2: "3+4", 3: "4+3", 4: "4+4", 5: "4+5"}


def _pick(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]


@dataclass
class Tables:
    """Rows per table, in insertion order (values as tuples)."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def table(self, name: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
        self.columns[name] = columns
        return self.rows.setdefault(name, [])

    def total(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


def generate(patients: int, seed: int = 7) -> Tables:
    """The synthetic catalogue (deterministic for a seed)."""
    rng = random.Random(seed)
    t = Tables()
    person = t.table(
        "person",
        ("person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth",
         "race_concept_id", "ethnicity_concept_id", "person_source_value"),
    )  # fmt: skip
    condition = t.table(
        "condition_occurrence",
        ("condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
         "condition_type_concept_id", "condition_source_value"),
    )  # fmt: skip
    measurement = t.table(
        "measurement",
        ("measurement_id", "person_id", "measurement_concept_id", "measurement_date",
         "measurement_type_concept_id", "value_as_number", "measurement_source_value",
         "value_source_value"),
    )  # fmt: skip
    observation = t.table(
        "observation",
        ("observation_id", "person_id", "observation_concept_id", "observation_date",
         "observation_type_concept_id", "observation_source_value", "value_source_value"),
    )  # fmt: skip
    procedure = t.table(
        "procedure_occurrence",
        ("procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date",
         "procedure_type_concept_id"),
    )  # fmt: skip
    image = t.table(
        "image_occurrence",
        ("image_occurrence_id", "person_id", "procedure_occurrence_id", "image_occurrence_date",
         "image_study_uid", "image_series_uid", "modality_concept_id"),
    )  # fmt: skip
    patient = t.table("patient", ("id", "patient_pseudonym", "number_of_studies", "created_at"))
    study = t.table(
        "study",
        ("id", "study_instance_uid", "patient_id", "study_date", "modalities_in_study",
         "number_of_series", "created_at", "updated_at"),
    )  # fmt: skip
    series = t.table(
        "series",
        ("id", "series_instance_uid", "study_id", "modality", "body_part_examined",
         "series_date", "manufacturer", "created_at", "updated_at"),
    )  # fmt: skip
    curation = t.table(
        "series_curation",
        ("series_id", "label", "orientation", "is3d", "contrast", "decision",
         "decision_source", "decision_reasons", "decided_at"),
    )  # fmt: skip
    shares = [d[0] for d in DIAGNOSES]
    n_meas = n_obs = n_study = n_series = 0
    for pid in range(1, patients + 1):
        _share, concept, _snomed, code, kind = rng.choices(DIAGNOSES, weights=shares)[0]
        gender = (
            8507 if kind == "prostate" else 8532 if kind == "breast" else rng.choice((8507, 8532))
        )
        if kind == "breast" and rng.random() < 0.01:
            gender = 8507
        born = dt.date(rng.randint(1930, 1990), rng.randint(1, 12), rng.randint(1, 28))
        pseudonym = f"PSN-{pid:08d}"
        person.append((pid, gender, born.year, born.month, born.day, 0, 0, pseudonym))
        age = min(95, max(30, rng.gauss(65, 10)))
        diagnosed = born + dt.timedelta(days=int(age * 365.25) + rng.randint(0, 364))
        condition.append((pid, pid, concept, diagnosed, 32809, code))
        patient.append((pid, pseudonym, 0, NOW))

        values: list[tuple[str, float | None, str | None]] = []
        if kind == "prostate":
            isup = _pick(rng, ((1, 0.3), (2, 0.3), (3, 0.2), (4, 0.1), (5, 0.1)))
            pirads = _pick(rng, ((1, 0.05), (2, 0.15), (3, 0.2), (4, 0.35), (5, 0.25)))
            values += [
                ("prostate.psa", round(math.exp(rng.gauss(math.log(8), 0.8)), 1), None),
                ("prostate.isup_grade", isup, None),
                ("prostate.gleason_score", None, ISUP_GLEASON[isup]),
                ("prostate.pirads", pirads, None),
            ]
        elif kind == "breast":
            n_obs += 1
            status = "positive" if rng.random() < 0.2 else "negative"
            observation.append((n_obs, pid, 0, diagnosed, 32809, "breast.her2_status", status))
        elif kind == "lung":
            values.append(("lung.pdl1_tps", rng.randint(0, 100), None))
        for name, number, value in values:
            n_meas += 1
            measurement.append((n_meas, pid, 0, diagnosed, 32809, number, name, value))
        for _ in range(rng.randint(1, 4)):
            n_study += 1
            when = diagnosed + dt.timedelta(days=rng.randint(-60, 1500))
            modality = _pick(rng, MODALITY[kind])
            study_uid = f"2.25.{10**12 + n_study}"
            procedure.append((n_study, pid, 0, when, 32817))
            n_in_study = rng.randint(3, 8)
            study.append((n_study, study_uid, pid, when, modality, n_in_study, NOW, NOW))
            body_part = _pick(rng, BODY_PART[kind])
            manufacturer = _pick(rng, MANUFACTURERS)
            for _ in range(n_in_study):
                n_series += 1
                series_uid = f"2.25.{2 * 10**12 + n_series}"
                image.append((n_series, pid, n_study, when, study_uid, series_uid, 0))
                series.append(
                    (n_series, series_uid, n_study, modality, body_part, when, manufacturer,
                     NOW, NOW)
                )  # fmt: skip
                label = _pick(rng, MR_LABELS) if modality == "MR" else "other"
                curation.append(
                    (n_series, label, _pick(rng, PLANES), rng.random() < 0.2,
                     label == "DCE", _pick(rng, DECISIONS), "rules", "[]", NOW)
                )  # fmt: skip
    return t


LOAD_ORDER = (
    "person", "condition_occurrence", "measurement", "observation", "procedure_occurrence",
    "image_occurrence", "patient", "study", "series", "series_curation",
)  # fmt: skip


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def load_concepts(catalog: Catalog) -> None:
    """The SNOMED concepts of the diagnoses, unless the concept seed has them already."""
    with catalog._engine.begin() as conn:
        for _share, concept_id, snomed, _code, kind in DIAGNOSES:
            if conn.execute(
                text("SELECT 1 FROM concept WHERE concept_id = :id"), {"id": concept_id}
            ).first():
                continue
            conn.execute(
                text(
                    "INSERT INTO concept (concept_id, concept_name, domain_id, vocabulary_id, "
                    "concept_class_id, standard_concept, concept_code, valid_start_date, "
                    "valid_end_date) VALUES (:id, :name, 'Condition', 'SNOMED', "
                    "'Clinical Finding', 'S', :code, :start, :end)"
                ),
                {
                    "id": concept_id,
                    "name": f"Malignant tumor of {kind}",
                    "code": snomed,
                    "start": dt.date(1970, 1, 1),
                    "end": dt.date(2099, 12, 31),
                },
            )


def load_sqlite(catalog: Catalog, tables: Tables) -> None:
    raw = catalog._engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("BEGIN")
        for name in LOAD_ORDER:
            columns = tables.columns[name]
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"
            cursor.executemany(sql, ([_sqlite_value(v) for v in row] for row in tables.rows[name]))
        cursor.execute("COMMIT")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        raw.close()


def load_postgresql(catalog: Catalog, tables: Tables) -> None:
    raw = catalog._engine.raw_connection()
    try:
        cursor = raw.cursor()
        for name in LOAD_ORDER:
            columns = tables.columns[name]
            with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in tables.rows[name]:
                    copy.write_row(row)
        raw.commit()
        keys = {
            "person": "person_id",
            "condition_occurrence": "condition_occurrence_id",
            "measurement": "measurement_id",
            "observation": "observation_id",
            "procedure_occurrence": "procedure_occurrence_id",
            "image_occurrence": "image_occurrence_id",
            "patient": "id",
            "study": "id",
            "series": "id",
        }
        for name, key in keys.items():
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', '{key}'), "
                f"(SELECT max({key}) FROM {name}))"
            )
        raw.commit()
    finally:
        raw.close()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Timing:
    backend: str
    query: str
    persons: int
    studies: int
    series: int
    p50_ms: float
    p95_ms: float
    max_ms: float

    @property
    def met(self) -> bool:
        return self.p95_ms < TARGET_P95_MS


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[index]


def measure(catalog: Catalog, backend: str, runs: int) -> list[Timing]:
    timings = []
    for name, (_title, body) in QUERIES.items():
        query = parse_query(body)
        result = count(catalog, query, exact_counts=True)  # warm-up
        elapsed = []
        for _ in range(runs):
            t0 = time.perf_counter()
            count(catalog, parse_query(body), exact_counts=False)
            elapsed.append((time.perf_counter() - t0) * 1000)
        timings.append(
            Timing(
                backend,
                name,
                result.total.persons.value,
                result.total.studies.value,
                result.total.series.value,
                statistics.median(elapsed),
                _percentile(elapsed, 0.95),
                max(elapsed),
            )
        )
        print(f"  {backend} {name}: p95 {timings[-1].p95_ms:.1f} ms", file=sys.stderr)
    return timings


@dataclass
class BackendRun:
    backend: str
    load_s: float
    generate_s: float
    rows: int
    timings: list[Timing]


def _pg_admin(sql: str) -> None:
    engine = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _pg_database() -> Iterator[str]:
    _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{PG_DATABASE}"')
    try:
        yield f"{PG_SERVER}/{PG_DATABASE}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def run_backend(
    backend: str, tables: Tables, generate_s: float, workdir: Path, runs: int
) -> BackendRun:
    if backend == "sqlite":
        path = workdir / "cohort-bench.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        urls: Iterator[str] = iter([sqlite_url(path)])
    else:
        urls = _pg_database()
    for url in urls:
        with Catalog.open(url) as catalog:
            t0 = time.perf_counter()
            load_concepts(catalog)
            (load_sqlite if backend == "sqlite" else load_postgresql)(catalog, tables)
            # The bulk load bypasses the write paths that keep cohort_series (ingest's OMOP
            # sync, curation, demographics): fill it as migration 0006 and `biobank omop
            # sync` do, with the same function.
            t1 = time.perf_counter()
            with catalog._writing("filling cohort_series") as conn:
                cohort_rows = cohort_series.rebuild(conn)
            print(
                f"  {backend}: cohort_series rebuilt ({cohort_rows:,} series) in "
                f"{time.perf_counter() - t1:.1f} s",
                file=sys.stderr,
            )
            catalog.analyze()
            if backend == "postgresql":
                raw = catalog._engine.raw_connection()
                try:
                    driver = raw.driver_connection
                    driver.rollback()  # type: ignore[union-attr]
                    driver.autocommit = True  # type: ignore[union-attr]
                    driver.execute("VACUUM ANALYZE")  # type: ignore[union-attr]
                    # Write the pages VACUUM dirtied now, not spread over the timed runs
                    # (the checkpointer's I/O inflated PostgreSQL's p95 by up to 2x).
                    driver.execute("CHECKPOINT")  # type: ignore[union-attr]
                finally:
                    raw.close()
                # Count on fresh connections, as a node does: not on the loading one (left in
                # autocommit mode, its server process grown by COPY and VACUUM).
                catalog._engine.dispose()
            load_s = time.perf_counter() - t0
            print(f"  {backend}: loaded {tables.total():,} rows in {load_s:.1f} s", file=sys.stderr)
            timings = measure(catalog, backend, runs)
        if backend == "sqlite":  # ~1 GB; generating again is faster than keeping it around
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return BackendRun(backend, load_s, generate_s, tables.total(), timings)
    raise RuntimeError("no database")  # pragma: no cover


def table(runs: list[BackendRun], args: argparse.Namespace) -> str:
    lines = [
        f"## Cohort counts: {args.patients:,} patients, {runs[0].rows:,} rows "
        f"(p50/p95 of {args.runs} runs; target p95 < {TARGET_P95_MS:.0f} ms)",
        "",
        "| query | backend | persons | studies | series | p50 ms | p95 ms | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        for t in run.timings:
            lines.append(
                f"| {t.query} | {t.backend} | {t.persons:,} | {t.studies:,} | {t.series:,} | "
                f"{t.p50_ms:.1f} | {t.p95_ms:.1f} | {'met' if t.met else 'NOT met'} |"
            )
    lines.append("")
    for run in runs:
        lines.append(
            f"- {run.backend}: generated in {run.generate_s:.1f} s, loaded (+ ANALYZE) in "
            f"{run.load_s:.1f} s"
        )
    lines.append("")
    for name, (title, _body) in QUERIES.items():
        lines.append(f"- `{name}`: {title}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.patients < 1 or args.runs < 1 or not set(backends) <= {"sqlite", "postgresql"}:
        print(
            "need --patients >= 1, --runs >= 1, backends sqlite and/or postgresql", file=sys.stderr
        )
        return 2
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="cohort-bench-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        tables = generate(args.patients)
        generate_s = time.perf_counter() - t0
        # The generated rows (~5 million tuples) stay alive for the second backend: keep them
        # out of the garbage collector, whose full passes over them (~0.3 s each) would
        # otherwise land in the timed counts — a node's process holds no such data.
        gc.collect()
        gc.freeze()
        print(f"generated {tables.total():,} rows in {generate_s:.1f} s", file=sys.stderr)
        load = os.getloadavg()[0]
        runs, failures = [], []
        for backend in backends:
            try:
                runs.append(run_backend(backend, tables, generate_s, workdir, args.runs))
            except Exception as exc:  # noqa: BLE001 - reported, the other backend runs
                failures.append(f"{backend}: {type(exc).__name__}: {exc}"[:300])
                print(f"  {backend} failed: {failures[-1]}", file=sys.stderr)
        if not runs:
            print("every backend failed:\n" + "\n".join(failures), file=sys.stderr)
            return 1
        print(table(runs, args))
        print(f"\nLoad average at the start: {load:.1f} ({os.cpu_count()} cores).")
        for failure in failures:
            print(f"- **failed** {failure}")
        out = args.json or workdir / "cohort-results.json"
        out.write_text(
            json.dumps(
                {
                    "machine": {
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                    },
                    "patients": args.patients,
                    "runs": args.runs,
                    "target_p95_ms": TARGET_P95_MS,
                    "load_average_at_start": load,
                    "failures": failures,
                    "backends": [
                        {
                            "backend": r.backend,
                            "rows": r.rows,
                            "generate_s": r.generate_s,
                            "load_s": r.load_s,
                            "timings": [{**t.__dict__, "met": t.met} for t in r.timings],
                        }
                        for r in runs
                    ],
                },
                indent=2,
            )
        )
        return 1 if failures else 0  # a missed target is in the table, not a failure
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
