"""An ingest killed with SIGKILL at any moment, then run again: every item stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from biobank.catalog import BatchState
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from biobank.ingest.fixity import verify_node
from biobank.ingest.node import NodeRole, init_node, open_node

EXE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "biobank"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    src = tmp_path_factory.mktemp("kill-src")
    count = 0
    for index in range(3):
        phi = make_patient_phi(index, seed=5)
        for ds in make_ct_series(phi, 100, rows=64, cols=64) + make_mr_series(
            phi, 100, rows=64, cols=64
        ):
            ds.save_as(src / f"{count:05d}.dcm", enforce_file_format=True)
            count += 1
    return src, count


def _instances(catalog: Path) -> int:
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM instance").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before-first-commit", "after-first-commit"])
def test_killed_ingest_then_rerun(source: tuple[Path, int], tmp_path: Path, moment: str) -> None:
    src, count = source
    home = tmp_path / "node"
    init_node(home, site="A", role=NodeRole.SITE)
    command = [str(EXE), "ingest", str(src), "--home", str(home), "--jobs", "2", "--json"]
    env = {**os.environ, "BIOBANK_HOME": str(home)}
    env.pop("BIOBANK_DATABASE_URL", None)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the workers too: kill the whole group at once
        env=env,
    )
    deadline = time.monotonic() + 120
    blobs = home / "blobs" / "sha256"
    if moment == "before-first-commit":
        while time.monotonic() < deadline and len(list(blobs.rglob("*"))) < 40:
            time.sleep(0.005)
        assert _instances(home / "catalog.sqlite") == 0, "committed before the kill"
    else:
        while time.monotonic() < deadline and _instances(home / "catalog.sqlite") == 0:
            time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; enlarge the corpus"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = _instances(home / "catalog.sqlite")
    assert killed_with < count
    node = open_node(home)
    # After the kill: the catalogue only names blobs that exist and are intact.
    report = verify_node(node)
    assert not report.missing and not report.corrupt
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["inputs"] == count
    assert summary["stored"] + summary["duplicate"] == count
    assert summary["duplicate"] == killed_with
    assert summary["conflict"] == summary["rejected"] == 0
    with node.open_catalog() as catalog:
        assert catalog.stats().instances == count
        states = [b.state for b in catalog.batches()]
        assert states == [BatchState.COMPLETE, BatchState.INTERRUPTED]
    final = verify_node(node)
    assert final.ok and not final.orphans  # every blob written before the kill is named now
    assert final.blobs_checked == count


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_done(source: tuple[Path, int], tmp_path: Path) -> None:
    src, count = source
    home = tmp_path / "node"
    init_node(home, site="A", role=NodeRole.SITE)
    command = [str(EXE), "ingest", str(src), "--home", str(home), "--jobs", "2", "--json"]
    env = {k: v for k, v in os.environ.items() if k != "BIOBANK_DATABASE_URL"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _instances(home / "catalog.sqlite") == 0:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    node = open_node(home)
    with node.open_catalog() as catalog:
        batch = catalog.batches()[0]
        assert batch.state is BatchState.INTERRUPTED
        assert 0 < batch.stored == catalog.stats().instances < count
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["summary"]["duplicate"] == batch.stored
    assert verify_node(node).ok
