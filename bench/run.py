"""De-identification benchmark: ours against gdcmanon, dicognito and deid, on one corpus.

    python bench/run.py [--patients 20 --slices 50 --workdir DIR --only deid,ours --runs 3]

Generates a synthetic corpus with planted PHI (``biobank.dicom.synthetic.write_corpus``) once,
then times every subject on it in one run (median of N runs; warm page cache unless
``--cold``), checks every output for planted-PHI residue and 5 outputs with dciodvfy, prints
markdown tables and writes ``bench-results.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from biobank.dicom import synthetic  # noqa: E402
from biobank.dicom.synthetic import PlantedPHI, make_patient_phi, write_corpus  # noqa: E402
from residue import ResidueChecker  # noqa: E402
from subjects import (  # noqa: E402
    Subject,
    SubjectFailed,
    SubjectUnavailable,
    all_subjects,
    clean_env,
    run_checked,
)

TARGET_VS_GDCM = 1.0  # ours must be faster than gdcmanon -e
TARGET_VS_DICOGNITO = 5.0  # and at least 5x dicognito


@dataclass
class Measurement:
    name: str
    label: str
    notes: str
    kind: str
    version: str = ""
    status: str = "ok"  # ok, unavailable, failed, skipped
    error: str = ""
    files: int = 0
    mbytes: float = 0.0
    runs: list[float] = field(default_factory=list)
    other_cpu_pct: list[float] = field(default_factory=list)
    scale: float = 1.0  # full-corpus seconds / measured seconds (subset runs)
    residue: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) * self.scale if self.runs else float("nan")

    @property
    def files_per_s(self) -> float:
        return self.files * self.scale / self.median if self.runs else float("nan")

    @property
    def mb_per_s(self) -> float:
        return self.mbytes * self.scale / self.median if self.runs else float("nan")


# --- machine state ------------------------------------------------------------------------


def _cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _drop_caches() -> bool:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _warm(paths: list[Path]) -> None:
    for path in paths:
        path.read_bytes()


# --- corpus -------------------------------------------------------------------------------


def _corpus(workdir: Path, args: argparse.Namespace) -> tuple[Path, list[PlantedPHI], float]:
    """Generate the corpus, or reuse one made with the same parameters in ``workdir``."""
    corpus = workdir / "corpus"
    params = {
        "patients": args.patients,
        "ct_slices": args.slices,
        "mr_slices": args.slices,
        "ct_size": args.ct_size,
        "mr_size": args.mr_size,
        "seed": args.seed,
    }
    # A change of the generator invalidates a kept corpus.
    folder = Path(synthetic.__file__).parent
    generator = b"".join(path.read_bytes() for path in sorted(folder.glob("*synthetic*.py")))
    fingerprint = {**params, "generator_sha256": hashlib.sha256(generator).hexdigest()}
    manifest = workdir / "corpus.json"
    reuse = corpus.is_dir() and manifest.exists() and not args.regenerate
    if reuse and json.loads(manifest.read_text()) == fingerprint:
        print(f"reusing corpus {corpus}", file=sys.stderr)
        phis = [make_patient_phi(i, args.seed) for i in range(args.patients)]
        return corpus, phis, float("nan")
    shutil.rmtree(corpus, ignore_errors=True)
    print(f"generating corpus in {corpus} ...", file=sys.stderr)
    start = time.perf_counter()
    summary = write_corpus(corpus, **params)
    seconds = time.perf_counter() - start
    manifest.write_text(json.dumps(fingerprint))
    return corpus, list(summary.patients), seconds


# --- measuring ----------------------------------------------------------------------------


def _measure(
    subject: Subject,
    corpus: Path,
    files: list[Path],
    workdir: Path,
    runs: int,
    cold: bool,
    checker: ResidueChecker,
    deid_subset: int,
) -> Measurement:
    m = Measurement(subject.name, subject.label, subject.notes, subject.kind, subject.version())
    m.files = len(files)
    m.mbytes = sum(p.stat().st_size for p in files) / 1e6
    with tempfile.TemporaryDirectory(prefix=f"bench-{subject.name}-", dir=workdir) as tmp_name:
        tmp = Path(tmp_name)
        try:
            command = subject.setup(tmp)
        except SubjectUnavailable as exc:
            m.status, m.error = "unavailable", str(exc)
            return m
        except SubjectFailed as exc:
            m.status, m.error = "failed", str(exc)
            return m
        if subject.name == "deid" and 0 < deid_subset < len(files):
            m.scale = len(files) / deid_subset
            m.files = deid_subset
            m.mbytes = sum(p.stat().st_size for p in sorted(files)[:deid_subset]) / 1e6
        out = tmp / "out"
        env = clean_env()
        for i in range(runs):
            shutil.rmtree(out, ignore_errors=True)
            if cold:
                _drop_caches()
            else:
                subprocess.run(["sync"], check=False)
                _warm(files)
            busy0, own0, start = _cpu_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
            try:
                for cmd in command(corpus, out):
                    run_checked(cmd, env=env)
            except SubjectFailed as exc:
                m.status, m.error = "failed", str(exc)
                return m
            wall = time.perf_counter() - start
            other = (_cpu_busy_seconds() - busy0) - (_own_cpu_seconds() - own0)
            m.runs.append(wall)
            m.other_cpu_pct.append(max(0.0, 100.0 * other / (wall * (os.cpu_count() or 1))))
            print(f"  {subject.name} run {i + 1}/{runs}: {wall:.2f} s", file=sys.stderr)
        if subject.output_is_corpus:
            report = checker.check(out)
            m.residue = report.to_json()
        subprocess.run(["sync"], check=False)
    return m


# --- output -------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def _tables(
    results: list[Measurement], baseline: dict[str, Any], corpus_info: dict[str, Any], cold: bool
) -> str:
    ours = next((m for m in results if m.name == "ours" and m.status == "ok"), None)
    cp = next((m for m in results if m.name == "cp-sync" and m.status == "ok"), None)
    cache = "cold page cache (dropped before each run)" if cold else "warm page cache"
    lines = [
        f"## De-identification throughput — {corpus_info['files']:,} instances, "
        f"{corpus_info['mbytes']:,.0f} MB, {cache}",
        "",
        "| subject | files/s | MB/s | median s | range s (runs) | other CPU % | "
        "speed vs ours | speed vs cp+sync | notes |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for m in results:
        if m.status != "ok":
            lines.append(
                f"| {m.label} | – | – | – | – | – | – | – | {m.status}: "
                f"{m.error.splitlines()[0] if m.error else ''} |"
            )
            continue
        lo, hi = min(m.runs) * m.scale, max(m.runs) * m.scale
        vs_ours = f"{m.files_per_s / ours.files_per_s:.2f}×" if ours else "–"
        vs_cp = f"{m.files_per_s / cp.files_per_s:.2f}×" if cp else "–"
        version = f"{m.version}; " if m.version else ""
        lines.append(
            f"| {m.label} | {_fmt(m.files_per_s)} | {_fmt(m.mb_per_s)} | {_fmt(m.median, 2)} | "
            f"{lo:.2f}–{hi:.2f} ({len(m.runs)}) | "
            f"{_fmt(statistics.median(m.other_cpu_pct), 0)} | {vs_ours} | {vs_cp} | "
            f"{version}{m.notes} |"
        )
    lines += ["", *_targets(results, ours), ""]
    lines += [
        "## Planted-PHI residue (every output file) and validity (dciodvfy, 5 files)",
        "",
        "| output of | files out | files with planted PHI | PHI categories (files) | "
        "PHI found in (25 files with residue; count shown if not all 25) | "
        "dciodvfy errors (5 files) | "
        "most frequent dciodvfy error |",
        "|---|---:|---:|---|---|---:|---|",
    ]
    rows = [("input corpus (baseline)", baseline)]
    rows += [(m.label, m.residue) for m in results if m.residue]
    for label, r in rows:
        cats = ", ".join(f"{k} {v}" for k, v in r["categories"].items()) or "none"
        attrs = _attribute_summary(r["attributes"], r["attribute_sample_files"])
        top_error = next(iter(r["dciodvfy_top_errors"]), "–")
        lines.append(
            f"| {label} | {r['files']:,} | {r['files_with_planted_phi']:,}/{r['files']:,} | "
            f"{cats} | {attrs} | {sum(r['dciodvfy_errors_per_file'])} "
            f"{r['dciodvfy_errors_per_file']} | {top_error} |"
        )
    return "\n".join(lines)


def _attribute_summary(attributes: dict[str, int], sample: int) -> str:
    """Standard attributes by name; private ones counted per creator (JSON has them all)."""
    if not attributes:
        return "–"
    standard: list[str] = []
    private: dict[str, int] = {}
    for label, count in attributes.items():
        tail = label.rsplit(">", 1)[-1]
        if tail.startswith("(") and ") " in tail:
            creator = tail.split(") ", 1)[1]
            private[creator] = private.get(creator, 0) + 1
        else:
            standard.append(label if count == sample else f"{label} ({count})")
    shown = standard[:14] + [f"+{len(standard) - 14} more"] * (len(standard) > 14)
    shown += [f"{creator} private ×{n}" for creator, n in sorted(private.items())]
    return ", ".join(shown)


def _targets(results: list[Measurement], ours: Measurement | None) -> list[str]:
    out = ["Targets:"]
    for name, target, text in (
        ("gdcmanon", TARGET_VS_GDCM, "ours faster than gdcmanon -e"),
        ("dicognito", TARGET_VS_DICOGNITO, "ours ≥ 5× dicognito"),
    ):
        peer = next((m for m in results if m.name == name and m.status == "ok"), None)
        if ours is None or peer is None:
            out.append(f"- {text}: not measured in this run")
            continue
        ratio = ours.files_per_s / peer.files_per_s
        met = ratio > target if target == 1.0 else ratio >= target
        out.append(
            f"- {text}: ours {ours.files_per_s:,.1f} files/s vs {peer.files_per_s:,.1f} "
            f"= {ratio:.2f}× — {'MET' if met else 'NOT MET'}"
        )
    return out


def _environment() -> dict[str, Any]:
    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    import numpy
    import pydicom

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pydicom": pydicom.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": os.getloadavg(),
        "dciodvfy": shutil.which("dciodvfy") or "missing",
        "git_head": cmd("git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"),
    }


# --- main ---------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--slices", type=int, default=50, help="slices per CT and per MR series")
    parser.add_argument("--ct-size", type=int, default=512)
    parser.add_argument("--mr-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the corpus here (reused when the parameters match) and write "
        "bench-results.json here; default: a temporary folder, removed at the end",
    )
    parser.add_argument("--json", type=Path, help="results file (default: see --workdir)")
    parser.add_argument(
        "--only",
        help="comma-separated subjects: cp,cp-sync,gdcmanon,gdcmanon-dumb,"
        "dicognito,deid,ours,ours-basic (default: all)",
    )
    parser.add_argument("--skip", default="", help="comma-separated subjects to leave out")
    parser.add_argument("--runs", type=int, default=3, help="runs of fast subjects (median)")
    parser.add_argument("--slow-runs", type=int, default=1, help="runs of slow subjects")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="ours: --jobs")
    parser.add_argument(
        "--deid-subset",
        type=int,
        default=500,
        help="run deid on the first N files only and scale its time to the corpus "
        "(default 500, a quarter of the default corpus; 0: all files)",
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the corpus")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    subjects = all_subjects(jobs=args.jobs, deid_subset=args.deid_subset)
    names = {s.name for s in subjects}
    wanted = set(args.only.split(",")) if args.only else names
    wanted -= set(filter(None, args.skip.split(",")))
    if unknown := wanted - names:
        print(f"unknown subjects: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.cold and not _drop_caches():
        print("cannot drop the page cache (not root?): measuring warm", file=sys.stderr)
        args.cold = False

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="biobank-bench-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (
        Path("bench-results.json") if temporary else workdir / "bench-results.json"
    )
    try:
        corpus, phis, gen_seconds = _corpus(workdir, args)
        files = sorted(p for p in corpus.rglob("*.dcm"))
        corpus_info = {
            "files": len(files),
            "mbytes": sum(p.stat().st_size for p in files) / 1e6,
            "patients": args.patients,
            "slices_per_series": args.slices,
            "ct_size": args.ct_size,
            "mr_size": args.mr_size,
            "seed": args.seed,
            "generation_seconds": gen_seconds,
        }
        print(f"corpus: {len(files)} files, {corpus_info['mbytes']:.0f} MB", file=sys.stderr)
        checker = ResidueChecker(corpus, phis)
        baseline = checker.check(corpus)
        results: list[Measurement] = []
        for subject in subjects:
            if subject.name not in wanted:
                continue
            runs = args.slow_runs if subject.slow else args.runs
            print(f"{subject.name} ...", file=sys.stderr)
            results.append(
                _measure(
                    subject, corpus, files, workdir, runs, args.cold, checker, args.deid_subset
                )
            )
        table = _tables(results, baseline.to_json(), corpus_info, args.cold)
        print(table)
        payload = {
            "corpus": corpus_info,
            "cold_cache": args.cold,
            "environment": _environment(),
            "baseline_residue": baseline.to_json(),
            "results": [
                {
                    **asdict(m),
                    "median_s": m.median,
                    "files_per_s": m.files_per_s,
                    "mb_per_s": m.mb_per_s,
                }
                for m in results
            ],
            "table_markdown": table,
        }
        json_path.write_text(json.dumps(payload, indent=2, default=str))
        print(f"\nresults: {json_path}", file=sys.stderr)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
