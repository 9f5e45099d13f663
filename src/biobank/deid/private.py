"""The creator-resolved safe list of private attributes (Retain Safe Private, PS3.15 E.3.10).

Private attributes are removed, except those on this list. An entry is matched by (group,
private creator, element offset within the creator's block) — never by the raw tag, because
the same element lands at ``(0029,10xx)`` or ``(0029,11xx)`` depending on which creator slot
the writer chose (``research/deid.md`` §6 case 8). The list ships as package data
(``data/safe_private.json``; source and licence in ``data/SOURCES.md``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


class Disposition(enum.StrEnum):
    """What to do with a safe private attribute."""

    KEEP = "keep"
    HASH_UID = "hash_uid"  # keep, remapping its UID value(s) with the site key
    OFFSET_DATE = "offset_date"  # keep, shifting its date value(s) like public dates


@dataclass(frozen=True)
class SafePrivateEntry:
    """One safe private attribute."""

    group: int
    creator: str
    element: int  # offset within the block, 0x00-0xFF
    vr: str
    name: str
    disposition: Disposition


@dataclass(frozen=True)
class SafePrivateList:
    """Lookup of safe private attributes by (group, creator, element offset)."""

    source: str
    entries: dict[tuple[int, str, int], SafePrivateEntry]

    def lookup(self, group: int, creator: str, element: int) -> SafePrivateEntry | None:
        """Return the entry for ``element`` (an offset) in ``creator``'s block of ``group``."""
        return self.entries.get((group, _norm(creator), element & 0xFF))

    def __len__(self) -> int:
        return len(self.entries)


def _norm(creator: str) -> str:
    return creator.strip().rstrip("\x00").strip().upper()


def parse_safe_private(data: dict[str, Any]) -> SafePrivateList:
    """Build a :class:`SafePrivateList` from its JSON form."""
    entries: dict[tuple[int, str, int], SafePrivateEntry] = {}
    for item in data.get("entries", []):
        if item.get("path"):  # entries nested in sequences are not matched at the top level
            continue
        try:
            disposition = Disposition(item["disposition"])
        except (KeyError, ValueError):
            continue
        group = int(str(item["group"]), 16)
        element = int(str(item["element"]), 16) & 0xFF
        creator = str(item["creator"])
        entry = SafePrivateEntry(
            group=group,
            creator=creator,
            element=element,
            vr=str(item.get("vr") or "UN"),
            name=str(item.get("name") or ""),
            disposition=disposition,
        )
        entries[(group, _norm(creator), element)] = entry
    return SafePrivateList(source=str(data.get("source", "")), entries=entries)


@cache
def load_safe_private() -> SafePrivateList:
    """Load the packaged safe private list (cached); an empty list if it is not shipped."""
    path = resources.files("biobank.deid").joinpath("data/safe_private.json")
    if not path.is_file():
        return SafePrivateList(source="none", entries={})
    return parse_safe_private(json.loads(path.read_text("utf-8")))


__all__ = [
    "Disposition",
    "SafePrivateEntry",
    "SafePrivateList",
    "load_safe_private",
    "parse_safe_private",
]
