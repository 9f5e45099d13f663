"""Ingest benchmark: ours (with de-identification) against Orthanc and ``cp``, on one corpus.

    python bench/ingest.py [--workdir DIR] [--patients 20 --slices 50] [--jobs 2] [--runs 1]
                           [--only cp-sync,orthanc-rest,orthanc-stow,orthanc-stow-1,ours]

Uses the corpus of bench/run.py (same generator, same parameters, reused from ``--workdir``
when they match) and measures in one run, on the same files: ``cp -r`` + ``sync`` (the
ceiling), Orthanc receiving the files by REST ``POST /instances`` and by DICOMweb STOW-RS, and
``biobank ingest`` as a site (de-identification on), again into the same home (idempotency:
everything is a duplicate) and as a central node (verification only) from the site's blobs.
Prints a markdown table and writes ``ingest-results.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

import peers  # noqa: E402
from run import _corpus, _cpu_busy_seconds, _own_cpu_seconds, _warm  # noqa: E402
from subjects import _biobank_exe, _ours_version, clean_env  # noqa: E402

TARGET_VS_STOW = 2.0  # ours (site, de-identifying) at least 2x Orthanc's STOW-RS rate
SUBJECTS = (
    "cp-sync",
    "orthanc-rest",
    "orthanc-stow",
    "orthanc-stow-1",
    "ours-site",
    "ours-reingest",
    "ours-central",
)
OURS = ("ours-site", "ours-reingest", "ours-central")


class Unavailable(RuntimeError):
    """The subject cannot run here (tool missing, command not there yet)."""


class Failed(RuntimeError):
    """The subject ran and failed, or did not store what it was given."""


@dataclass
class Figures:
    """One timed run of one subject."""

    seconds: float
    instances: int
    mbytes: float
    cpu_seconds: float  # the subject's processes (and client threads), not the harness
    other_cpu_pct: float  # the rest of the machine, in % of all cores
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    name: str
    label: str
    notes: str
    status: str = "ok"  # ok, unavailable, failed
    error: str = ""
    runs: list[Figures] = field(default_factory=list)

    def _median(self, key: Callable[[Figures], float]) -> float:
        return statistics.median(key(f) for f in self.runs) if self.runs else float("nan")

    @property
    def seconds(self) -> float:
        return self._median(lambda f: f.seconds)

    @property
    def instances(self) -> int:
        return self.runs[0].instances if self.runs else 0

    @property
    def per_second(self) -> float:
        return self._median(lambda f: f.instances / f.seconds)

    @property
    def mb_per_second(self) -> float:
        return self._median(lambda f: f.mbytes / f.seconds)

    @property
    def cpu_seconds(self) -> float:
        return self._median(lambda f: f.cpu_seconds)

    @property
    def other_cpu_pct(self) -> float:
        return self._median(lambda f: f.other_cpu_pct)


# --- processes --------------------------------------------------------------------------------


def _run(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` in its own process group; kill the whole group on timeout or interrupt."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    what = " ".join([Path(cmd[0]).name, *cmd[1:2]])
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise Failed(f"{what}: no result within {timeout:.0f} s") from exc
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        text = (err or out).decode("utf-8", "replace").strip().splitlines()
        tail = "\n".join(text[-12:])
        raise Failed(f"{what} exited with {proc.returncode}:\n{tail}")
    return out.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10.0)
    with contextlib.suppress(ProcessLookupError):  # the leader's workers too
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Probe:
    """Wall time, this harness's and its children's CPU, and the machine's busy CPU over the
    timed part of a subject; ``other_cpu_pct`` is what the rest of the machine used."""

    def __enter__(self) -> Probe:
        self.busy0, self.own0 = _cpu_busy_seconds(), _own_cpu_seconds()
        self.children0 = _children_cpu()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.busy = _cpu_busy_seconds() - self.busy0
        self.own = _own_cpu_seconds() - self.own0
        self.children = _children_cpu() - self.children0

    def other_cpu_pct(self, server_cpu: float = 0.0) -> float:
        """Busy CPU not spent by the harness, its children or ``server_cpu``, in % of all
        cores (clamped: /proc/stat counts in 10 ms ticks)."""
        other = self.busy - self.own - server_cpu
        return min(100.0, max(0.0, 100.0 * other / (self.seconds * (os.cpu_count() or 1))))


# --- subjects ---------------------------------------------------------------------------------


@dataclass
class Context:
    corpus: Path
    files: list[Path]
    mbytes: float
    jobs: int
    clients: int
    batch: int
    timeout: float
    biobank: str | None = None
    site_home: Path | None = None  # set by ours-site, used by ours-reingest and ours-central
    site_stored: int = 0


def measure_cp(ctx: Context, tmp: Path) -> Figures:
    with Probe() as probe:
        _run(["cp", "-r", str(ctx.corpus), str(tmp / "copy")], timeout=ctx.timeout)
        _run(["sync"], timeout=ctx.timeout)
    return Figures(probe.seconds, len(ctx.files), ctx.mbytes, probe.children, probe.other_cpu_pct())


def _measure_orthanc(ctx: Context, tmp: Path, stow: bool, clients: int) -> Figures:
    try:
        with peers.orthanc_server(tmp / "orthanc") as server:
            server_cpu0 = server.cpu_seconds()
            try:
                with Probe() as probe:
                    if stow:
                        sent = peers.stow_rs(
                            server,
                            ctx.files,
                            clients=clients,
                            batch=ctx.batch,
                            deadline_s=ctx.timeout,
                        )
                    else:
                        sent = peers.post_instances(
                            server, ctx.files, clients=clients, deadline_s=ctx.timeout
                        )
            except peers.PeerFailed as exc:
                raise Failed(f"{exc}\nOrthanc log:\n{server.log_tail(5)}") from exc
            server_cpu = server.cpu_seconds() - server_cpu0
            stats = server.statistics()
    except peers.PeerUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    count = int(stats.get("CountInstances", -1))  # type: ignore[call-overload]
    if count != len(ctx.files):
        raise Failed(f"Orthanc holds {count} instances after {len(ctx.files)} were sent")
    details = {
        "clients": clients,
        "requests": sent.requests,
        "orthanc_cpu_seconds": server_cpu,
        "client_cpu_seconds": sent.client_cpu_seconds,
        "orthanc_statistics": stats,
    }
    if stow:
        details["instances_per_request"] = ctx.batch
    return Figures(
        sent.seconds,
        len(ctx.files),
        ctx.mbytes,
        server_cpu + sent.client_cpu_seconds,
        probe.other_cpu_pct(server_cpu),
        details,
    )


def measure_orthanc_rest(ctx: Context, tmp: Path) -> Figures:
    return _measure_orthanc(ctx, tmp, stow=False, clients=ctx.clients)


def measure_orthanc_stow(ctx: Context, tmp: Path) -> Figures:
    return _measure_orthanc(ctx, tmp, stow=True, clients=ctx.clients)


def measure_orthanc_stow_1(ctx: Context, tmp: Path) -> Figures:
    return _measure_orthanc(ctx, tmp, stow=True, clients=1)


def _biobank(ctx: Context) -> str:
    if ctx.biobank is None:
        try:
            exe = _biobank_exe()
        except Exception as exc:
            raise Unavailable(f"biobank is not installed: {exc}") from exc
        for command in ("init", "ingest"):
            proc = subprocess.run(
                [exe, command, "--help"], capture_output=True, check=False, timeout=120
            )
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
                last = [line for line in tail.splitlines() if line.strip("│ ╰─╭╮╯")]
                raise Unavailable(
                    f"`biobank {command}` is not available yet: "
                    + (last[-1].strip("│ ") if last else "no output")
                )
        ctx.biobank = exe
    return ctx.biobank


def _ingest_summary(stdout: str) -> dict[str, Any]:
    """The ``summary`` of the JSON document ``biobank ingest --json`` prints on stdout."""
    start = stdout.find("{")
    if start < 0:
        raise Failed(f"biobank ingest --json printed no JSON: {stdout[-300:]!r}")
    try:
        document, _ = json.JSONDecoder().raw_decode(stdout[start:])
    except json.JSONDecodeError as exc:
        raise Failed(f"biobank ingest --json printed invalid JSON: {exc}") from exc
    summary = document.get("summary") if isinstance(document, dict) else None
    if not isinstance(summary, dict):
        raise Failed(f"no summary in biobank ingest --json output: {stdout[:300]!r}")
    return {"batch_id": document.get("batch_id"), **summary}


def _ingest(ctx: Context, source: Path, home: Path) -> tuple[Probe, dict[str, Any]]:
    cmd = [_biobank(ctx), "ingest", str(source), "--home", str(home)]
    cmd += ["--jobs", str(ctx.jobs), "--json"]
    with Probe() as probe:
        out = _run(cmd, timeout=ctx.timeout, env=clean_env())
    return probe, _ingest_summary(out)


def _ours_figures(
    probe: Probe, instances: int, mbytes: float, summary: dict[str, Any], jobs: int
) -> Figures:
    details = {"summary": summary, "jobs": jobs}
    return Figures(probe.seconds, instances, mbytes, probe.children, probe.other_cpu_pct(), details)


def _check(summary: dict[str, Any], **expected: int) -> None:
    wrong = {k: (summary.get(k), v) for k, v in expected.items() if summary.get(k) != v}
    if wrong:
        shown = ", ".join(f"{k} = {got} (expected {want})" for k, (got, want) in wrong.items())
        raise Failed(f"biobank ingest: {shown}; summary {json.dumps(summary)}")


def measure_ours_site(ctx: Context, tmp: Path) -> Figures:
    exe = _biobank(ctx)
    home = tmp / "site-home"
    _run(
        [exe, "init", "--home", str(home), "--site", "bench", "--role", "site"],
        timeout=120,
        env=clean_env(),
    )
    ctx.site_home, ctx.site_stored = None, 0
    probe, summary = _ingest(ctx, ctx.corpus, home)
    n = len(ctx.files)
    _check(summary, inputs=n, stored=n, rejected=0, quarantined=0, conflict=0)
    ctx.site_home, ctx.site_stored = home, int(summary["stored"])
    return _ours_figures(probe, n, ctx.mbytes, summary, ctx.jobs)


def measure_ours_reingest(ctx: Context, _tmp: Path) -> Figures:
    if ctx.site_home is None:
        raise Unavailable("needs ours-site in the same run (its home is ingested again)")
    probe, summary = _ingest(ctx, ctx.corpus, ctx.site_home)
    n = len(ctx.files)
    _check(summary, inputs=n, stored=0, duplicate=n, rejected=0, quarantined=0, conflict=0)
    return _ours_figures(probe, n, ctx.mbytes, summary, ctx.jobs)


def measure_ours_central(ctx: Context, tmp: Path) -> Figures:
    if ctx.site_home is None:
        raise Unavailable("needs ours-site in the same run (its blobs are the input)")
    exe = _biobank(ctx)
    home = tmp / "central-home"
    _run([exe, "init", "--home", str(home), "--role", "central"], timeout=120, env=clean_env())
    blobs = ctx.site_home / "blobs"
    sizes = [p.stat().st_size for p in blobs.rglob("*") if p.is_file()]
    _warm([p for p in blobs.rglob("*") if p.is_file()])
    probe, summary = _ingest(ctx, blobs, home)
    _check(summary, stored=ctx.site_stored, rejected=0, quarantined=0, conflict=0)
    mbytes = float(summary.get("bytes_in") or sum(sizes)) / 1e6
    figures = _ours_figures(probe, int(summary["stored"]), mbytes, summary, ctx.jobs)
    figures.details["blob_files"] = len(sizes)
    return figures


MEASURE: dict[str, Callable[[Context, Path], Figures]] = {
    "cp-sync": measure_cp,
    "orthanc-rest": measure_orthanc_rest,
    "orthanc-stow": measure_orthanc_stow,
    "orthanc-stow-1": measure_orthanc_stow_1,
    "ours-site": measure_ours_site,
    "ours-reingest": measure_ours_reingest,
    "ours-central": measure_ours_central,
}


def _labels(ctx: Context) -> dict[str, tuple[str, str]]:
    def clients(n: int) -> str:
        return f"{n} concurrent httpx client{'s' * (n > 1)} (threads), keep-alive"

    orthanc = peers.orthanc_version()
    orthanc = "Orthanc" if orthanc in ("missing", "?") else orthanc
    dicomweb = peers.dicomweb_version().split("+")[0]
    storage = "SQLite index, fresh storage, SyncStorageArea on (Orthanc's default)"
    return {
        "cp-sync": ("cp -r + sync (ceiling)", "copy of the corpus folder, then sync"),
        "orthanc-rest": (
            f"{orthanc} REST POST /instances ({ctx.clients} clients)",
            f"one file per request, {clients(ctx.clients)}; {storage}",
        ),
        "orthanc-stow": (
            f"{orthanc} + DICOMweb {dicomweb} STOW-RS ({ctx.clients} clients)",
            f"{ctx.batch} files per multipart/related request, {clients(ctx.clients)}; {storage}",
        ),
        "orthanc-stow-1": (
            f"{orthanc} + DICOMweb {dicomweb} STOW-RS (1 client)",
            "same with one client: the set-up of the issue's reference figure (≈ 140–175/s)",
        ),
        "ours-site": (
            f"**biobank ingest, site** (de-identification, --jobs {ctx.jobs})",
            "`biobank ingest CORPUS --home H --jobs N --json` into a fresh site home "
            "(default profile); whole command wall-clock",
        ),
        "ours-reingest": (
            f"biobank ingest again (idempotency, --jobs {ctx.jobs})",
            "same corpus into the same home: every instance a duplicate, nothing stored",
        ),
        "ours-central": (
            f"biobank ingest, central (verification only, --jobs {ctx.jobs})",
            "the site home's blobs (de-identified) into a fresh central home",
        ),
    }


# --- running ----------------------------------------------------------------------------------


def _run_subject(ctx: Context, m: Measurement, run_tmp: Path, label: str) -> None:
    """One timed run of ``m`` in ``run_tmp/<name>``, removed afterwards (ours-site's home is
    kept for ours-reingest and ours-central until the end of the run)."""
    subprocess.run(["sync"], check=False)  # flush the previous subject's writes, untimed
    _warm(ctx.files)
    folder = run_tmp / m.name
    folder.mkdir()
    try:
        figures = MEASURE[m.name](ctx, folder)
    except Unavailable as exc:
        m.status, m.error = "unavailable", str(exc)
        print(f"  {m.name}: unavailable: {exc}", file=sys.stderr)
        return
    except Failed as exc:
        m.status, m.error = "failed", str(exc)
        print(f"  {m.name}: FAILED: {exc}", file=sys.stderr)
        return
    finally:
        if m.name != "ours-site":
            shutil.rmtree(folder, ignore_errors=True)
    wall = figures.seconds
    m.runs.append(figures)
    print(
        f"  {m.name} {label}: {figures.instances} instances in {wall:.2f} s "
        f"= {figures.instances / wall:.1f}/s",
        file=sys.stderr,
    )


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def _table(results: list[Measurement], corpus: dict[str, Any]) -> str:
    stow = next((m for m in results if m.name == "orthanc-stow" and m.status == "ok"), None)
    stow_clients = f"{stow.runs[0].details['clients']} clients" if stow else "–"
    lines = [
        f"## Ingest — {corpus['files']:,} instances (CT and MR), {corpus['mbytes']:,.0f} MB, "
        "warm page cache",
        "",
        "| subject | instances | seconds | instances/s | MB/s | vs Orthanc STOW-RS "
        f"({stow_clients}) | "
        "CPU s | other CPU % | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in results:
        if m.status != "ok" or not m.runs:
            first = m.error.splitlines()[0] if m.error else ""
            lines.append(f"| {m.label} | – | – | – | – | – | – | – | **{m.status}**: {first} |")
            continue
        ratio = f"{m.per_second / stow.per_second:.2f}×" if stow else "–"
        runs = f" (median of {len(m.runs)} runs)" if len(m.runs) > 1 else ""
        summary = m.runs[0].details.get("summary")
        if summary and summary.get("seconds"):
            inner = statistics.median(f.details["summary"]["seconds"] for f in m.runs)
            runs += (
                f"; inside the command (its JSON): {inner:.2f} s = "
                f"{m.instances / inner:,.1f}/s, the rest is start-up and exit"
            )
        lines.append(
            f"| {m.label} | {m.instances:,} | {_fmt(m.seconds, 2)} | {_fmt(m.per_second)} | "
            f"{_fmt(m.mb_per_second)} | {ratio} | {_fmt(m.cpu_seconds)} | "
            f"{_fmt(m.other_cpu_pct, 0)} | {m.notes}{runs} |"
        )
    lines += ["", _target(results, stow)]
    return "\n".join(lines)


def _target(results: list[Measurement], stow: Measurement | None) -> str:
    ok = {m.name: m for m in results if m.status == "ok" and m.runs}
    ours = ok.get("ours-site")
    clients = f"{stow.runs[0].details['clients']} clients" if stow else "?"
    text = f"Target: ours (site, de-identifying) ≥ {TARGET_VS_STOW:.0f}× Orthanc STOW-RS"
    if ours is None or stow is None:
        missing = " and ".join(
            name for name, m in (("ours-site", ours), ("orthanc-stow", stow)) if m is None
        )
        return f"{text}: not measured in this run ({missing} missing)"
    ratio = ours.per_second / stow.per_second
    verdict = "MET" if ratio >= TARGET_VS_STOW else "NOT MET"
    line = (
        f"{text} ({clients}): ours {ours.per_second:,.1f} instances/s vs "
        f"{stow.per_second:,.1f} = {ratio:.2f}× — **{verdict}**"
    )
    if one := ok.get("orthanc-stow-1"):
        ratio_one = ours.per_second / one.per_second
        verdict_one = "met" if ratio_one >= TARGET_VS_STOW else "not met"
        line += (
            f"; against STOW-RS with 1 client ({one.per_second:,.1f}/s, the issue's "
            f"reference set-up): {ratio_one:.2f}× — {verdict_one}"
        )
    return line


def _environment(jobs: int, clients: int) -> dict[str, Any]:
    import httpx

    head = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "orthanc": peers.orthanc_version(),
        "orthanc_dicomweb": peers.dicomweb_version(),
        "httpx": httpx.__version__,
        "biobank": _ours_version(),
        "jobs": jobs,
        "http_clients": clients,
        "git_head": head,
    }


# --- main -------------------------------------------------------------------------------------


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
        help="keep the corpus here (shared with bench/run.py, reused when the parameters "
        "match) and write ingest-results.json here; default: a temporary folder",
    )
    parser.add_argument("--json", type=Path, help="results file (default: see --workdir)")
    parser.add_argument(
        "--only",
        help=f"comma-separated subjects: {','.join(SUBJECTS)}; `ours` means the three ours-* "
        "(default: all)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per subject (median)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="ours: --jobs")
    parser.add_argument(
        "--clients", type=int, default=2, help="concurrent HTTP clients sending to Orthanc"
    )
    parser.add_argument("--batch", type=int, default=20, help="instances per STOW-RS request")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per subject run"
    )
    parser.add_argument("--regenerate", action="store_true", help="regenerate the corpus")
    return parser.parse_args(argv)


def _wanted(only: str | None) -> list[str] | None:
    if not only:
        return list(SUBJECTS)
    names: list[str] = []
    for name in filter(None, only.split(",")):
        names += OURS if name == "ours" else [name]
    if unknown := set(names) - set(SUBJECTS):
        print(f"unknown subjects: {', '.join(sorted(unknown))}", file=sys.stderr)
        return None
    return [s for s in SUBJECTS if s in names]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    wanted = _wanted(args.only)
    if wanted is None:
        return 2
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="biobank-ingest-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (
        Path("ingest-results.json") if temporary else workdir / "ingest-results.json"
    )
    try:
        with peers.terminate_as_exit():
            corpus, _phis, gen_seconds = _corpus(workdir, args)
            files = sorted(corpus.rglob("*.dcm"))
            mbytes = sum(p.stat().st_size for p in files) / 1e6
            corpus_info = {
                "files": len(files),
                "mbytes": mbytes,
                "patients": args.patients,
                "slices_per_series": args.slices,
                "generation_seconds": gen_seconds,
            }
            print(f"corpus: {len(files)} files, {mbytes:.0f} MB", file=sys.stderr)
            ctx = Context(corpus, files, mbytes, args.jobs, args.clients, args.batch, args.timeout)
            labels = _labels(ctx)
            results = [Measurement(name, *labels[name]) for name in wanted]
            # Runs are interleaved (every subject once, then again) so that a busy spell of
            # this shared machine does not fall on one subject only.
            for i in range(args.runs):
                ctx.site_home = None
                with tempfile.TemporaryDirectory(prefix="ingest-run-", dir=workdir) as run_tmp:
                    for m in results:
                        if m.status != "ok":
                            continue
                        print(f"{m.name} (run {i + 1}/{args.runs}) ...", file=sys.stderr)
                        _run_subject(ctx, m, Path(run_tmp), f"run {i + 1}")
                    ctx.site_home = None
                    subprocess.run(["sync"], check=False)
            table = _table(results, corpus_info)
            print(table)
            payload = {
                "corpus": corpus_info,
                "environment": _environment(args.jobs, args.clients),
                "results": [
                    {
                        **asdict(m),
                        "instances": m.instances,
                        "seconds": m.seconds,
                        "instances_per_second": m.per_second,
                        "mb_per_second": m.mb_per_second,
                        "cpu_seconds": m.cpu_seconds,
                        "other_cpu_pct": m.other_cpu_pct,
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
