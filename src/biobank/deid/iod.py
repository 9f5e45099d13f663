"""Resolving composite action codes (``X/Z``, ``Z/D``, ``X/D``, ``X/Z/D``, ``X/Z/U*``).

PS3.15 picks among the parts of a composite code by the attribute's Type in the instance's IOD
(PS3.3): Type 3 → X, Type 2 → Z, Type 1 → D (or U for sequences of references). The Types of
the 50 attributes concerned are shipped as ``data/composite_types.json`` (a default Type and
per-SOP-class exceptions; conditional 1C/2C recorded as 1/2 so the output stays conformant).

Our one deliberate choice: ``X/Z/U*`` (Referenced Image Sequence, Source Image Sequence)
resolves to U for every IOD — the sequence is kept and every instance UID in it is remapped
with the same keyed function as the instance itself. These sequences hold only class and
instance UIDs (no PHI once remapped), and keeping them preserves derivation references that
curation and annotation rely on.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: Type assumed when the attribute is not in the data file: the strictest, so the output
#: stays conformant; the values are dummies or empty, so nothing identifying is kept.
_FALLBACK_TYPE = 1


@cache
def _types() -> dict[str, Any]:
    path = resources.files("biobank.deid").joinpath("data/composite_types.json")
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    attributes: dict[str, Any] = data.get("attributes", data)
    return attributes


def attribute_type(keyword: str, sop_class_uid: str) -> int:
    """Return the Type (1, 2 or 3) of ``keyword`` in the IOD of ``sop_class_uid``."""
    entry = _types().get(keyword)
    if not isinstance(entry, dict):
        return _FALLBACK_TYPE
    by_class = entry.get("by_sop_class") or {}
    value = by_class.get(sop_class_uid, entry.get("default", _FALLBACK_TYPE))
    try:
        return int(str(value)[0])
    except ValueError:
        return _FALLBACK_TYPE


def resolve_composite(code: str, keyword: str, sop_class_uid: str) -> str:
    """Return the simple action (X, Z, D or U) for composite ``code``."""
    if code == "X/Z/U*":
        return "U"
    kind = attribute_type(keyword, sop_class_uid)
    if code == "Z/D":
        return "D" if kind == 1 else "Z"
    if code == "X/Z":
        return "X" if kind == 3 else "Z"
    if code == "X/D":
        return "X" if kind == 3 else "D"
    if code == "X/Z/D":
        return {3: "X", 2: "Z"}.get(kind, "D")
    return code


__all__ = ["attribute_type", "resolve_composite"]
