"""Catalogue at scale: query latency of ``biobank.catalog`` at 1,000,000 instances.

    python bench/catalog_scale.py [--instances 1000000] [--backends sqlite,postgresql]
                                  [--samples 300] [--workdir DIR]

Builds a deterministic synthetic catalogue (10,000 patients × 2 studies × 5 series × 10
instances by default; CT, MR, PET-CT and US studies over 15 years; a ~1.5 KB DICOM JSON header
per instance) through ``Catalog.record_items`` — the ingest path — in SQLite (a file kept in
``--workdir``, reused when the parameters and the catalogue code are unchanged) and in
PostgreSQL (database ``bb_bench_catalog``, created fresh and dropped at the end). Then
ANALYZE, warm up and time ``--samples`` random look-ups per query through the ``Catalog``
``find_*`` methods. Prints a markdown table and writes ``catalog-results.json``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))
sys.path.insert(0, str(BENCH_DIR))
from peers import terminate_as_exit  # noqa: E402

TARGET_P95_MS = 20.0
GENERATOR_VERSION = 1  # bump when the generated content changes
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DATABASE = "bb_bench_catalog"
EPOCH = datetime.date(2010, 1, 1)
SPAN_DAYS = 15 * 365
DATE_WINDOW_DAYS = 31
QUERY_LIMIT = 100

# Study kinds: (weight, series modalities, description, body part)
STUDY_KINDS: tuple[tuple[float, tuple[str, ...], str, str], ...] = (
    (0.40, ("CT",) * 5, "CT CHEST ABDOMEN PELVIS W CONTRAST", "CHEST"),
    (0.30, ("MR",) * 5, "MRI BRAIN W/WO CONTRAST", "BRAIN"),
    (0.15, ("PT", "PT", "CT", "CT", "CT"), "PET-CT WHOLE BODY FDG", "WHOLEBODY"),
    (0.15, ("US",) * 5, "US ABDOMEN COMPLETE", "ABDOMEN"),
)
MODALITIES = ("CT", "MR", "PT", "US")
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
}
MATRIX = {"CT": (512, 512, 16), "MR": (256, 256, 16), "PT": (128, 128, 16), "US": (600, 800, 8)}
MANUFACTURER = {
    "CT": ("GE MEDICAL SYSTEMS", "Revolution CT"),
    "MR": ("SIEMENS", "Prisma"),
    "PT": ("Philips", "Vereos PET/CT"),
    "US": ("Canon Medical Systems", "Aplio i800"),
}
SERIES_NAMES = {
    "CT": ("Scout", "Axial 5mm", "Axial 1.25mm", "Coronal MPR", "Sagittal MPR"),
    "MR": ("localizer", "t1_mprage_sag", "t2_tse_tra", "flair_tra", "dwi_tra"),
    "PT": ("PET WB AC", "PET WB NAC", "CT AC", "CT WB", "CT Scout"),
    "US": ("Liver", "Gallbladder", "Pancreas", "Kidneys", "Spleen"),
}
TRANSFER_SYNTAX = "1.2.840.10008.1.2.1"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Failed(RuntimeError):
    """A backend could not be built or queried."""


# --- the synthetic catalogue ----------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How many of each level; ``patients`` follows from the instance count."""

    instances: int
    studies_per_patient: int = 2
    series_per_study: int = 5
    instances_per_series: int = 10
    seed: int = 0

    @property
    def per_patient(self) -> int:
        return self.studies_per_patient * self.series_per_study * self.instances_per_series

    @property
    def patients(self) -> int:
        return self.instances // self.per_patient

    @property
    def total(self) -> int:
        return self.patients * self.per_patient


def _uid(seed: int, *parts: object) -> str:
    """A ``2.25`` UID (as keyed de-identification makes them), deterministic in ``parts``."""
    digest = hashlib.blake2b(f"{seed}:{parts}".encode(), digest_size=16).digest()
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _pseudonym(seed: int, patient: int) -> str:
    """``P`` + 16 Crockford base32 digits, like ``biobank.deid.keys`` pseudonyms."""
    value = int.from_bytes(
        hashlib.blake2b(f"{seed}:patient:{patient}".encode(), digest_size=10).digest(), "big"
    )
    return "P" + "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(16))


def _element(vr: str, *values: object) -> dict[str, Any]:
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": v} for v in values]}
    return {"vr": vr, "Value": list(values)}


@dataclass(frozen=True)
class SeriesRow:
    """One generated series (the keys the queries sample are kept, not the instances)."""

    patient_pseudonym: str
    study_instance_uid: str
    series_instance_uid: str
    study_date: datetime.date
    modality: str


def generate_patient(shape: Shape, patient: int) -> Iterator[tuple[dict[str, Any], SeriesRow]]:
    """Yield ``(InstanceRecord fields, series)`` for every instance of ``patient``."""
    rng = random.Random(f"{shape.seed}:{patient}")
    seed = shape.seed
    pseudonym = _pseudonym(seed, patient)
    sex = rng.choice(("F", "M"))
    birth = EPOCH - datetime.timedelta(days=rng.randrange(18 * 365, 90 * 365))
    weights = [k[0] for k in STUDY_KINDS]
    for st in range(shape.studies_per_patient):
        _, modalities, description, body_part = rng.choices(STUDY_KINDS, weights)[0]
        study_uid = _uid(seed, "study", patient, st)
        study_date = EPOCH + datetime.timedelta(days=rng.randrange(SPAN_DAYS))
        study_time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        accession = f"A{rng.randrange(10**9):09d}"
        for se in range(shape.series_per_study):
            modality = modalities[se % len(modalities)]
            series_uid = _uid(seed, "series", patient, st, se)
            rows, columns, bits = MATRIX[modality]
            manufacturer, model = MANUFACTURER[modality]
            series_name = SERIES_NAMES[modality][se % 5]
            series = SeriesRow(pseudonym, study_uid, series_uid, study_date, modality)
            # One JSON template per series; the instance's values replace three markers.
            header = {
                "00080005": _element("CS", "ISO_IR 192"),
                "00080008": _element("CS", "ORIGINAL", "PRIMARY", "AXIAL"),
                "00080016": _element("UI", SOP_CLASS[modality]),
                "00080018": _element("UI", "@SOP@"),
                "00080020": _element("DA", study_date.strftime("%Y%m%d")),
                "00080030": _element("TM", study_time),
                "00080050": _element("SH", accession),
                "00080060": _element("CS", modality),
                "00080070": _element("LO", manufacturer),
                "00081030": _element("LO", description),
                "0008103E": _element("LO", series_name),
                "00081090": _element("LO", model),
                "00100010": _element("PN", pseudonym),
                "00100020": _element("LO", pseudonym),
                "00100040": _element("CS", sex),
                "00120062": _element("CS", "YES"),
                "00120063": _element("LO", "Basic Application Confidentiality Profile"),
                "00180015": _element("CS", body_part),
                "00180050": _element("DS", 1.25 if modality == "CT" else 3.0),
                "00181030": _element("LO", series_name),
                "0020000D": _element("UI", study_uid),
                "0020000E": _element("UI", series_uid),
                "00200010": _element("SH", f"{st + 1}"),
                "00200011": _element("IS", se + 1),
                "00200013": _element("IS", "@NUMBER@"),
                "00200032": _element("DS", -250.0, -250.0, "@Z@"),
                "00200037": _element("DS", 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                "00200052": _element("UI", _uid(seed, "for", patient, st)),
                "00280002": _element("US", 1),
                "00280004": _element("CS", "MONOCHROME2"),
                "00280010": _element("US", rows),
                "00280011": _element("US", columns),
                "00280030": _element("DS", 0.7, 0.7),
                "00280100": _element("US", bits),
                "00280101": _element("US", 12 if bits == 16 else 8),
                "00281050": _element("DS", 40.0),
                "00281051": _element("DS", 400.0),
            }
            template = json.dumps(header, separators=(",", ":"))
            for i in range(shape.instances_per_series):
                sop_uid = _uid(seed, "sop", patient, st, se, i)
                header_json = (
                    template.replace('"@SOP@"', json.dumps(sop_uid))
                    .replace('"@NUMBER@"', str(i + 1))
                    .replace('"@Z@"', json.dumps(-10.0 * i))
                )
                fields = {
                    "patient_pseudonym": pseudonym,
                    "study_instance_uid": study_uid,
                    "series_instance_uid": series_uid,
                    "sop_instance_uid": sop_uid,
                    "sop_class_uid": SOP_CLASS[modality],
                    "blob_digest": hashlib.sha256(sop_uid.encode()).hexdigest(),
                    "blob_size": rows * columns * bits // 8 + 2048 + rng.randrange(2048),
                    "header_json": header_json,
                    "patient_sex": sex,
                    "patient_birth_date": birth,
                    "study_date": study_date,
                    "study_time": study_time,
                    "accession_number": accession,
                    "study_id": f"{st + 1}",
                    "study_description": description,
                    "modality": modality,
                    "series_number": se + 1,
                    "series_description": series_name,
                    "body_part_examined": body_part,
                    "series_date": study_date,
                    "series_time": study_time,
                    "protocol_name": series_name,
                    "manufacturer": manufacturer,
                    "manufacturer_model_name": model,
                    "instance_number": i + 1,
                    "transfer_syntax_uid": TRANSFER_SYNTAX,
                    "rows": rows,
                    "columns": columns,
                    "number_of_frames": 1,
                }
                yield fields, series


# --- building -------------------------------------------------------------------------------


@dataclass
class Keys:
    """What the queries sample from."""

    patients: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)


def collect_keys(shape: Shape) -> Keys:
    """The generated keys without building anything (cheap: UIDs only)."""
    keys = Keys()
    seed = shape.seed
    for p in range(shape.patients):
        keys.patients.append(_pseudonym(seed, p))
        for st in range(shape.studies_per_patient):
            keys.studies.append(_uid(seed, "study", p, st))
            for se in range(shape.series_per_study):
                keys.series.append(_uid(seed, "series", p, st, se))
    return keys


@dataclass
class Build:
    seconds: float = float("nan")
    load_seconds: float = float("nan")
    refresh_seconds: float = float("nan")
    analyze_seconds: float = float("nan")
    instances_per_second: float = float("nan")
    cached: bool = False
    loader: str = "record_items"
    batch_size: int = 0


def _progress(done: int, total: int, start: float, label: str) -> None:
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed else 0.0
    eta = (total - done) / rate if rate else float("nan")
    print(
        f"  {label}: {done:,}/{total:,} instances, {rate:,.0f}/s, ~{eta:,.0f} s left",
        file=sys.stderr,
    )


def _api() -> Any:
    """The catalogue package, imported when first needed (an import error is reported)."""
    import biobank.catalog

    return biobank.catalog


def build_catalog(url: str, shape: Shape, batch_size: int, deadline: float, label: str) -> Build:
    """Load the synthetic catalogue into the (empty) database at ``url`` via the ingest path."""
    api = _api()
    InstanceRecord, ItemInput, ItemOutcome = api.InstanceRecord, api.ItemInput, api.ItemOutcome

    build = Build(batch_size=batch_size)
    start = time.perf_counter()
    catalog = api.Catalog.open(url)
    try:
        batch = catalog.start_batch(
            role="site", sources=["synthetic catalogue"], profile=None, key_id=None
        )
        items: list[Any] = []
        series_uids: list[str] = []
        done = 0
        next_report = start + 30.0
        for p in range(shape.patients):
            for fields, series in generate_patient(shape, p):
                if not series_uids or series_uids[-1] != series.series_instance_uid:
                    series_uids.append(series.series_instance_uid)
                items.append(
                    ItemInput(
                        source_path=f"synthetic/{p:06d}/{fields['sop_instance_uid']}.dcm",
                        outcome=ItemOutcome.STORED,
                        instance=InstanceRecord(**fields),
                        bytes_in=fields["blob_size"],
                    )
                )
                if len(items) >= batch_size:
                    catalog.record_items(batch, items)
                    done += len(items)
                    items = []
                    now = time.perf_counter()
                    if now > deadline:
                        raise Failed(f"{label}: build stopped at the deadline ({done:,} loaded)")
                    if now >= next_report:
                        _progress(done, shape.total, start, label)
                        next_report = now + 30.0
        if items:
            catalog.record_items(batch, items)
            done += len(items)
        catalog.finish_batch(batch, state=api.BatchState.COMPLETE, expected=done)
        build.load_seconds = time.perf_counter() - start
        # Planner statistics before refresh_series, as autovacuum would have them (the
        # PostgreSQL here runs with autovacuum off): without them its per-study count is a
        # parallel sequential scan of `instance` (~0.3 s a study, hours for 20,000 studies).
        build.analyze_seconds = analyze(url)
        refresh_start = time.perf_counter()
        for i in range(0, len(series_uids), 1000):
            catalog.refresh_series(series_uids[i : i + 1000])
            if time.perf_counter() > deadline:
                raise Failed(f"{label}: refresh_series stopped at the deadline")
        build.refresh_seconds = time.perf_counter() - refresh_start
    finally:
        _close(catalog)
    build.seconds = time.perf_counter() - start
    build.instances_per_second = done / build.load_seconds
    return build


def _close(catalog: Any) -> None:
    for name in ("close", "dispose"):
        method = getattr(catalog, name, None)
        if method is not None:
            method()
            return
    engine = getattr(catalog, "engine", None)
    if engine is not None:
        engine.dispose()


def analyze(url: str) -> float:
    """ANALYZE the database (planner statistics); return the seconds it took."""
    from sqlalchemy import text

    from biobank.catalog.database import create_catalog_engine

    engine = create_catalog_engine(url)
    start = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    finally:
        engine.dispose()
    return time.perf_counter() - start


def database_size(url: str) -> dict[str, int]:
    """Bytes on disk: the whole database and each catalogue table (PostgreSQL) or file."""
    from sqlalchemy import text

    from biobank.catalog.database import create_catalog_engine

    engine = create_catalog_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                sizes = {
                    "total": int(
                        conn.execute(text(f"SELECT pg_database_size('{PG_DATABASE}')")).scalar_one()
                    )
                }
                for table in ("patient", "study", "series", "instance", "ingest_item"):
                    sizes[table] = int(
                        conn.execute(
                            text("SELECT pg_total_relation_size(:t)"), {"t": table}
                        ).scalar_one()
                    )
                return sizes
            page_count = conn.execute(text("PRAGMA page_count")).scalar_one()
            page_size = conn.execute(text("PRAGMA page_size")).scalar_one()
            return {"total": int(page_count) * int(page_size)}
    finally:
        engine.dispose()


# --- querying -------------------------------------------------------------------------------


@dataclass
class QueryFigures:
    name: str
    samples: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    mean_rows: float
    min_rows: int
    max_rows: int


QUERIES: tuple[tuple[str, str], ...] = (
    ("patient_studies", "studies of a patient"),
    ("study_series", "series of a study"),
    ("series_instances", "instances of a series"),
    ("studies_by_date_modality", f"studies by date range ({DATE_WINDOW_DAYS} days) and modality"),
)


def _query_makers(keys: Keys, rng: random.Random) -> dict[str, Callable[[Any], Any]]:
    def by_patient(cat: Any) -> Any:
        return cat.find_studies(patient_pseudonym=rng.choice(keys.patients))

    def by_study(cat: Any) -> Any:
        return cat.find_series(study_instance_uid=rng.choice(keys.studies))

    def by_series(cat: Any) -> Any:
        return cat.find_instances(series_instance_uid=rng.choice(keys.series))

    def by_date(cat: Any) -> Any:
        first = EPOCH + datetime.timedelta(days=rng.randrange(SPAN_DAYS - DATE_WINDOW_DAYS))
        last = first + datetime.timedelta(days=DATE_WINDOW_DAYS - 1)
        return cat.find_studies(
            date_from=first, date_to=last, modality=rng.choice(MODALITIES), limit=QUERY_LIMIT
        )

    return {
        "patient_studies": by_patient,
        "study_series": by_study,
        "series_instances": by_series,
        "studies_by_date_modality": by_date,
    }


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def time_queries(url: str, keys: Keys, samples: int, warmup: int, seed: int) -> list[QueryFigures]:
    """Warm up, then time ``samples`` look-ups of each kind (materialised results)."""
    catalog = _api().Catalog.open(url)
    results: list[QueryFigures] = []
    try:
        for name, _label in QUERIES:
            make = _query_makers(keys, random.Random(f"{seed}:{name}:warmup"))[name]
            for _ in range(warmup):
                list(make(catalog))
            make = _query_makers(keys, random.Random(f"{seed}:{name}"))[name]
            times: list[float] = []
            rows: list[int] = []
            for _ in range(samples):
                start = time.perf_counter()
                found = list(make(catalog))
                times.append((time.perf_counter() - start) * 1000.0)
                rows.append(len(found))
            results.append(
                QueryFigures(
                    name,
                    samples,
                    _percentile(times, 0.50),
                    _percentile(times, 0.95),
                    max(times),
                    statistics.fmean(rows),
                    min(rows),
                    max(rows),
                )
            )
    finally:
        _close(catalog)
    return results


# --- backends -------------------------------------------------------------------------------


def _catalog_code_sha256() -> str:
    """Hash of the catalogue package's source: a change invalidates a cached SQLite build."""
    import biobank.catalog

    folder = Path(biobank.catalog.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _sqlite_key(shape: Shape, batch_size: int) -> str:
    fingerprint = {
        **asdict(shape),
        "batch_size": batch_size,
        "generator": GENERATOR_VERSION,
        "catalog_sha256": _catalog_code_sha256(),
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def prepare_sqlite(
    workdir: Path, shape: Shape, batch_size: int, deadline: float, rebuild: bool
) -> tuple[str, Build]:
    """Build the SQLite catalogue, or reuse the one built with the same key in ``workdir``."""
    from biobank.catalog.database import sqlite_url

    key = _sqlite_key(shape, batch_size)
    path = workdir / f"catalog-{shape.total}-{key}.sqlite"
    meta = path.with_suffix(".build.json")
    if path.exists() and meta.exists() and not rebuild:
        with contextlib.suppress(TypeError, ValueError):
            build = Build(**json.loads(meta.read_text()))
            build.cached = True
            print(f"reusing {path} (built in {build.seconds:,.0f} s)", file=sys.stderr)
            return sqlite_url(path), build
    for old in workdir.glob(f"catalog-{shape.total}-*.sqlite"):  # an outdated build
        _remove_sqlite(old)
        old.with_suffix(".build.json").unlink(missing_ok=True)
    partial = path.with_suffix(".partial.sqlite")
    _remove_sqlite(partial)
    print(f"building {path} ...", file=sys.stderr)
    try:
        build = build_catalog(sqlite_url(partial), shape, batch_size, deadline, "sqlite")
        build.analyze_seconds += analyze(sqlite_url(partial))
    except BaseException:
        _remove_sqlite(partial)
        raise
    for suffix in ("-wal", "-shm"):
        if Path(f"{partial}{suffix}").exists():  # the last connection closed uncleanly
            raise Failed(f"{partial}{suffix} left behind after the build")
    partial.rename(path)
    meta.write_text(json.dumps(asdict(build)))
    return sqlite_url(path), build


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """Create ``bb_bench_catalog`` fresh; drop it on exit (also on errors and Ctrl-C)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {PG_DATABASE}"))
    except Exception as exc:
        admin.dispose()
        raise Failed(
            f"PostgreSQL at {make_url(admin_url).host}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        yield make_url(admin_url).set(database=PG_DATABASE).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        admin.dispose()


def _pg_settings(url: str) -> dict[str, str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = ("server_version", "shared_buffers", "work_mem", "effective_cache_size")
            return {n: str(conn.execute(text(f"SHOW {n}")).scalar_one()) for n in names}
    finally:
        engine.dispose()


@dataclass
class BackendResult:
    backend: str
    status: str = "ok"
    error: str = ""
    build: Build = field(default_factory=Build)
    size_bytes: dict[str, int] = field(default_factory=dict)
    queries: list[QueryFigures] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


def run_backend(backend: str, args: argparse.Namespace, shape: Shape, keys: Keys) -> BackendResult:
    result = BackendResult(backend)
    deadline = time.perf_counter() + args.max_build_seconds
    try:
        if backend == "sqlite":
            url, result.build = prepare_sqlite(
                args.workdir, shape, args.batch_size, deadline, args.rebuild
            )
            result.size_bytes = database_size(url)
            result.queries = time_queries(url, keys, args.samples, args.warmup, args.seed)
            return result
        with postgres_database(args.postgres_url) as url:
            result.settings = _pg_settings(url)
            print(f"building PostgreSQL database {PG_DATABASE} ...", file=sys.stderr)
            result.build = build_catalog(url, shape, args.batch_size, deadline, "postgresql")
            result.build.analyze_seconds += analyze(url)
            result.size_bytes = database_size(url)
            result.queries = time_queries(url, keys, args.samples, args.warmup, args.seed)
    except ImportError as exc:
        result.status, result.error = "unavailable", f"biobank.catalog does not import: {exc}"
    except Failed as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:  # the catalogue's own errors: reported, the other back end runs
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    return result


# --- output ---------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def _table(results: list[BackendResult], shape: Shape, samples: int) -> str:
    ok = [r for r in results if r.status == "ok"]
    lines = [
        f"## Catalogue at scale — {shape.total:,} instances, "
        f"{shape.patients * shape.studies_per_patient * shape.series_per_study:,} series, "
        f"{shape.patients * shape.studies_per_patient:,} studies, {shape.patients:,} patients; "
        f"{samples} random look-ups per query, warm",
        "",
        "| query | " + " | ".join(f"{r.backend} p50 / p95 / max ms" for r in ok) + " | rows |",
        "|---|" + "---:|" * len(ok) + "---:|",
    ]
    labels = dict(QUERIES)
    for name, label in labels.items():
        cells = []
        rows = ""
        for r in ok:
            q = next((q for q in r.queries if q.name == name), None)
            if q is None:
                cells.append("–")
                continue
            cells.append(f"{_fmt(q.p50_ms, 2)} / {_fmt(q.p95_ms, 2)} / {_fmt(q.max_ms, 1)}")
            rows = f"{q.mean_rows:.1f} ({q.min_rows}–{q.max_rows})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {rows} |")
    lines += ["", "| backend | build | load rate | refresh_series | ANALYZE | size on disk |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.backend} | **{r.status}**: {r.error.splitlines()[0]} | | | | |")
            continue
        b = r.build
        cached = " (cached)" if b.cached else ""
        lines.append(
            f"| {r.backend} | {_fmt(b.seconds, 0)} s{cached} | "
            f"{_fmt(b.instances_per_second, 0)} instances/s (record_items × {b.batch_size}) | "
            f"{_fmt(b.refresh_seconds, 0)} s | {_fmt(b.analyze_seconds, 1)} s | "
            f"{r.size_bytes.get('total', 0) / 2**30:,.2f} GiB |"
        )
    lines += ["", _target(results)]
    return "\n".join(lines)


def _target(results: list[BackendResult]) -> str:
    text = f"Target: p95 < {TARGET_P95_MS:.0f} ms on both back ends"
    parts = []
    met = True
    for r in results:
        if r.status != "ok" or not r.queries:
            parts.append(f"{r.backend} not measured ({r.status})")
            met = False
            continue
        worst = max(r.queries, key=lambda q: q.p95_ms)
        met &= worst.p95_ms < TARGET_P95_MS
        parts.append(f"{r.backend} worst p95 {worst.p95_ms:.2f} ms ({worst.name})")
    backends = {r.backend for r in results if r.status == "ok"}
    if {"sqlite", "postgresql"} - backends:
        verdict = "MET on the back ends measured" if met and backends else "NOT MET"
    else:
        verdict = "MET" if met else "NOT MET"
    return f"{text}: {'; '.join(parts)} — **{verdict}**"


# --- main -----------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--studies-per-patient", type=int, default=2)
    parser.add_argument("--series-per-study", type=int, default=5)
    parser.add_argument("--instances-per-series", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--samples", type=int, default=300, help="timed look-ups per query")
    parser.add_argument("--warmup", type=int, default=50, help="untimed look-ups per query")
    parser.add_argument("--batch-size", type=int, default=500, help="items per record_items")
    parser.add_argument(
        "--max-build-seconds",
        type=float,
        default=1800.0,
        help="give up a backend whose build takes longer (default 30 min)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the SQLite catalogue here (reused when unchanged) and write "
        "catalog-results.json here; default: a temporary folder, removed at the end",
    )
    parser.add_argument("--json", type=Path, help="results file (default: see --workdir)")
    parser.add_argument("--postgres-url", default=PG_ADMIN_URL, help="an existing database")
    parser.add_argument("--rebuild", action="store_true", help="rebuild a cached SQLite file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        print(f"unknown backends: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    shape = Shape(
        args.instances,
        args.studies_per_patient,
        args.series_per_study,
        args.instances_per_series,
        args.seed,
    )
    if shape.patients < 1:
        print(f"--instances must be at least {shape.per_patient}", file=sys.stderr)
        return 2
    temporary = args.workdir is None
    if temporary:
        args.workdir = Path(tempfile.mkdtemp(prefix="biobank-catalog-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (
        Path("catalog-results.json") if temporary else args.workdir / "catalog-results.json"
    )
    try:
        with terminate_as_exit():
            keys = collect_keys(shape)
            results = []
            for backend in backends:
                print(f"{backend} ...", file=sys.stderr)
                result = run_backend(backend, args, shape, keys)
                if result.status != "ok":
                    print(f"  {backend}: {result.status}: {result.error}", file=sys.stderr)
                results.append(result)
            table = _table(results, shape, args.samples)
            print(table)
            payload = {
                "shape": {**asdict(shape), "patients": shape.patients, "total": shape.total},
                "query_limit": QUERY_LIMIT,
                "date_window_days": DATE_WINDOW_DAYS,
                "environment": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_at_start": os.getloadavg(),
                },
                "results": [asdict(r) for r in results],
                "table_markdown": table,
            }
            json_path.write_text(json.dumps(payload, indent=2, default=str))
            print(f"\nresults: {json_path}", file=sys.stderr)
    finally:
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
