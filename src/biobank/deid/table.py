"""PS3.15 Annex E Table E.1-1 as data, compiled into per-profile rules.

The table ships as package data (``data/ps3.15-annex-e.json``, DICOM 2024b plus later rows, see
``data/SOURCES.md``). :func:`compile_rules` resolves, for one profile, the action of every row:
an option column that is not blank replaces the Basic Profile action; when several chosen
options disagree, the most protective action wins (X > Z > D > U > C > K). Composite codes
(``X/Z``, ``Z/D``…) are kept as such here and resolved per instance by the attribute's Type in
the instance's IOD (:mod:`biobank.deid.iod`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from biobank.deid.models import Option, Profile

#: Lower rank is more protective.
_PROTECTION_RANK = {"X": 0, "Z": 1, "D": 2, "U": 3, "C": 4, "K": 5}

COMPOSITE_CODES = frozenset({"Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1."""

    tag: int | None  # None for repeating-group rows and the private row
    pattern: str  # the table id, e.g. "00100010", "60XX3000", "PRIVATE"
    keyword: str
    vr: str
    basic: str
    options: dict[str, str | None]
    retired: bool


@dataclass(frozen=True)
class AnnexETable:
    """The whole table: exact rows by tag and the repeating-group rows."""

    edition: str
    rows: tuple[TableRow, ...]
    by_tag: dict[int, TableRow]
    curves: TableRow | None  # 50XX,XXXX
    overlay_rows: dict[int, TableRow]  # element -> row for 60XX,eeee

    def row_for(self, tag: int) -> TableRow | None:
        """Return the row governing a public ``tag``, including repeating groups."""
        row = self.by_tag.get(tag)
        if row is not None:
            return row
        group = tag >> 16
        if 0x5000 <= group <= 0x50FF and self.curves is not None:
            return self.curves
        if 0x6000 <= group <= 0x60FF and not group & 1:
            return self.overlay_rows.get(tag & 0xFFFF)
        return None


@cache
def load_table() -> AnnexETable:
    """Load the packaged Table E.1-1 (cached)."""
    text = resources.files("biobank.deid").joinpath("data/ps3.15-annex-e.json").read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    option_keys = [o.value for o in Option if o.is_table_column]
    rows: list[TableRow] = []
    by_tag: dict[int, TableRow] = {}
    curves: TableRow | None = None
    overlay_rows: dict[int, TableRow] = {}
    for item in raw["attributes"]:
        pattern = str(item["id"])
        tag = None if ("X" in pattern or pattern == "PRIVATE") else int(pattern, 16)
        row = TableRow(
            tag=tag,
            pattern=pattern,
            keyword=str(item.get("keyword") or item["name"]),
            vr=str(item.get("vr") or ""),
            basic=str(item["basic_profile"]),
            options={key: item.get(key) for key in option_keys},
            retired=bool(item.get("retired_in_pydicom_dict")),
        )
        rows.append(row)
        if tag is not None:
            by_tag[tag] = row
        elif pattern.startswith("50XX"):
            curves = row
        elif pattern.startswith("60XX"):
            overlay_rows[int(pattern[4:], 16)] = row
    return AnnexETable(
        edition=str(raw.get("edition", "")),
        rows=tuple(rows),
        by_tag=by_tag,
        curves=curves,
        overlay_rows=overlay_rows,
    )


def resolve_row_action(row: TableRow, options: frozenset[Option]) -> str:
    """Return the action code of ``row`` under ``options`` (may still be composite)."""
    chosen = [
        action
        for option in options
        if option.is_table_column and (action := row.options.get(option.value)) is not None
    ]
    if not chosen:
        return row.basic
    return min(chosen, key=lambda code: _PROTECTION_RANK.get(code, -1))


@dataclass(frozen=True)
class CompiledRules:
    """Per-profile actions: tag -> action code (possibly composite)."""

    by_tag: dict[int, str]
    curves: str
    overlays: dict[int, str]
    private: str

    def action_for(self, tag: int) -> str | None:
        """Return the action for a public tag, or None if the table does not list it."""
        action = self.by_tag.get(tag)
        if action is not None:
            return action
        group = tag >> 16
        if 0x5000 <= group <= 0x50FF:
            return self.curves
        if 0x6000 <= group <= 0x60FF:
            return self.overlays.get(tag & 0xFFFF)
        return None


_compiled: dict[frozenset[Option], CompiledRules] = {}


def compile_rules(profile: Profile) -> CompiledRules:
    """Resolve every row of the table under ``profile``'s options (cached per option set)."""
    cached = _compiled.get(profile.options)
    if cached is not None:
        return cached
    table = load_table()
    by_tag = {tag: resolve_row_action(row, profile.options) for tag, row in table.by_tag.items()}
    overlays = {
        el: resolve_row_action(row, profile.options) for el, row in table.overlay_rows.items()
    }
    curves = resolve_row_action(table.curves, profile.options) if table.curves else "X"
    private_row = next(row for row in table.rows if row.pattern == "PRIVATE")
    rules = CompiledRules(
        by_tag=by_tag,
        curves=curves,
        overlays=overlays,
        private=resolve_row_action(private_row, profile.options),
    )
    _compiled[profile.options] = rules
    return rules


__all__ = [
    "COMPOSITE_CODES",
    "AnnexETable",
    "CompiledRules",
    "TableRow",
    "compile_rules",
    "load_table",
    "resolve_row_action",
]
