"""The content-addressed blob store and the create-once primitive under it."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from biobank.errors import InvalidInput, NotFound
from biobank.store import atomic
from biobank.store.atomic import NewFile, create_once
from biobank.store.blobs import FileBlobStore


@pytest.fixture(params=[True, False], ids=["o_tmpfile", "named-temporary"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FileBlobStore:
    # Both ways of creating files once are exercised: O_TMPFILE and the named fallback.
    monkeypatch.setitem(atomic._state, "tmpfile", request.param and bool(atomic._O_TMPFILE))
    return FileBlobStore(tmp_path / "blobs", fsync=False)


def test_put_get_and_name_is_the_hash(store: FileBlobStore) -> None:
    data = os.urandom(100_000)
    stored = store.put(data)
    assert stored.digest == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data) and stored.created
    assert store.get(stored.digest) == data
    assert store.exists(stored.digest)
    assert store.path(stored.digest).parent.parent.name == stored.digest[:2]


def test_same_bytes_stored_once(store: FileBlobStore) -> None:
    first = store.put(b"abc" * 1000)
    second = store.put_stream([b"abc" * 500, b"abc" * 500])
    assert first.digest == second.digest and first.created and not second.created
    assert list(store.digests()) == [first.digest]
    assert not list((store.root / "incoming").iterdir())


def test_fixity_finds_corruption_and_misplaced_files(store: FileBlobStore) -> None:
    good = store.put(b"good").digest
    bad = store.put(b"will be damaged").digest
    path = store.path(bad)
    path.write_bytes(b"will be damaged!")
    stray = store.root / "sha256" / "00" / "stray.bin"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    report = store.check_fixity()
    assert report.checked == 2 and report.corrupt == [bad]
    assert report.misplaced == ["sha256/00/stray.bin"]
    assert store.verify(good) and not store.verify(bad)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64, "0" * 64 + "/x"])
def test_digests_are_validated_before_touching_paths(store: FileBlobStore, digest: str) -> None:
    with pytest.raises(InvalidInput):
        store.get(digest)


def test_missing_blob_is_not_found(store: FileBlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("0" * 64)
    assert not store.delete("0" * 64)


def test_a_failed_write_leaves_nothing(store: FileBlobStore) -> None:
    def chunks() -> object:
        yield b"partial data"
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        store.put_stream(chunks())  # type: ignore[arg-type]
    assert list(store.digests()) == []
    assert not list((store.root / "incoming").iterdir())


def _put_same(root: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(FileBlobStore(Path(root), fsync=False).put(b"same content" * 10_000).created)


def test_concurrent_writers_of_the_same_bytes_store_one_blob(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    FileBlobStore(root)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_put_same, args=(str(root), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    created = [queue.get(timeout=5) for _ in workers]
    assert created.count(True) == 1
    assert len(list(FileBlobStore(root).digests())) == 1


def test_killed_writer_leaves_no_blob(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from biobank.store.blobs import FileBlobStore\n"
        "def chunks():\n"
        "    while True:\n"
        "        yield b'x' * 65536\n"
        "        time.sleep(0.001)\n"
        f"FileBlobStore(Path({str(root)!r})).put_stream(chunks())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (root / "incoming").exists():
        time.sleep(0.01)
    time.sleep(0.3)  # writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = FileBlobStore(root)
    assert list(store.digests()) == []
    report = store.check_fixity()
    assert report.checked == 0 and not report.corrupt


def test_create_once_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    assert create_once(target, [b"one"])
    assert not create_once(target, [b"two"])
    assert target.read_bytes() == b"one"
    with NewFile(tmp_path) as new:
        new.write(b"discarded")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_storing_known_bytes_again_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from biobank.store import blobs

    store = FileBlobStore(tmp_path / "s", fsync=False)
    first = store.put(b"instance bytes" * 100)

    def no_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("known bytes were written again")

    monkeypatch.setattr(blobs, "NewFile", no_write)
    again = store.put(b"instance bytes" * 100)
    assert again == type(first)(digest=first.digest, size=first.size, created=False)
    with pytest.raises(AssertionError, match="written again"):
        store.put(b"new bytes")  # the check above can fail: new bytes do reach the writer
