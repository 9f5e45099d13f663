"""What the benchmark measures: the I/O ceiling, three peer de-identifiers and ours.

Every subject runs as a separate process (interpreter start-up included), reads the corpus
folder and writes a new folder. Subjects are measured in one run on the same corpus.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

# gdcmanon --dumb: this harness's own tag list (names, IDs, addresses, staff, institution,
# equipment, free text, request sequence, the ACME RIS and CSA private elements). Dates and
# UIDs are left alone, as a hand-written tag list typically does.
_EMPTY = ("0010,0010", "0010,0020", "0010,0030", "0008,0050", "0008,0090", "0020,0010")
_REMOVE = (
    "0010,0021",
    "0010,1000",
    "0010,1001",
    "0010,1002",
    "0010,1040",
    "0010,2154",
    "0010,4000",
    "0010,21b0",
    "0008,1120",
    "0008,1110",
    "0008,1048",
    "0008,1050",
    "0008,1060",
    "0008,1070",
    "0032,1032",
    "0008,0080",
    "0008,0081",
    "0008,1040",
    "0008,1010",
    "0018,1000",
    "0008,1030",
    "0008,103e",
    "0020,4000",
    "0040,0275",
    "0040,0253",
)
_REMOVE_PRIVATE = (
    "0033,01,ACME RIS",
    "0033,02,ACME RIS",
    "0033,03,ACME RIS",
    "0033,04,ACME RIS",
    "0033,05,ACME RIS",
    "0033,10,ACME RIS",
    "0029,10,SIEMENS CSA HEADER",
    "0029,20,SIEMENS CSA HEADER",
    "0009,2a,GEMS_IDEN_01",
)
GDCM_DUMB_ARGS: list[str] = [
    *(a for tag in _EMPTY for a in ("--empty", tag)),
    *(a for tag in (*_REMOVE, *_REMOVE_PRIVATE) for a in ("--remove", tag)),
]


class SubjectUnavailable(RuntimeError):
    """The tool is missing or does not start; the subject is reported and skipped."""


class SubjectFailed(RuntimeError):
    """The tool ran and failed."""


def run_checked(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Run ``cmd``; raise :class:`SubjectFailed` with the tail of its output if it fails."""
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SubjectFailed(f"{cmd[0]} exited with {proc.returncode}:\n{tail}")
    return output


@dataclass
class Subject:
    """One measured tool.

    ``setup(tmp)`` prepares keys or certificates in a private temp folder and returns the
    command builder ``command(src, out) -> list of commands`` (run in sequence, timed
    together).
    """

    name: str
    label: str
    notes: str
    kind: str  # "ceiling" or "deid"
    slow: bool
    setup: Callable[[Path], Callable[[Path, Path], list[list[str]]]]
    version: Callable[[], str] = field(default=lambda: "")
    output_is_corpus: bool = True  # False for subjects whose output is not de-identified


def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SubjectUnavailable(f"{tool} is not installed")
    return path


def _cp_setup(sync: bool) -> Callable[[Path], Callable[[Path, Path], list[list[str]]]]:
    def setup(_tmp: Path) -> Callable[[Path, Path], list[list[str]]]:
        cp = _which("cp")

        def command(src: Path, out: Path) -> list[list[str]]:
            cmds = [[cp, "-r", str(src), str(out)]]
            return [*cmds, ["sync"]] if sync else cmds

        return command

    return setup


def _gdcm_setup(dumb: bool) -> Callable[[Path], Callable[[Path, Path], list[list[str]]]]:
    def setup(tmp: Path) -> Callable[[Path, Path], list[list[str]]]:
        gdcmanon = _which("gdcmanon")
        cert = tmp / "cert.pem"
        if not dumb:
            # A throw-away RSA certificate: gdcmanon -e encrypts the originals with it.
            run_checked(
                [
                    _which("openssl"),
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=biobank-bench",
                    "-keyout",
                    str(tmp / "key.pem"),
                    "-out",
                    str(cert),
                ]
            )

        def command(src: Path, out: Path) -> list[list[str]]:
            mode = ["--dumb", *GDCM_DUMB_ARGS] if dumb else ["-e", "-c", str(cert)]
            return [[gdcmanon, *mode, "-r", "--continue", "-i", str(src), "-o", str(out)]]

        return command

    return setup


def _gdcm_version() -> str:
    try:
        return run_checked(["gdcmanon", "--version"]).strip().split("$")[0].strip()
    except (OSError, SubjectFailed):
        return "?"


def _python_module_version(module: str) -> Callable[[], str]:
    def version() -> str:
        try:
            out = run_checked(
                [
                    sys.executable,
                    "-c",
                    f"import importlib.metadata as m; print(m.version({module!r}))",
                ]
            )
        except SubjectFailed:
            return "not installed"
        return out.strip()

    return version


def _dicognito_setup(_tmp: Path) -> Callable[[Path, Path], list[list[str]]]:
    if _python_module_version("dicognito")() == "not installed":
        raise SubjectUnavailable("dicognito is not installed (pip install -e '.[bench]')")

    def command(src: Path, out: Path) -> list[list[str]]:
        # The console script of 0.19.0 is broken; the module entry point works. Output files
        # are named by the new SOP Instance UID, all in one folder.
        return [
            [
                sys.executable,
                "-m",
                "dicognito",
                "--quiet",
                "--output-directory",
                str(out),
                "--seed",
                "1",
                str(src),
            ]
        ]

    return command


def _deid_setup(subset: int) -> Callable[[Path], Callable[[Path, Path], list[list[str]]]]:
    def setup(_tmp: Path) -> Callable[[Path, Path], list[list[str]]]:
        if _python_module_version("deid")() == "not installed":
            raise SubjectUnavailable("deid is not installed (pip install -e '.[bench]')")

        def command(src: Path, out: Path) -> list[list[str]]:
            runner = BENCH_DIR / "deid_runner.py"
            return [[sys.executable, str(runner), str(src), str(out), "--limit", str(subset)]]

        return command

    return setup


def _biobank_exe() -> str:
    exe = VENV_BIN / "biobank"
    if exe.exists():
        return str(exe)
    return _which("biobank")


def _ours_setup(
    jobs: int, profile: str | None = None
) -> Callable[[Path], Callable[[Path, Path], list[list[str]]]]:
    def setup(tmp: Path) -> Callable[[Path, Path], list[list[str]]]:
        exe = _biobank_exe()
        proc = subprocess.run([exe, "deid", "--help"], capture_output=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
            raise SubjectUnavailable(
                "biobank deid does not start yet: " + (tail[-1] if tail else "no output")
            )
        key = tmp / "site.key"
        try:
            run_checked([exe, "keygen", str(key)])
        except SubjectFailed as exc:
            raise SubjectUnavailable(f"biobank keygen failed: {exc}") from exc

        def command(src: Path, out: Path) -> list[list[str]]:
            report = out.parent / f"{out.name}.report.json"
            return [
                [
                    exe,
                    "deid",
                    str(src),
                    "--out",
                    str(out),
                    "--key-file",
                    str(key),
                    "--report",
                    str(report),
                    "--jobs",
                    str(jobs),
                    *(["--profile", profile] if profile else []),
                ]
            ]

        return command

    return setup


def _ours_version() -> str:
    try:
        return _python_module_version("biobank")()
    except OSError:
        return "?"


def all_subjects(*, jobs: int, deid_subset: int) -> list[Subject]:
    """Return every subject, in table order."""
    deid_note = "deid 0.4.13 default recipe: get_identifiers + replace_identifiers, python API"
    if deid_subset:
        deid_note += f"; first {deid_subset} files only, figures scaled to the corpus"
    return [
        Subject(
            "cp",
            "cp -r (no sync)",
            "ends when the data are in the page cache",
            "ceiling",
            False,
            _cp_setup(sync=False),
            output_is_corpus=False,
        ),
        Subject(
            "cp-sync",
            "cp -r + sync (I/O ceiling)",
            "includes sync: data on disk",
            "ceiling",
            False,
            _cp_setup(sync=True),
            output_is_corpus=False,
        ),
        Subject(
            "gdcmanon",
            "gdcmanon -e (PS3.15 basic profile)",
            "originals encrypted into (0400,0500) with a throw-away RSA certificate; "
            "directory mode",
            "deid",
            False,
            _gdcm_setup(dumb=False),
            _gdcm_version,
        ),
        Subject(
            "gdcmanon-dumb",
            f"gdcmanon --dumb ({len(GDCM_DUMB_ARGS) // 2} tag ops)",
            "this harness's tag list (bench/subjects.py GDCM_DUMB_ARGS); dates and UIDs kept",
            "deid",
            False,
            _gdcm_setup(dumb=True),
            _gdcm_version,
        ),
        Subject(
            "dicognito",
            "dicognito (defaults)",
            "`python -m dicognito --output-directory OUT --seed 1`",
            "deid",
            True,
            _dicognito_setup,
            _python_module_version("dicognito"),
        ),
        Subject(
            "deid",
            "deid (default recipe)",
            deid_note,
            "deid",
            True,
            _deid_setup(deid_subset),
            _python_module_version("deid"),
        ),
        Subject(
            "ours",
            f"biobank deid --jobs {jobs}",
            "`biobank deid CORPUS --out OUT --key-file KEY --report R.json --jobs N` "
            "(default profile `research`, which keeps station name and device serial by design: "
            "Retain Device Identity)",
            "deid",
            False,
            _ours_setup(jobs),
            _ours_version,
        ),
        Subject(
            "ours-basic",
            f"biobank deid --profile basic --jobs {jobs}",
            "same, `--profile basic` (Basic Profile + Clean Pixel Data)",
            "deid",
            True,
            _ours_setup(jobs, "basic"),
            _ours_version,
        ),
    ]


def clean_env() -> dict[str, str]:
    """Environment for the tools: offline, no user site, unbuffered."""
    env = dict(os.environ)
    env.setdefault("PYTHONNOUSERSITE", "1")
    return env
