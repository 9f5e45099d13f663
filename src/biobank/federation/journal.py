"""The push journal: the studies a destination was verified to hold, one JSON line each."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from biobank.catalog import StudySummary
from biobank.errors import StorageError
from biobank.federation.models import Destination

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JournalEntry:
    """A study the destination was verified to hold, as it was here then."""

    study_instance_uid: str
    instances: int
    stored_bytes: int


class PushJournal:
    """The studies verified at one destination: ``<home>/push/<key>.jsonl``, append-only.

    One JSON line per verified study, appended with a single ``write`` and ``fsync``: a
    process killed at any moment leaves whole lines and at most one torn last line, which is
    ignored (and closed by the next append). The journal only saves questions: a study is
    skipped when it has the same instance count and bytes as when it was verified.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, JournalEntry] | None = None

    @classmethod
    def for_destination(cls, home: Path, destination: Destination) -> PushJournal:
        """The journal of ``destination`` in the node home ``home``."""
        return cls(home / "push" / f"{destination.key}.jsonl")

    def entries(self) -> dict[str, JournalEntry]:
        """The verified studies by UID (the last line of a study wins)."""
        if self._entries is None:
            self._entries = {}
            try:
                text = self.path.read_text("utf-8", errors="replace")
            except FileNotFoundError:
                text = ""
            except OSError as exc:
                raise StorageError(
                    f"{self.path}: cannot read the push journal ({exc.strerror}); fix its "
                    "permissions or remove it (the next push asks the destination instead)"
                ) from None
            for number, line in enumerate(text.splitlines(), start=1):
                try:
                    data = json.loads(line)
                    entry = JournalEntry(
                        str(data["study"]), int(data["instances"]), int(data["bytes"])
                    )
                except (ValueError, KeyError, TypeError):
                    logger.warning(
                        "push journal %s: line %d is not an entry; ignored", self.path, number
                    )
                    continue
                self._entries[entry.study_instance_uid] = entry
        return self._entries

    def is_verified(self, study: StudySummary) -> bool:
        """True when ``study`` was verified at the destination and has not changed since."""
        entry = self.entries().get(study.study_instance_uid)
        return (
            entry is not None
            and entry.instances == study.number_of_instances
            and entry.stored_bytes == study.stored_bytes
        )

    def record(self, entry: JournalEntry) -> None:
        """Append ``entry`` durably (one write, then fsync)."""
        line = json.dumps(
            {
                "study": entry.study_instance_uid,
                "instances": entry.instances,
                "bytes": entry.stored_bytes,
                "verified": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            separators=(",", ":"),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                data = line.encode() + b"\n"
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # close a line torn by a crash
                written = os.write(fd, data)
                if written != len(data):  # pragma: no cover - a full disk
                    raise OSError(28, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot append to the push journal ({exc.strerror}); the study "
                "is at the destination; free space or fix permissions, then push again"
            ) from None
        self.entries()[entry.study_instance_uid] = entry


__all__ = ["JournalEntry", "PushJournal"]
