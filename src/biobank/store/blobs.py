"""Content-addressed blob storage: the bytes of stored instances, named by their SHA-256.

:class:`BlobStore` is the protocol the services depend on (as httpx depends on its
transport); :class:`FileBlobStore` is the default, on a local file system:

- a blob lives at ``<root>/sha256/<2 hex>/<2 hex>/<64 hex>``; the name is the hash of the
  content, so the same bytes are stored once (deduplication) and the name is the fixity
  check (:meth:`FileBlobStore.verify`);
- a blob is written unnamed, hashed while written, synced, and then linked under its name
  (:class:`biobank.store.atomic.NewFile`): a reader never sees a partial blob and a killed
  writer leaves nothing behind;
- digests are validated before they touch a path (64 lowercase hex digits), so no caller
  can reach outside the store.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from biobank.errors import InvalidInput, NotFound, StorageError
from biobank.store.atomic import NewFile, remove_stale_temporaries


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return func


_SYNCFS = _load_syncfs()


def _syncfs(fd: int) -> None:
    """syncfs(2) where the C library has it (Linux), else sync(2)."""
    if _SYNCFS is None or _SYNCFS(fd) != 0:
        os.sync()


_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredBlob:
    """The result of storing bytes: their digest, size, and whether they were new."""

    digest: str
    size: int
    created: bool


@dataclass
class FixityReport:
    """The outcome of re-hashing every blob (no PHI: digests only)."""

    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    stale_temporaries_removed: int = 0


class BlobStore(Protocol):
    """What the services need from a blob store."""

    def put(self, data: bytes) -> StoredBlob:
        """Store ``data``; the same bytes are stored once."""
        ...

    def put_stream(self, chunks: Iterable[bytes]) -> StoredBlob:
        """Store the concatenation of ``chunks`` without holding it in memory."""
        ...

    def get(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open the blob for reading."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest``."""
        ...

    def delete(self, digest: str) -> bool:
        """Remove the blob; False if there was none."""
        ...

    def digests(self) -> Iterator[str]:
        """Every stored digest."""
        ...

    def verify(self, digest: str) -> bool:
        """Re-hash the blob; True when its content still matches its name."""
        ...

    def sync(self) -> None:
        """Make every blob committed so far durable (group commit for ``fsync=False``)."""
        ...


class FileBlobStore:
    """Content-addressed blobs in a folder (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._blobs = root / "sha256"
        self._incoming = root / "incoming"
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{root}: cannot create the blob store ({exc.strerror}); check the path and "
                "permissions"
            ) from None

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (the digest is validated first)."""
        if not _DIGEST.match(digest):
            raise InvalidInput(f"not a SHA-256 digest: {digest[:80]!r} (64 lowercase hex digits)")
        return self._blobs / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> StoredBlob:
        """Store ``data``; the same bytes are stored once (and written only once).

        Bytes held in memory are hashed first, so storing what is already there writes
        nothing: re-ingesting an export costs a hash and a ``stat`` per instance.
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file():
            return StoredBlob(digest=digest, size=len(data), created=False)
        try:
            with NewFile(self._incoming, fsync=self.fsync) as new:
                new.write(data)
                target.parent.mkdir(parents=True, exist_ok=True)
                created = new.commit(target)
        except OSError as exc:
            raise StorageError(
                f"{self.root}: writing a blob failed ({exc.strerror}); nothing was stored"
            ) from None
        return StoredBlob(digest=digest, size=len(data), created=created)

    def put_stream(self, chunks: Iterable[bytes]) -> StoredBlob:
        """Store the concatenation of ``chunks``, hashing while writing."""
        hasher = hashlib.sha256()
        try:
            with NewFile(self._incoming, fsync=self.fsync) as new:
                for chunk in chunks:
                    hasher.update(chunk)
                    new.write(chunk)
                digest = hasher.hexdigest()
                target = self.path(digest)
                target.parent.mkdir(parents=True, exist_ok=True)
                created = new.commit(target)
                size = new.size
        except OSError as exc:
            raise StorageError(
                f"{self.root}: writing a blob failed ({exc.strerror}); nothing was stored"
            ) from None
        return StoredBlob(digest=digest, size=size, created=created)

    def get(self, digest: str) -> bytes:
        """Return the bytes stored under ``digest``."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no blob {digest} in {self.root}") from None

    def open(self, digest: str) -> BinaryIO:
        """Open the blob for reading."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no blob {digest} in {self.root}") from None

    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest``."""
        return self.path(digest).is_file()

    def delete(self, digest: str) -> bool:
        """Remove the blob; False if there was none."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> Iterator[str]:
        """Every stored digest, in a stable order."""
        for first in sorted(self._blobs.iterdir()):
            if not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for blob in sorted(second.iterdir()):
                    if _DIGEST.match(blob.name):
                        yield blob.name

    def verify(self, digest: str) -> bool:
        """Re-hash the blob; True when its content still matches its name."""
        hasher = hashlib.sha256()
        with self.open(digest) as handle:
            while chunk := handle.read(_READ_CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest() == digest

    def sync(self) -> None:
        """Make every blob committed so far durable, with one ``syncfs`` of the store's disk.

        Writers with ``fsync=False`` (the ingest workers) rely on this: the pipeline calls it
        once per catalogue batch, before the rows naming the blobs are committed, which costs
        one flush per few hundred blobs instead of two per blob.
        """
        fd = os.open(self._blobs, os.O_RDONLY)
        try:
            _syncfs(fd)
        finally:
            os.close(fd)

    def check_fixity(self) -> FixityReport:
        """Re-hash every blob; list the corrupt and misplaced ones; clean killed writers."""
        report = FixityReport()
        report.stale_temporaries_removed = remove_stale_temporaries(self._incoming)
        for first in sorted(self._blobs.iterdir()):
            for path in sorted(first.rglob("*")) if first.is_dir() else []:
                if not path.is_file():
                    continue
                name = path.name
                if not _DIGEST.match(name) or path != self.path(name):
                    report.misplaced.append(str(path.relative_to(self.root)))
                    continue
                report.checked += 1
                if not self.verify(name):
                    report.corrupt.append(name)
        return report

    def total_size(self) -> int:
        """Bytes stored (one count per blob)."""
        return sum(os.stat(self.path(d)).st_size for d in self.digests())


__all__ = ["BlobStore", "FileBlobStore", "FixityReport", "StoredBlob"]
