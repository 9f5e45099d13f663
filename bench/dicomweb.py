"""DICOMweb benchmark: our node against Orthanc holding the same data, side by side in one run.

    python bench/dicomweb.py [--instances 2000] [--runs 3] [--workdir DIR] [--json FILE]
                             [--samples 50] [--warmup 5]

Uses the corpus of bench/run.py (same generator; reused from ``--workdir`` when the parameters
match). Measures STOW-RS throughput (multipart bodies of 50 instances, file bytes as-is, 1 and
4 concurrent keep-alive httpx clients, a fresh empty server per measurement) into Orthanc +
DICOMweb, into a site node (``biobank serve``, de-identifying on STOW) and into a central node
(receiving the site node's stored, de-identified instances); then, on the servers of the last
run, QIDO-RS and WADO-RS series metadata latency (p50/p95 of sequential GETs, requests to the
three servers interleaved) and whether each answer holds what the server was given. Prints one
markdown table and writes ``dicomweb-results.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import biobank  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

import httpx  # noqa: E402
import pydicom  # noqa: E402

import peers  # noqa: E402
from biobank.access import AccessService  # noqa: E402
from biobank.access.models import Role  # noqa: E402
from biobank.ingest.node import NodeRole, init_node  # noqa: E402
from ingest import Probe  # noqa: E402
from run import _corpus, _warm  # noqa: E402
from subjects import _biobank_exe, _ours_version  # noqa: E402

TARGET_STOW = 2.0  # ours at least 2x Orthanc's STOW-RS rate
BATCH = 50  # instances per STOW-RS request, as in shared/research/peer-benchmarks.md
CLIENTS = (1, 4)
SERVERS = ("orthanc", "site", "central")
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0

# Study, series, instance UIDs and the attributes the checks read (DICOM JSON keys).
STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"
PATIENT_ID, PATIENT_NAME = "00100020", "00100010"


class Unavailable(RuntimeError):
    """A server cannot run here (not installed, does not start)."""


class Failed(RuntimeError):
    """A server ran and refused or lost something."""


# --- processes --------------------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its live descendants and its reaped children (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    if pid not in stats:
        return float("nan")
    # After the command name: ppid is [1], utime [11], stime [12], cutime [13], cstime [14].
    total = int(stats[pid][13]) + int(stats[pid][14])
    todo = [pid]
    while todo:
        current = todo.pop()
        total += int(stats[current][11]) + int(stats[current][12])
        todo += [c for c in children.get(current, []) if c in stats]
    return total / tick


@dataclass
class Server:
    """A running DICOMweb server."""

    kind: str  # orthanc, site, central
    root: str  # the DICOMweb root URL
    pid: int
    folder: Path
    log: Path
    store_headers: dict[str, str] = field(default_factory=dict)
    query_headers: dict[str, str] = field(default_factory=dict)
    blobs: Path | None = None  # ours: the blob store

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stored_files(self) -> list[Path]:
        """Ours: the instances as stored (de-identified on a site node)."""
        assert self.blobs is not None
        return sorted(p for p in (self.blobs / "sha256").rglob("*") if p.is_file())


@contextlib.contextmanager
def orthanc(folder: Path) -> Iterator[Server]:
    """Orthanc + DICOMweb with fresh storage (bench/peers.py), stopped on exit."""
    with peers.orthanc_server(folder) as found:
        yield Server("orthanc", f"{found.url}/dicom-web", found.process.pid, folder, found.log)


def serve_command() -> list[str]:
    """``biobank serve --no-dimse`` (``--home`` and ``--port`` are added per server)."""
    try:
        exe = _biobank_exe()
    except Exception as exc:  # noqa: BLE001 - reported as unavailable
        raise Unavailable(f"biobank is not installed: {exc}") from exc
    proc = subprocess.run([exe, "serve", "--help"], capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
        raise Unavailable(f"`biobank serve` does not run: {lines[-1] if lines else '?'}")
    return [exe, "serve", "--no-dimse"]


def _user_tokens(home: Path, role: NodeRole) -> tuple[str, str]:
    """Create the node and an uploader (STOW) and an admin (queries); their API tokens."""
    node = init_node(home, site="bench", role=role)
    catalog = node.open_catalog()
    try:
        access = AccessService(catalog)
        access.create_user("bench-uploader", Role.UPLOADER)
        access.create_user("bench-admin", Role.ADMIN)
        return (
            access.create_token("bench-uploader", "bench")[1],
            access.create_token("bench-admin", "bench")[1],
        )
    finally:
        catalog.close()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (uvicorn shuts down, the ingest pool closes), then SIGKILL the rest
    of its process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # pool workers left behind
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def our_node(folder: Path, role: NodeRole, command: list[str]) -> Iterator[Server]:
    """A fresh node home of ``role`` served over HTTP on a free loopback port."""
    home = folder / "home"
    upload_token, admin_token = _user_tokens(home, role)
    port = peers.free_port()
    log = folder / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONNOUSERSITE"] = "1"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [*command, "--home", str(home), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,  # its own group: the pool workers are stopped with it
            preexec_fn=peers._die_with_parent,  # no client threads run yet
        )
    kind = "site" if role is NodeRole.SITE else "central"
    url = f"http://127.0.0.1:{port}"
    server = Server(
        kind,
        f"{url}/dicomweb",
        proc.pid,
        folder,
        log,
        store_headers={"Authorization": f"Bearer {upload_token}"},
        query_headers={"Authorization": f"Bearer {admin_token}"},
        blobs=home / "blobs",
    )
    try:
        _wait_healthy(proc, url, server)
        yield server
    finally:
        _stop_group(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise Unavailable(f"/healthz did not answer 200 within {START_TIMEOUT_S:.0f} s")


# --- STOW-RS ----------------------------------------------------------------------------------


@dataclass
class StowRun:
    """One timed STOW-RS of the whole input into a fresh server."""

    seconds: float
    instances: int
    mbytes: float
    server_cpu_seconds: float
    client_cpu_seconds: float
    other_cpu_pct: float
    requests: int
    first_response_s: float  # from the start to the first answer (ours: pool start-up)

    @property
    def rate_after_first(self) -> float:
        """Instances/s after the first answer (meaningful with one client)."""
        rest = self.seconds - self.first_response_s
        return (self.instances - BATCH) / rest if rest > 0 and self.instances > BATCH else math.nan


@dataclass
class StowRow:
    """Every run of one server with one client count."""

    server: str
    clients: int
    status: str = "ok"  # ok, unavailable, failed
    error: str = ""
    runs: list[StowRun] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        if not self.runs:
            return float("nan")
        return statistics.median(r.instances / r.seconds for r in self.runs)

    @property
    def other_cpu_pct(self) -> float:
        return statistics.median(r.other_cpu_pct for r in self.runs) if self.runs else math.nan


def stow(
    server: Server, files: list[Path], clients: int, deadline_s: float
) -> tuple[peers.SendResult, float]:
    """POST ``files`` to ``{root}/studies`` in bodies of BATCH, with ``clients`` threads; every
    answer must reference every instance sent. Also returns when the first answer came."""
    url = f"{server.root}/studies"
    answered: list[float] = []

    def send(client: httpx.Client, paths: list[Path]) -> int:
        boundary = f"bench-{uuid.uuid4().hex}"
        response = client.post(
            url,
            content=peers.multipart_related(paths, boundary),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
                **server.store_headers,
            },
        )
        answered.append(time.perf_counter())
        if response.status_code != 200:
            raise peers.PeerFailed(f"STOW-RS: HTTP {response.status_code} {response.text[:400]}")
        body = response.json()
        failed = body.get("00081198", {}).get("Value", [])
        referenced = body.get("00081199", {}).get("Value", [])
        if failed:
            raise peers.PeerFailed(f"STOW-RS: {len(failed)} instances in FailedSOPSequence")
        if len(referenced) != len(paths):
            raise peers.PeerFailed(
                f"STOW-RS: {len(referenced)} instances referenced for {len(paths)} sent"
            )
        return len(referenced)

    work = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
    start = time.perf_counter()
    sent = peers._run_clients(work, clients, deadline_s, send)
    return sent, min(answered, default=math.nan) - start


@dataclass
class Context:
    """What every STOW-RS run needs."""

    corpus_files: list[Path]
    serve: list[str] | None  # ours: the command, None when it does not run
    serve_error: str
    timeout: float
    site_input: list[Path] = field(default_factory=list)  # central's input: site blobs


def _start(kind: str, folder: Path, ctx: Context) -> contextlib.AbstractContextManager[Server]:
    if kind == "orthanc":
        return orthanc(folder)
    role = NodeRole.SITE if kind == "site" else NodeRole.CENTRAL
    if ctx.serve is None:
        raise Unavailable(ctx.serve_error)
    return our_node(folder, role, ctx.serve)


def _count_held(server: Server) -> int:
    if server.kind == "orthanc":
        response = httpx.get(f"{server.root.rsplit('/', 1)[0]}/statistics", timeout=30.0)
        response.raise_for_status()
        return int(response.json()["CountInstances"])
    return len(server.stored_files())


def measure_stow(
    row: StowRow, ctx: Context, folder: Path, keep: contextlib.ExitStack | None
) -> Server:
    """One run of ``row`` in ``folder``. The server keeps running in ``keep`` when given, else
    it is stopped (its folder stays: the caller removes it)."""
    files = ctx.site_input if row.server == "central" else ctx.corpus_files
    if not files:
        raise Unavailable("needs the site node's stored instances (the site row failed)")
    mbytes = sum(p.stat().st_size for p in files) / 1e6
    subprocess.run(["sync"], check=False)  # the previous run's writes, untimed
    _warm(files)
    with contextlib.ExitStack() as stack:  # the server stops here unless moved to ``keep``
        try:
            server = stack.enter_context(_start(row.server, folder, ctx))
        except peers.PeerUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        cpu0 = server.cpu_seconds()
        try:
            with Probe() as probe:
                sent, first = stow(server, files, row.clients, ctx.timeout)
        except peers.PeerFailed as exc:
            raise Failed(f"{exc}\nserver log:\n{server.log_tail(8)}") from exc
        server_cpu = server.cpu_seconds() - cpu0
        held = _count_held(server)
        if held != len(files):
            raise Failed(f"the server holds {held} instances after {len(files)} were sent")
        row.runs.append(
            StowRun(
                sent.seconds,
                len(files),
                mbytes,
                server_cpu,
                sent.client_cpu_seconds,
                probe.other_cpu_pct(server_cpu),
                sent.requests,
                first,
            )
        )
        if keep is not None:
            keep.enter_context(stack.pop_all())
        return server


# --- what each server holds -------------------------------------------------------------------


@dataclass
class Holding:
    """Patients, studies, series and instances of the files a server was given (or stored)."""

    studies_of_patient: dict[str, set[str]] = field(default_factory=dict)
    series_of_study: dict[str, set[str]] = field(default_factory=dict)
    instances_of_series: dict[str, set[str]] = field(default_factory=dict)
    study_of_series: dict[str, str] = field(default_factory=dict)
    name_of_study: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, files: list[Path]) -> Holding:
        held = cls()
        tags = [0x00080005, 0x00100010, 0x00100020, 0x0020000D, 0x0020000E, 0x00080018]
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            held.studies_of_patient.setdefault(str(ds.get("PatientID", "")), set()).add(study)
            held.series_of_study.setdefault(study, set()).add(series)
            held.instances_of_series.setdefault(series, set()).add(str(ds.SOPInstanceUID))
            held.study_of_series[series] = study
            held.name_of_study[study] = str(ds.get("PatientName", ""))
        return held

    def studies_named(self, prefix: str, *, fold: bool = False) -> frozenset[str]:
        if fold:
            prefix = prefix.casefold()
            return frozenset(
                s for s, n in self.name_of_study.items() if n.casefold().startswith(prefix)
            )
        return frozenset(s for s, n in self.name_of_study.items() if n.startswith(prefix))


# --- QIDO-RS and WADO-RS metadata ---------------------------------------------------------------

KINDS: tuple[tuple[str, str], ...] = (
    ("patient", "QIDO studies?PatientID={id}"),
    ("series", "QIDO studies/{uid}/series"),
    ("instances", "QIDO studies/{uid}/series/{uid}/instances"),
    ("name", "QIDO studies?PatientName=ABC* (literal *)"),
    ("name-encoded", "QIDO studies?PatientName=ABC%2A (percent-encoded, as clients send it)"),
    ("name-non-ascii", "QIDO studies?PatientName=<non-ASCII prefix>* (UTF-8 percent-encoded)"),
    ("includefield", "QIDO studies?PatientID={id}&includefield=all"),
    ("metadata", "WADO-RS studies/{uid}/series/{uid}/metadata"),
)


@dataclass(frozen=True)
class Query:
    """One GET and what its answer must hold (the values of ``key`` in every item)."""

    path: str  # relative to the DICOMweb root, already percent-encoded
    key: str
    expected: frozenset[str]
    also_right: frozenset[str] | None = None  # case-insensitive name matching, also correct


@dataclass
class Latency:
    """The timed GETs of one query kind on one server."""

    kind: str
    server: str
    note: str = ""
    status: str = "ok"  # ok, unavailable, failed
    error: str = ""
    samples_ms: list[float] = field(default_factory=list)
    right: int = 0
    results: list[int] = field(default_factory=list)
    attributes: list[int] = field(default_factory=list)  # attributes per match (most)
    http_status: dict[str, int] = field(default_factory=dict)
    example: str = ""  # one query as sent (the pseudonym or name prefix in it; synthetic data)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the samples (p95 of 50 = the 48th smallest)."""
        if not self.samples_ms:
            return math.nan
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms) if self.samples_ms else math.nan

    @property
    def p95(self) -> float:
        return self.quantile(0.95)

    @property
    def all_right(self) -> bool:
        return bool(self.samples_ms) and self.right == len(self.samples_ms)


def _listing(client: httpx.Client, server: Server) -> list[dict[str, Any]]:
    response = client.get(f"{server.root}/studies", headers=_accept(server))
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json() if response.status_code != 204 else []
    return found


def _accept(server: Server) -> dict[str, str]:
    return {"Accept": "application/dicom+json", **server.query_headers}


def _value(item: dict[str, Any], key: str) -> str:
    values = item.get(key, {}).get("Value") or [""]
    first = values[0]
    if isinstance(first, dict):  # PN
        return str(first.get("Alphabetic", ""))
    return str(first)


def _prefixes(names: list[str], *, ascii_only: bool) -> list[str]:
    """ASCII: the first three letters (fewer when a non-ASCII one comes sooner). Non-ASCII: the
    shortest prefix (of three letters or more) that ends on a non-ASCII letter."""
    found: set[str] = set()
    for name in names:
        family = name.split("^")[0]
        if ascii_only:
            head = family[:3]
            while head and not (head.isascii() and head.isalnum()):
                head = head[:-1]
            if head:
                found.add(head)
            continue
        for i, char in enumerate(family):
            if not char.isascii():
                found.add(family[: max(3, i + 1)])
                break
    return sorted(found)


def plan_queries(
    server: Server, listing: list[dict[str, Any]], held: Holding, original_names: list[str]
) -> tuple[dict[str, list[Query]], dict[str, str]]:
    """The queries of every kind for ``server``, from its own /studies answer; notes."""
    notes: dict[str, str] = {}
    listed = {_value(m, STUDY) for m in listing}
    if listed != set(held.series_of_study):
        raise Failed(
            f"/studies lists {len(listed)} studies; the server was given "
            f"{len(held.series_of_study)}"
        )
    patients = sorted({_value(m, PATIENT_ID) for m in listing})
    names = sorted({_value(m, PATIENT_NAME) for m in listing})
    studies = sorted(listed)
    series = sorted(held.study_of_series)

    def by_patient(suffix: str = "") -> list[Query]:
        return [
            Query(
                f"studies?PatientID={quote(p, safe='')}{suffix}",
                STUDY,
                frozenset(held.studies_of_patient.get(p, set())),
            )
            for p in patients
        ]

    def by_name(prefixes: list[str], star: str) -> list[Query]:
        return [
            Query(
                f"studies?PatientName={quote(p, safe='')}{star}",
                STUDY,
                held.studies_named(p),
                held.studies_named(p, fold=True),
            )
            for p in prefixes
        ]

    ascii_prefixes = _prefixes(names, ascii_only=True)
    non_ascii = _prefixes(names, ascii_only=False)
    if not non_ascii:
        non_ascii = ascii_prefixes
        notes["name-non-ascii"] = (
            "its patient names are ASCII pseudonyms: searched with a prefix of its own"
        )
        probe = _prefixes(original_names, ascii_only=False)
        if probe:
            notes["non-ascii-probe"] = probe[0]
    plan = {
        "patient": by_patient(),
        "series": [
            Query(f"studies/{s}/series", SERIES, frozenset(held.series_of_study[s]))
            for s in studies
        ],
        "instances": [
            Query(
                f"studies/{held.study_of_series[s]}/series/{s}/instances",
                SOP,
                frozenset(held.instances_of_series[s]),
            )
            for s in series
        ],
        "name": by_name(ascii_prefixes, "*"),
        "name-encoded": by_name(ascii_prefixes, "%2A"),
        "name-non-ascii": by_name(non_ascii, "*"),
        "includefield": by_patient("&includefield=all"),
        "metadata": [
            Query(
                f"studies/{held.study_of_series[s]}/series/{s}/metadata",
                SOP,
                frozenset(held.instances_of_series[s]),
            )
            for s in series
        ],
    }
    return plan, notes


def _check(response: httpx.Response, query: Query, row: Latency) -> None:
    code = str(response.status_code)
    row.http_status[code] = row.http_status.get(code, 0) + 1
    if response.status_code == 204:
        matches: list[dict[str, Any]] = []
    elif response.status_code == 200:
        matches = response.json()
    else:
        row.results.append(0)
        return
    got = {_value(m, query.key) for m in matches}
    row.results.append(len(matches))
    row.attributes.append(max((len(m) for m in matches), default=0))
    if got == query.expected or (query.also_right is not None and got == query.also_right):
        row.right += 1


def measure_latency(
    servers: list[Server],
    plans: dict[str, dict[str, list[Query]]],
    samples: int,
    warmup: int,
    notes: dict[str, dict[str, str]],
) -> tuple[list[Latency], dict[str, Any]]:
    """Every kind in turn; within a kind, one GET per server in turn (so that a busy spell of
    the machine falls on all of them)."""
    rows: list[Latency] = []
    clients = {
        s.kind: httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), trust_env=False)
        for s in servers
    }
    cpu0 = {s.kind: s.cpu_seconds() for s in servers}
    try:
        with Probe() as probe:
            for kind, _label in KINDS:
                current = {
                    s.kind: Latency(kind, s.kind, notes.get(s.kind, {}).get(kind, ""))
                    for s in servers
                }
                for s in servers:
                    if plans[s.kind][kind]:
                        current[s.kind].example = plans[s.kind][kind][0].path
                for i in range(warmup + samples):
                    for s in servers:
                        row = current[s.kind]
                        queries = plans[s.kind][kind]
                        if not queries:
                            row.status, row.error = "unavailable", "nothing to search for"
                        if row.status != "ok":
                            continue
                        query = queries[i % len(queries)]
                        try:
                            start = time.perf_counter()
                            response = clients[s.kind].get(
                                f"{s.root}/{query.path}", headers=_accept(s)
                            )
                            elapsed = (time.perf_counter() - start) * 1000.0
                        except httpx.HTTPError as exc:
                            row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"
                            continue
                        if i >= warmup:
                            row.samples_ms.append(elapsed)
                            _check(response, query, row)
                rows += current.values()
        server_cpu = sum(s.cpu_seconds() - cpu0[s.kind] for s in servers)
        phase: dict[str, Any] = {
            "seconds": probe.seconds,
            "server_cpu_seconds": server_cpu,
            "other_cpu_pct": probe.other_cpu_pct(server_cpu),
        }
        for s in servers:  # ours on an original non-ASCII name: must answer 200, no match
            if prefix := notes.get(s.kind, {}).get("non-ascii-probe"):
                path = f"studies?PatientName={quote(prefix, safe='')}*"
                status: int | str
                try:
                    response = clients[s.kind].get(f"{s.root}/{path}", headers=_accept(s))
                    status = response.status_code
                    body = response.json() if status == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    status, body = f"{type(exc).__name__}: {exc}", None
                phase[f"{s.kind}_non_ascii_probe"] = {
                    "path": path,
                    "status": status,
                    "matches": len(body) if isinstance(body, list) else None,
                }
    finally:
        for client in clients.values():
            client.close()
    return rows, phase


def _latency(
    servers: dict[str, Server], files: list[Path], args: argparse.Namespace
) -> tuple[list[Latency], dict[str, Any]]:
    """Plan each server's queries from its own /studies answer and what it holds, then time."""
    print("reading what each server holds ...", file=sys.stderr)
    original = Holding.read(files)
    original_names = sorted(set(original.name_of_study.values()))
    order = [servers[k] for k in SERVERS if k in servers]
    plans: dict[str, dict[str, list[Query]]] = {}
    notes: dict[str, dict[str, str]] = {}
    failed: dict[str, str] = {}
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        for server in order:
            held = original if server.kind == "orthanc" else Holding.read(server.stored_files())
            try:
                plans[server.kind], notes[server.kind] = plan_queries(
                    server, _listing(client, server), held, original_names
                )
            except (Failed, httpx.HTTPError) as exc:
                failed[server.kind] = str(exc)
                print(f"  {server.kind}: FAILED: {exc}", file=sys.stderr)
    ready = [s for s in order if s.kind in plans]
    print(
        f"latency: {args.samples} GETs per query kind on {', '.join(s.kind for s in ready)} ...",
        file=sys.stderr,
    )
    rows, phase = measure_latency(ready, plans, args.samples, args.warmup, notes)
    for kind, error in failed.items():
        rows += [Latency(k, kind, status="failed", error=error) for k, _ in KINDS]
    return rows, phase


# --- table ------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def _stow_cell(row: StowRow | None) -> str:
    if row is None:
        return "–"
    if row.status != "ok" or not row.runs:
        return f"**{row.status}**"
    return _fmt(row.per_second)


def _stow_verdict(ours: StowRow | None, peer: StowRow | None) -> tuple[str, str]:
    if ours is None or peer is None or not ours.runs or not peer.runs:
        return "–", "not measured"
    ratio = ours.per_second / peer.per_second
    return f"{ratio:.2f}×", "met" if ratio >= TARGET_STOW else "**NOT met**"


def _latency_cell(row: Latency | None, kind: str) -> str:
    if row is None:
        return "–"
    if row.status != "ok" or not row.samples_ms:
        return f"**{row.status}**"
    text = f"{_fmt(row.p50, 2)} / {_fmt(row.p95, 2)}"
    n = len(row.samples_ms)
    if row.right < n:
        mean = statistics.mean(row.results) if row.results else 0
        what = "no matches" if mean == 0 else f"{mean:.1f} matches"
        text += f" — **wrong: {what}, {n - row.right}/{n} answers wrong**"
    if kind == "includefield" and row.attributes:
        text += f" ({statistics.median(row.attributes):.0f} attributes)"
    return text


def _default_attributes(rows: dict[tuple[str, str], Latency], server: str) -> float:
    base = rows.get(("patient", server))
    return statistics.median(base.attributes) if base and base.attributes else math.nan


def _latency_verdict(rows: dict[tuple[str, str], Latency], kind: str, ours: str) -> tuple[str, str]:
    mine, peer = rows.get((kind, ours)), rows.get((kind, "orthanc"))
    if mine is None or mine.status != "ok" or not mine.samples_ms:
        return "–", "not measured"
    if not mine.all_right:
        return "–", "**NOT met** (wrong answers)"
    if kind == "includefield":
        more = statistics.median(mine.attributes) > _default_attributes(rows, ours)
        if not more:
            return "–", "**NOT met** (includefield=all ignored)"
    if peer is None or peer.status != "ok" or not peer.samples_ms:
        return "–", "met (Orthanc not measured)"
    ratio = peer.p95 / mine.p95
    if not peer.all_right:
        return f"{ratio:.2f}×", "met (Orthanc's answer is wrong)"
    if kind == "includefield" and not (
        statistics.median(peer.attributes) > _default_attributes(rows, "orthanc")
    ):
        return f"{ratio:.2f}×", "met (Orthanc ignores includefield=all)"
    return f"{ratio:.2f}×", "met" if mine.p95 < peer.p95 else "**NOT met**"


def _table(
    corpus: dict[str, Any],
    stow_rows: list[StowRow],
    latency: list[Latency],
    phase: dict[str, Any],
    env: dict[str, Any],
    runs: int,
) -> str:
    by = {(r.server, r.clients): r for r in stow_rows}
    lat = {(r.kind, r.server): r for r in latency}
    lines = [
        f"## DICOMweb — {corpus['files']:,} instances (CT and MR), {corpus['mbytes']:,.0f} MB: "
        f"{env['orthanc']} + DICOMweb {env['orthanc_dicomweb'].split('+')[0]} against "
        f"biobank {env['biobank']} (`biobank serve`)",
        "",
        "| measurement | Orthanc | ours, site | ours, central | site vs Orthanc | "
        "central vs Orthanc | target: site | target: central |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for clients in CLIENTS:
        peer = by.get(("orthanc", clients))
        site, central = by.get(("site", clients)), by.get(("central", clients))
        site_ratio, site_verdict = _stow_verdict(site, peer)
        central_ratio, central_verdict = _stow_verdict(central, peer)
        plural = "s" if clients > 1 else ""
        lines.append(
            f"| STOW-RS, {clients} client{plural}, instances/s ({BATCH} per request) | "
            f"{_stow_cell(peer)} | {_stow_cell(site)} | {_stow_cell(central)} | "
            f"{site_ratio} | {central_ratio} | {site_verdict} | {central_verdict} |"
        )
    instances = corpus.get("slices_per_series", "?")
    for kind, label in KINDS:
        if kind == "metadata":
            label += f" ({instances} instances)"
        site_ratio, site_verdict = _latency_verdict(lat, kind, "site")
        central_ratio, central_verdict = _latency_verdict(lat, kind, "central")
        lines.append(
            f"| {label}, p50 / p95 ms | {_latency_cell(lat.get((kind, 'orthanc')), kind)} | "
            f"{_latency_cell(lat.get((kind, 'site')), kind)} | "
            f"{_latency_cell(lat.get((kind, 'central')), kind)} | {site_ratio} | "
            f"{central_ratio} | {site_verdict} | {central_verdict} |"
        )
    stow_other = [r.other_cpu_pct for r in stow_rows if r.runs] or [math.nan]
    samples = next((len(r.samples_ms) for r in latency if r.samples_ms), 0)
    lines += [
        "",
        f"STOW-RS: median of {runs} run{'s' * (runs > 1)}, each into a fresh empty server; "
        "vs Orthanc = ours ÷ Orthanc (target ≥ "
        f"{TARGET_STOW:.0f}×). Latency: {samples} sequential GETs per query kind and server "
        "after a warm-up, keep-alive, `Accept: application/dicom+json`, on the servers of "
        "the last run (each holding the whole input); vs Orthanc = Orthanc p95 ÷ ours p95 "
        "(target: ours p95 below Orthanc's, with right answers).",
        f"Other CPU (machine load outside the bench): STOW-RS runs "
        f"{_fmt(min(stow_other), 0)}–{_fmt(max(stow_other), 0)} %, "
        f"latency phase {_fmt(phase.get('other_cpu_pct', math.nan), 0)} % of "
        f"{os.cpu_count()} cores.",
    ]
    firsts, after = [], []
    for server in SERVERS:
        done = [r for row in stow_rows if row.server == server for r in row.runs]
        if done:
            firsts.append(f"{server} {statistics.median(r.first_response_s for r in done):.2f} s")
        if one := by.get((server, 1)):
            rates = [r.rate_after_first for r in one.runs]
            after.append(f"{server} {_fmt(statistics.median(rates)) if rates else '–'}/s")
    if firsts:
        lines.append(
            f"First STOW-RS answer ({BATCH} instances) after: {', '.join(firsts)} (median over "
            f"runs and client counts). With 1 client, the rate after the first answer (a "
            f"warm server; no target): {', '.join(after)}."
        )
    for server in ("site", "central"):
        if note := next((r.note for r in latency if r.server == server and r.note), ""):
            lines.append(f"Non-ASCII row, ours ({server}): {note}.")
        if probe := phase.get(f"{server}_non_ascii_probe"):
            lines.append(
                f"  An original non-ASCII prefix on ours ({server}): HTTP {probe['status']}, "
                f"{probe['matches']} matches (expected 200 and none: names are pseudonymised)."
            )
    for row in stow_rows:
        if row.status != "ok":
            first = row.error.splitlines()[0] if row.error else ""
            lines.append(f"STOW-RS {row.server}, {row.clients} client(s): {row.status}: {first}")
    for r in latency:
        if r.status != "ok":
            first = r.error.splitlines()[0] if r.error else ""
            lines.append(f"{r.kind} on {r.server}: {r.status}: {first}")
    lines += ["", _summary(stow_rows, lat)]
    return "\n".join(lines)


def _summary(stow_rows: list[StowRow], lat: dict[tuple[str, str], Latency]) -> str:
    by = {(r.server, r.clients): r for r in stow_rows}
    parts = []
    for ours in ("site", "central"):
        stow_verdicts = [
            _stow_verdict(by.get((ours, c)), by.get(("orthanc", c)))[1] for c in CLIENTS
        ]
        qido = [_latency_verdict(lat, kind, ours)[1] for kind, _ in KINDS]
        met = sum(v.startswith("met") for v in qido)
        stow_met = sum(v == "met" for v in stow_verdicts)
        parts.append(
            f"ours ({ours}): STOW-RS ≥ {TARGET_STOW:.0f}× Orthanc met for {stow_met}/"
            f"{len(CLIENTS)} client counts; QIDO/metadata target met for {met}/{len(qido)} rows"
        )
    return "Targets: " + "; ".join(parts) + "."


# --- main -------------------------------------------------------------------------------------


def _corpus_args(args: argparse.Namespace) -> argparse.Namespace:
    """bench/run.py's corpus parameters for about ``--instances`` instances: patients × (a CT
    and an MR series of ``slices``), 50 slices when there are enough instances."""
    slices = max(1, min(50, args.instances // 2))
    patients = max(1, round(args.instances / (2 * slices)))
    return argparse.Namespace(
        patients=patients,
        slices=slices,
        ct_size=512,
        mr_size=256,
        seed=args.seed,
        regenerate=args.regenerate,
    )


def _environment() -> dict[str, Any]:
    head = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    orthanc_version = peers.orthanc_version()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "orthanc": "Orthanc" if orthanc_version in ("missing", "?") else orthanc_version,
        "orthanc_dicomweb": peers.dicomweb_version(),
        "httpx": httpx.__version__,
        "biobank": _ours_version(),
        "git_head": head,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--instances",
        type=int,
        default=2000,
        help="corpus size: patients × (50 CT + 50 MR), fewer slices below 100 (default 2000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="STOW-RS runs per row (median)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the corpus here (shared with bench/run.py and bench/ingest.py) and write "
        "dicomweb-results.json here; default: a temporary folder",
    )
    parser.add_argument("--json", type=Path, help="results file (default: see --workdir)")
    parser.add_argument("--samples", type=int, default=50, help="timed GETs per query kind")
    parser.add_argument("--warmup", type=int, default=5, help="untimed GETs before them")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds allowed per STOW-RS run"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regenerate", action="store_true", help="regenerate the corpus")
    return parser.parse_args(argv)


def _run_stow_row(
    row: StowRow,
    ctx: Context,
    folder: Path,
    keep: contextlib.ExitStack | None,
    label: str,
) -> Server | None:
    print(f"STOW-RS {row.server}, {row.clients} client(s), {label} ...", file=sys.stderr)
    try:
        server = measure_stow(row, ctx, folder, keep)
    except Unavailable as exc:
        row.status, row.error = "unavailable", str(exc)
        print(f"  unavailable: {exc}", file=sys.stderr)
        return None
    except Failed as exc:
        row.status, row.error = "failed", str(exc)
        print(f"  FAILED: {exc}", file=sys.stderr)
        return None
    last = row.runs[-1]
    print(
        f"  {last.instances} instances in {last.seconds:.2f} s = "
        f"{last.instances / last.seconds:.1f}/s (first answer after "
        f"{last.first_response_s:.2f} s, other CPU {last.other_cpu_pct:.0f} %)",
        file=sys.stderr,
    )
    return server


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="biobank-dicomweb-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (
        Path("dicomweb-results.json") if temporary else workdir / "dicomweb-results.json"
    )
    try:
        with peers.terminate_as_exit(), contextlib.ExitStack() as held:
            corpus_args = _corpus_args(args)
            corpus, _phis, gen_seconds = _corpus(workdir, corpus_args)
            files = sorted(corpus.rglob("*.dcm"))
            mbytes = sum(p.stat().st_size for p in files) / 1e6
            corpus_info = {
                "files": len(files),
                "mbytes": mbytes,
                "patients": corpus_args.patients,
                "slices_per_series": corpus_args.slices,
                "generation_seconds": gen_seconds,
            }
            print(f"corpus: {len(files)} files, {mbytes:.0f} MB", file=sys.stderr)
            try:
                serve, serve_error = serve_command(), ""
            except Unavailable as exc:
                serve, serve_error = None, str(exc)
                print(f"ours: unavailable: {exc}", file=sys.stderr)
            env = _environment()
            ctx = Context(files, serve, serve_error, args.timeout)
            tmp = Path(tempfile.mkdtemp(prefix="dicomweb-run-", dir=workdir))
            held.callback(shutil.rmtree, tmp, ignore_errors=True)
            rows = [StowRow(s, c) for c in CLIENTS for s in SERVERS]
            servers: dict[str, Server] = {}
            # Runs interleaved (every row once, then again), as in bench/ingest.py. The site
            # node of the first run is kept: its stored instances are the central node's input.
            # The servers of the last row of each kind stay up for the latency measurements.
            for i in range(args.runs):
                for row in rows:
                    if row.status != "ok":
                        continue
                    folder = tmp / f"{row.server}-{row.clients}-{i}"
                    folder.mkdir()
                    last = i == args.runs - 1 and row.clients == CLIENTS[-1]
                    keep = held if last else None
                    server = _run_stow_row(row, ctx, folder, keep, f"run {i + 1}/{args.runs}")
                    if server is not None and last:
                        servers[row.server] = server
                    if server is not None and row.server == "site" and not ctx.site_input:
                        ctx.site_input = server.stored_files()  # kept until the end
                    elif not last:
                        shutil.rmtree(folder, ignore_errors=True)
            latency: list[Latency] = []
            phase: dict[str, Any] = {}
            if servers:
                latency, phase = _latency(servers, files, args)
            table = _table(corpus_info, rows, latency, phase, env, args.runs)
            print(table)
            payload = {
                "corpus": corpus_info,
                "environment": env,
                "stow": [
                    {
                        **asdict(r),
                        "instances_per_second": r.per_second,
                        "instances_per_second_after_first_answer": [
                            x.rate_after_first for x in r.runs
                        ],
                    }
                    for r in rows
                ],
                "latency": [{**asdict(r), "p50_ms": r.p50, "p95_ms": r.p95} for r in latency],
                "latency_phase": phase,
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
