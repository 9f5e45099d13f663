"""Creating files atomically and once: complete or absent, never overwritten.

:class:`NewFile` writes to an unnamed file (Linux ``O_TMPFILE``) in a folder and gives it its
name only on :meth:`NewFile.commit`, by a link that fails if the name exists. A process
killed at any moment leaves either the whole file or nothing, and no temporary name behind.
The name may be chosen after the data are written (a content hash), anywhere on the same file
system. Where the file system has no ``O_TMPFILE``, a temporary name and ``link`` give the
same guarantees, except that a killed process may leave a ``.*.tmp`` file, which
:func:`remove_stale_temporaries` cleans.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_state: dict[str, object] = {"tmpfile": bool(_O_TMPFILE)}
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.EXDEV)


class NewFile:
    """A file being written in ``folder`` that has no name until :meth:`commit`.

    With ``fsync`` the data, and the folder entry, are on disk when :meth:`commit` returns.
    Leaving the ``with`` block without committing discards the data.
    """

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = folder
        self.fsync = fsync
        self.size = 0
        self._tmp: Path | None = None
        self._fd = -1
        if _state["tmpfile"]:
            try:
                self._fd = os.open(folder, _O_TMPFILE | os.O_WRONLY, 0o644)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                _state["tmpfile"] = False  # this file system cannot: use a temporary name
        if self._fd < 0:
            self._tmp = folder / f".new.{os.getpid()}.{id(self):x}.tmp"
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``."""
        view = memoryview(data)
        self.size += len(view)
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self, target: Path) -> bool:
        """Give the file the name ``target``; False (and nothing written) if it exists."""
        if self.fsync:
            os.fsync(self._fd)
        try:
            if self._tmp is None:
                # With a dir fd CPython calls linkat(..., AT_SYMLINK_FOLLOW), which links the
                # open file itself; plain link() would link the /proc symlink. Both paths are
                # absolute, so the fd of "/" only selects the system call.
                os.link(f"/proc/self/fd/{self._fd}", str(target.absolute()), src_dir_fd=_root_fd())
            else:
                os.link(self._tmp, target)
        except FileExistsError:
            return False
        finally:
            self.close()
        if self.fsync:
            _fsync_folder(target.parent)
        return True

    def close(self) -> None:
        """Discard what was not committed."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None

    def __enter__(self) -> NewFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def create_once(target: Path, chunks: Iterable[bytes], *, fsync: bool = False) -> bool:
    """Write ``chunks`` to a new file at ``target``; False if ``target`` already exists."""
    with NewFile(target.parent, fsync=fsync) as new:
        for chunk in chunks:
            new.write(chunk)
        return new.commit(target)


def _root_fd() -> int:
    root = _state.get("root_fd")
    if not isinstance(root, int):
        root = os.open("/", os.O_RDONLY)
        _state["root_fd"] = root
    return root


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> int:
    """Remove ``.*.tmp`` files left under ``folder`` by killed writers; return how many."""
    removed = 0
    for path in folder.rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


__all__ = ["NewFile", "create_once", "remove_stale_temporaries"]
