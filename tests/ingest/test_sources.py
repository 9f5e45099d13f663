"""Files, folders and archives as one stream of items; hostile archives are reported."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from biobank.ingest.sources import Limits, SourceItem, iter_items


def _items(*paths: Path, limits: Limits | None = None) -> list[SourceItem]:
    return list(iter_items(paths, limits=limits))


def test_folder_zip_and_tar_in_one_stream(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.dcm").write_bytes(b"ONE")
    with zipfile.ZipFile(tmp_path / "a" / "two.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dir/two.dcm", b"TWO")
        z.writestr("dir/three.dcm", b"THREE")
    with tarfile.open(tmp_path / "four.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("x/four.dcm")
        info.size = 4
        t.addfile(info, io.BytesIO(b"FOUR"))
    items = _items(tmp_path)
    prefix = f"{tmp_path}/"
    assert [(i.source_path.removeprefix(prefix), i.read(), i.problem) for i in items] == [
        ("four.tar.gz!x/four.dcm", b"FOUR", None),
        ("a/one.dcm", b"ONE", None),
        ("a/two.zip!dir/three.dcm", b"THREE", None),
        ("a/two.zip!dir/two.dcm", b"TWO", None),
    ]
    assert items[1].data is None  # plain files are read by whoever processes them


@pytest.mark.parametrize("name", ["/etc/passwd", "../../escape.dcm", "a/../../b.dcm", "C:/win.dcm"])
def test_unsafe_member_names_are_reported_not_read(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(name, b"x")
        z.writestr("ok.dcm", b"ok")
    items = _items(archive)
    bad = [i for i in items if i.problem]
    assert len(bad) == 1 and ("absolute" in bad[0].problem or ".." in bad[0].problem)
    assert [i.read() for i in items if not i.problem] == [b"ok"]


def test_zip_bomb_is_refused_without_reading_it(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\0" * (50 << 20))
    (item,) = _items(archive)
    assert item.problem is not None and "zip bomb" in item.problem


def test_member_larger_than_the_limit(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("big.dcm")
        info.size = 5000
        t.addfile(info, io.BytesIO(os.urandom(5000)))
    (item,) = _items(archive, limits=Limits(max_member_bytes=1000))
    assert item.problem is not None and "over the limit" in item.problem


def test_tar_links_are_reported(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as t:
        link = tarfile.TarInfo("link.dcm")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        t.addfile(link)
    (item,) = _items(archive)
    assert item.problem is not None and "link" in item.problem


def test_corrupt_archives_keep_what_was_read(tmp_path: Path) -> None:
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as t:
        for n in range(3):
            info = tarfile.TarInfo(f"m{n}.dcm")
            info.size = 1024
            t.addfile(info, io.BytesIO(bytes([n]) * 1024))
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: 512 + 1024 + 512 + 300])
    items = _items(truncated)
    assert [i.read() for i in items if not i.problem] == [b"\0" * 1024]
    assert items[-1].problem is not None and "corrupt" in items[-1].problem
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"this is not a zip")
    (item,) = _items(not_zip)
    assert item.problem is not None and "zip" in item.problem


def test_output_folder_inside_a_source_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "in.dcm").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.dcm").write_bytes(b"y")
    items = list(iter_items([tmp_path], exclude=tmp_path / "out"))
    assert [Path(i.source_path).name for i in items] == ["in.dcm"]


def test_archive_total_limit_stops_reading(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n in range(5):
            z.writestr(f"{n}.dcm", os.urandom(1000))
    items = _items(archive, limits=Limits(max_archive_bytes=2500))
    assert [i.problem is None for i in items] == [True, True, False]
    assert items[-1].problem is not None and "total size" in items[-1].problem


def test_pipes_dangling_links_and_folder_links_are_reported_not_read(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "ok.dcm").write_bytes(b"x")
    os.mkfifo(src / "pipe.dcm")  # reading it would block the run for ever
    os.symlink(src / "gone.dcm", src / "dangling.dcm")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "IMG.dcm").write_bytes(b"y")
    os.symlink(elsewhere, src / "linked-folder")
    items = {Path(i.source_path).name: i for i in iter_items([src])}
    assert set(items) == {"ok.dcm", "pipe.dcm", "dangling.dcm", "linked-folder"}
    assert items["ok.dcm"].problem is None
    assert "not a regular file" in (items["pipe.dcm"].problem or "")
    assert "link to nothing" in (items["dangling.dcm"].problem or "")
    assert "link to a folder" in (items["linked-folder"].problem or "")
    # A pipe named on the command line is reported the same way.
    [direct] = list(iter_items([src / "pipe.dcm"]))
    assert "not a regular file" in (direct.problem or "")
