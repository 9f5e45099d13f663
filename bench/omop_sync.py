"""OMOP imaging sync benchmark: catalogued series → image_occurrence / image_feature.

    python bench/omop_sync.py [--series 10000] [--backends sqlite,postgresql]
                              [--pg-server postgresql+psycopg://postgres@127.0.0.1:5432]
                              [--workdir DIR] [--json F]

Builds a catalogue of ``--series`` series (one instance each; 4 series per patient, 2 per
study; CT and MR alternating) whose headers are real synthetic CT/MR headers (pydicom,
``biobank.dicom.synthetic``, ~6 kB of DICOM JSON each), then times
``biobank.catalog.omop_imaging.sync_catalog_imaging`` (wall and this process's CPU) and a
second sync that has nothing to do. PostgreSQL runs in a scratch database that is dropped
afterwards. Prints a markdown table; ``--json`` writes the results.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from sqlalchemy import create_engine, text  # noqa: E402

from biobank.catalog import Catalog, InstanceRecord, ItemInput, ItemOutcome, sqlite_url  # noqa: E402
from biobank.catalog.omop_imaging import sync_catalog_imaging  # noqa: E402
from biobank.dicom.json import header_json  # noqa: E402
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi  # noqa: E402


def _headers() -> tuple[dict[str, Any], dict[str, Any]]:
    phi = make_patient_phi(0, seed=1)
    ct = make_ct_series(phi, 1, rows=16, cols=16)[0]
    mr = make_mr_series(phi, 1, rows=16, cols=16)[0]
    return json.loads(header_json(ct)), json.loads(header_json(mr))


def build(catalog: Catalog, n_series: int) -> float:
    """Catalogue ``n_series`` series; return the seconds it took."""
    ct, mr = _headers()
    started = time.perf_counter()
    batch = catalog.start_batch(role="central", sources=["bench"], profile=None, key_id=None)
    items: list[ItemInput] = []
    for s in range(n_series):
        patient, study = s // 4, s // 2
        header = dict(mr if s % 2 else ct)
        sop = f"1.2.826.0.1.3680043.8.498.99.{s}.1"
        header["00080018"] = {"vr": "UI", "Value": [sop]}
        instance = InstanceRecord(
            patient_pseudonym=f"PSN{patient:07d}",
            study_instance_uid=f"1.2.826.0.1.3680043.8.498.99.{study}",
            series_instance_uid=f"1.2.826.0.1.3680043.8.498.99.{s}.9",
            sop_instance_uid=sop,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            blob_digest=hashlib.sha256(sop.encode()).hexdigest(),
            blob_size=10,
            header_json=json.dumps(header),
            modality="MR" if s % 2 else "CT",
            patient_sex="MF"[patient % 2],
            patient_birth_date=datetime.date(1940 + patient % 40, 1, 1),
            study_date=datetime.date(2020, 1, 1) + datetime.timedelta(days=study % 700),
            body_part_examined="PROSTATE" if s % 2 else "CHEST",
            manufacturer="SIEMENS" if s % 2 else "GE MEDICAL SYSTEMS",
        )
        items.append(
            ItemInput(
                source_path=f"bench/{s}", outcome=ItemOutcome.STORED, instance=instance, bytes_in=10
            )
        )
        if len(items) == 2000:
            catalog.record_items(batch, items)
            items = []
    if items:
        catalog.record_items(batch, items)
    return time.perf_counter() - started


def measure(url: str, n_series: int) -> dict[str, Any]:
    """Build, sync and re-sync on ``url``."""
    with Catalog.open(url) as catalog:
        built = build(catalog, n_series)
        wall, cpu = time.perf_counter(), time.process_time()
        report = sync_catalog_imaging(catalog)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        again = time.perf_counter()
        nothing = sync_catalog_imaging(catalog)
        again = time.perf_counter() - again
    return {
        "backend": catalog.backend,
        "series": report.series,
        "persons": report.persons,
        "procedures": report.procedures,
        "features": report.features,
        "build_s": round(built, 2),
        "sync_s": round(wall, 2),
        "sync_cpu_s": round(cpu, 2),
        "series_per_s": round(report.series / wall) if wall else None,
        "resync_s": round(again, 4),
        "resync_series": nothing.series,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                results.append(measure(sqlite_url(Path(tmp) / "omop.sqlite"), args.series))
                continue
            name = f"bb_bench_{uuid.uuid4().hex}"
            admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                results.append(measure(f"{args.pg_server}/{name}", args.series))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    print("| backend | series | features | sync s | CPU s | series/s | re-sync s |")  # noqa: T201
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    for r in results:
        print(  # noqa: T201
            f"| {r['backend']} | {r['series']} | {r['features']} | {r['sync_s']} | "
            f"{r['sync_cpu_s']} | {r['series_per_s']} | {r['resync_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
