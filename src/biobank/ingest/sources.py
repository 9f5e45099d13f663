"""Where instances come from: files, folders and archives, read as streams.

:func:`iter_items` turns what a data manager points at — files, folders (recursively),
``.zip``, ``.tar``, ``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz`` — into one stream of
:class:`SourceItem`. Archives are read member by member, never unpacked to disk. Every file
and every archive member becomes an item; one that cannot be read safely is an item with a
``problem`` (which item, what is wrong, what to do) rather than an error that stops the rest:

- members whose names are absolute or climb out with ``..`` (they would escape a folder on
  extraction; we do not extract, but such an archive is not what the hospital meant to send);
- links, devices and other non-regular members;
- encrypted zip members;
- members larger than ``max_member_bytes``, an archive whose members add up to more than
  ``max_archive_bytes``, and zip members compressed more than ``max_ratio`` times (zip
  bombs) — sizes are enforced while reading, so a lying header cannot get past them;
- an archive that is corrupt part-way: the members read so far are kept, the rest is one
  problem item.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_ZIP_SUFFIXES = (".zip",)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds that protect a node from hostile or broken archives."""

    max_member_bytes: int = 4 << 30  # a multi-frame instance can be large; 4 GiB
    max_archive_bytes: int = 1 << 40  # 1 TiB of members in one archive
    max_ratio: int = 200  # uncompressed / compressed, for zip members above 1 MiB
    max_members: int = 1_000_000


@dataclass(frozen=True)
class SourceItem:
    """One input: a file, or a member of an archive (``archive.zip!dir/IMG1.dcm``).

    ``data`` is set for archive members (read already); for plain files it is None and
    :meth:`read` reads the file, so a worker process can do it. ``problem`` says why the item
    cannot be used; such an item is reported, never silently dropped.
    """

    source_path: str
    path: Path | None = None
    data: bytes | None = None
    problem: str | None = None

    def read(self) -> bytes:
        """The item's bytes."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError("an item with a problem has no data")
        return self.path.read_bytes()


def is_archive(path: Path) -> bool:
    """Whether ``path`` is read as an archive (by name; the content is checked when read)."""
    name = path.name.lower()
    return name.endswith(_ZIP_SUFFIXES) or name.endswith(_TAR_SUFFIXES)


def iter_items(
    sources: Iterable[Path], *, exclude: Path | None = None, limits: Limits | None = None
) -> Iterator[SourceItem]:
    """Yield every file and archive member under ``sources``, in a stable order.

    Folders are walked recursively without following links to folders; ``exclude`` (an
    output folder inside a source) is not walked.
    """
    limits = limits or Limits()
    skip = exclude.resolve() if exclude is not None else None
    for source in sources:
        if source.is_dir():
            for root, dirs, files in os.walk(source):
                if skip is not None:
                    dirs[:] = [d for d in dirs if (Path(root) / d).resolve() != skip]
                dirs.sort()
                for name in dirs:  # os.walk lists links to folders but does not enter them
                    if (Path(root) / name).is_symlink():
                        yield SourceItem(
                            str(Path(root) / name),
                            problem="a link to a folder, not followed (it may loop or lead "
                            "outside the export); pass the folder it points to instead",
                        )
                for name in sorted(files):
                    yield from _file_items(Path(root) / name, limits)
        else:
            yield from _file_items(source, limits)


def _file_items(path: Path, limits: Limits) -> Iterator[SourceItem]:
    try:
        mode = path.stat().st_mode  # follows links: what would be read
    except OSError as exc:
        what = "a link to nothing" if path.is_symlink() else "cannot be opened"
        yield SourceItem(
            str(path),
            problem=f"unreadable file, {what} ({exc.__class__.__name__}: "
            f"{exc.strerror or 'I/O error'}); "
            "check that the file still exists and is readable",
        )
        return
    if not stat.S_ISREG(mode):
        # Reading a FIFO or a device would block the run or never end.
        yield SourceItem(
            str(path),
            problem="not a regular file (a pipe, socket or device); export regular files",
        )
        return
    if not is_archive(path):
        yield SourceItem(str(path), path=path)
        return
    if path.name.lower().endswith(_ZIP_SUFFIXES):
        yield from _zip_items(path, limits)
    else:
        yield from _tar_items(path, limits)


def _unsafe_name(name: str) -> str | None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in pure.parts:
        return "a path that climbs out with '..'"
    return None


def _problem(archive: Path, member: str, what: str) -> SourceItem:
    return SourceItem(f"{archive}!{member}", problem=what)


def _zip_items(path: Path, limits: Limits) -> Iterator[SourceItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield SourceItem(
            str(path),
            problem=f"not a readable zip archive ({exc.__class__.__name__}); re-create it",
        )
        return
    total = 0
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > limits.max_members:
            yield SourceItem(
                str(path),
                problem=f"{len(members)} members, over the limit of {limits.max_members}; "
                "split the archive",
            )
            return
        for info in sorted(members, key=lambda m: m.filename):
            name = info.filename
            unsafe = _unsafe_name(name)
            if unsafe is not None:
                yield _problem(path, name, f"member name is {unsafe}; not read")
                continue
            if info.flag_bits & 0x1:
                yield _problem(path, name, "member is encrypted; send it unencrypted")
                continue
            if info.file_size > limits.max_member_bytes:
                yield _problem(path, name, _too_large(info.file_size, limits))
                continue
            if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                yield _problem(
                    path,
                    name,
                    f"compressed {info.file_size // max(info.compress_size, 1)} times "
                    f"(limit {limits.max_ratio}): a zip bomb or a broken archive; not read",
                )
                continue
            try:
                with archive.open(info) as stream:
                    data = _read_bounded(stream, limits.max_member_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                yield _problem(
                    path, name, f"member cannot be read ({exc.__class__.__name__}); re-create it"
                )
                continue
            item, total = _member(path, name, data, total, limits)
            yield item
            if total > limits.max_archive_bytes:
                return


def _tar_items(path: Path, limits: Limits) -> Iterator[SourceItem]:
    try:
        # A stream (no seeking, no index in memory); closed by the ``with`` below.
        archive = tarfile.open(path, mode="r|*")  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield SourceItem(
            str(path),
            problem=f"not a readable tar archive ({exc.__class__.__name__}); re-create it",
        )
        return
    total = 0
    count = 0
    with archive:
        try:
            for info in archive:
                if info.isdir():
                    continue
                count += 1
                name = info.name
                if count > limits.max_members:
                    yield _problem(path, name, "too many members; split the archive")
                    return
                unsafe = _unsafe_name(name)
                if unsafe is not None:
                    yield _problem(path, name, f"member name is {unsafe}; not read")
                    continue
                if not info.isreg():
                    yield _problem(path, name, "member is a link or a device, not a file; not read")
                    continue
                if info.size > limits.max_member_bytes:
                    yield _problem(path, name, _too_large(info.size, limits))
                    continue
                stream = archive.extractfile(info)
                if stream is None:
                    yield _problem(path, name, "member has no content; not read")
                    continue
                data = _read_bounded(stream, limits.max_member_bytes)
                item, total = _member(path, name, data, total, limits)
                yield item
                if total > limits.max_archive_bytes:
                    return
        except (tarfile.TarError, OSError, EOFError) as exc:
            yield SourceItem(
                f"{path}!",
                problem=f"the archive is corrupt after {count} member(s) "
                f"({exc.__class__.__name__}); the members before were read — re-create it",
            )


def _member(
    archive: Path, name: str, data: bytes | None, total: int, limits: Limits
) -> tuple[SourceItem, int]:
    """The item for a member read with :func:`_read_bounded`, and the archive's new total.

    A total over the archive limit yields a problem item; the caller then stops reading.
    """
    if data is None:
        return _problem(archive, name, _too_large(limits.max_member_bytes + 1, limits)), total
    total += len(data)
    if total > limits.max_archive_bytes:
        return (
            _problem(archive, name, "the archive's members exceed the total size limit; split it"),
            total,
        )
    return SourceItem(f"{archive}!{name}", data=data), total


def _read_bounded(stream: object, limit: int) -> bytes | None:
    """Read all of ``stream``; None if it holds more than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    read = stream.read  # type: ignore[attr-defined]
    while chunk := read(min(_CHUNK, limit + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(parts)


def _too_large(size: int, limits: Limits) -> str:
    return (
        f"member of {size} bytes is over the limit of {limits.max_member_bytes}; "
        "raise the limit if it is a real instance"
    )


__all__ = ["Limits", "SourceItem", "is_archive", "iter_items"]
