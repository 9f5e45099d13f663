"""Peers of the ingest benchmark: a throw-away Orthanc server and its two HTTP ingest paths.

``orthanc_server(tmp)`` starts Debian's ``Orthanc`` with a generated configuration (loopback
HTTP port, no DICOM port, storage and SQLite index inside ``tmp``, the DICOMweb plugin of
``orthanc-dicomweb``) and stops it on exit, also on Ctrl-C or an exception. The child gets
``PR_SET_PDEATHSIG`` so it also dies with the harness if the harness is killed.
``post_instances`` and ``stow_rs`` send files with N concurrent httpx clients and check every
response; the caller checks ``/statistics`` afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ORTHANC_EXE = "/usr/sbin/Orthanc"
DICOMWEB_PACKAGE = "orthanc-dicomweb"
START_TIMEOUT_S = 60.0


class PeerUnavailable(RuntimeError):
    """The peer is not installed or does not start; the subject is reported and skipped."""


class PeerFailed(RuntimeError):
    """The peer ran and refused, lost or failed to store something."""


# --- process helpers --------------------------------------------------------------------------


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so that servers and folders are cleaned up."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to this child when the harness dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


# --- Orthanc ----------------------------------------------------------------------------------


def dicomweb_plugin() -> Path:
    """The DICOMweb plugin's shared library, found through ``dpkg -L orthanc-dicomweb``."""
    try:
        proc = subprocess.run(
            ["dpkg", "-L", DICOMWEB_PACKAGE], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise PeerUnavailable(f"dpkg is not available: {exc}") from exc
    if proc.returncode != 0:
        raise PeerUnavailable(f"{DICOMWEB_PACKAGE} is not installed (apt-get install it)")
    libraries = [Path(line) for line in proc.stdout.split() if ".so" in Path(line).name]
    # Prefer the plugin folder's link (what Orthanc's packaged config points at).
    libraries.sort(key=lambda p: (not str(p).startswith("/usr/share/orthanc/plugins"), str(p)))
    for library in libraries:
        if library.is_file():
            return library
    raise PeerUnavailable(f"{DICOMWEB_PACKAGE} lists no shared library")


def orthanc_version() -> str:
    """``Orthanc --version`` first line, or ``missing``."""
    exe = shutil.which(ORTHANC_EXE) or shutil.which("Orthanc")
    if exe is None:
        return "missing"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    first = proc.stdout.split(maxsplit=2)  # "/usr/sbin/Orthanc 1.10.1"
    return f"Orthanc {first[1]}" if len(first) > 1 else "?"


def dicomweb_version() -> str:
    """Version of the Debian package ``orthanc-dicomweb``, or ``missing``."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", DICOMWEB_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "missing"


@dataclass
class OrthancServer:
    """A running Orthanc: its base URL, process and folders."""

    url: str
    process: subprocess.Popen[bytes]
    folder: Path
    log: Path

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def statistics(self) -> dict[str, object]:
        response = httpx.get(f"{self.url}/statistics", timeout=30.0)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def orthanc_config(folder: Path, http_port: int, plugin: Path | None) -> dict[str, object]:
    """The configuration the bench runs Orthanc with (packaged defaults otherwise)."""
    config: dict[str, object] = {
        "Name": "biobank-bench",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "SyncStorageArea": True,  # the default since 1.7.4: every file fsync'ed
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "SaveJobs": False,
        "LuaScripts": [],
        "Plugins": [str(plugin)] if plugin else [],
    }
    if plugin:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    return config


@contextlib.contextmanager
def orthanc_server(folder: Path, *, dicomweb: bool = True) -> Iterator[OrthancServer]:
    """Start Orthanc with fresh storage in ``folder``; stop it (and keep nothing) on exit."""
    exe = shutil.which(ORTHANC_EXE) or shutil.which("Orthanc")
    if exe is None:
        raise PeerUnavailable("Orthanc is not installed (apt-get install orthanc)")
    plugin = dicomweb_plugin() if dicomweb else None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(orthanc_config(folder, port, plugin), indent=2))
    log = folder / "orthanc.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("http_", "HTTP"))}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [exe, str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            preexec_fn=_die_with_parent,  # no client threads run yet
        )
    server = OrthancServer(f"http://127.0.0.1:{port}", process, folder, log)
    try:
        _wait_ready(server, dicomweb)
        yield server
    finally:
        stop_process(process)


def _wait_ready(server: OrthancServer, dicomweb: bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PeerUnavailable(
                f"Orthanc exited with {server.process.returncode} at start:\n{server.log_tail()}"
            )
        try:
            system = httpx.get(f"{server.url}/system", timeout=2.0)
            if system.status_code == 200:
                if dicomweb:
                    plugins = httpx.get(f"{server.url}/plugins", timeout=5.0).json()
                    if "dicom-web" not in plugins:
                        raise PeerUnavailable(
                            f"the DICOMweb plugin did not load (plugins: {plugins}):\n"
                            f"{server.log_tail()}"
                        )
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise PeerUnavailable(f"Orthanc did not answer within {START_TIMEOUT_S:.0f} s")


# --- senders ----------------------------------------------------------------------------------


@dataclass
class SendResult:
    """What a sender measured and checked."""

    seconds: float
    requests: int
    stored: int
    client_cpu_seconds: float


def _run_clients(
    work: Sequence[list[Path]],
    clients: int,
    deadline_s: float,
    send: Callable[[httpx.Client, list[Path]], int],
) -> SendResult:
    """Run ``send(client, paths) -> stored`` over ``work`` items with ``clients`` threads."""
    items: queue.SimpleQueue[list[Path]] = queue.SimpleQueue()
    for item in work:
        items.put(item)
    errors: list[BaseException] = []
    stored = [0] * clients
    stop = threading.Event()
    timeout = httpx.Timeout(120.0, connect=10.0)

    def worker(index: int) -> None:
        try:
            with httpx.Client(timeout=timeout, trust_env=False) as client:
                while not stop.is_set():
                    try:
                        paths = items.get_nowait()
                    except queue.Empty:
                        return
                    stored[index] += send(client, paths)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + deadline_s
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
    except BaseException:  # Ctrl-C: let the clients stop after their current request
        stop.set()
        raise
    seconds = time.perf_counter() - start
    if any(thread.is_alive() for thread in threads):
        stop.set()
        for thread in threads:
            thread.join(130.0)
        raise PeerFailed(f"did not finish within {deadline_s:.0f} s")
    if errors:
        raise PeerFailed(f"{type(errors[0]).__name__}: {errors[0]}")
    return SendResult(seconds, len(work), sum(stored), time.process_time() - cpu0)


def post_instances(
    server: OrthancServer, files: Sequence[Path], *, clients: int, deadline_s: float
) -> SendResult:
    """``POST /instances`` of each file (one per request) with ``clients`` threads."""

    def send(client: httpx.Client, paths: list[Path]) -> int:
        stored = 0
        for path in paths:
            response = client.post(
                f"{server.url}/instances",
                content=path.read_bytes(),
                headers={"Content-Type": "application/dicom"},
            )
            if response.status_code != 200:
                raise PeerFailed(
                    f"POST /instances {path.name}: HTTP {response.status_code} "
                    f"{response.text[:200]}"
                )
            status = response.json().get("Status")
            if status != "Success":
                raise PeerFailed(f"POST /instances {path.name}: Status {status!r}")
            stored += 1
        return stored

    return _run_clients([[p] for p in files], clients, deadline_s, send)


def multipart_related(paths: Sequence[Path], boundary: str) -> bytes:
    """A ``multipart/related; type="application/dicom"`` body of the files' bytes, as-is."""
    parts: list[bytes] = []
    for path in paths:
        parts += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"),
            path.read_bytes(),
            b"\r\n",
        ]
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def stow_rs(
    server: OrthancServer,
    files: Sequence[Path],
    *,
    clients: int,
    batch: int,
    deadline_s: float,
) -> SendResult:
    """DICOMweb STOW-RS ``POST {root}/studies`` of ``batch`` files per request."""
    url = f"{server.url}/dicom-web/studies"

    def send(client: httpx.Client, paths: list[Path]) -> int:
        boundary = f"bench-{uuid.uuid4().hex}"
        response = client.post(
            url,
            content=multipart_related(paths, boundary),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        if response.status_code != 200:
            raise PeerFailed(f"STOW-RS: HTTP {response.status_code} {response.text[:300]}")
        body = response.json()
        failed = body.get("00081198", {}).get("Value", [])
        referenced = body.get("00081199", {}).get("Value", [])
        if failed:
            raise PeerFailed(f"STOW-RS: {len(failed)} instances in FailedSOPSequence")
        if len(referenced) != len(paths):
            raise PeerFailed(
                f"STOW-RS: {len(referenced)} instances referenced for {len(paths)} sent"
            )
        return len(referenced)

    work = [list(files[i : i + batch]) for i in range(0, len(files), batch)]
    return _run_clients(work, clients, deadline_s, send)
