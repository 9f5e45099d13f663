"""De-identification profiles: named sets of PS3.15 options, written in YAML.

A profile file looks like ``data/profiles/research.yaml``::

    name: my-project
    options: [retain_longitudinal_modified_dates, clean_descriptors, clean_pixel_data]
    allow_tags: ["0x00189087"]          # public tags kept although retired/unknown
    quarantine_sop_classes: ["1.2.840.10008.5.1.4.1.1.7"]
    date_offset_max_days: 3650

Packaged profiles are looked up by name; a project's own file is parsed from its text (this
module does no file I/O of its own).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from biobank.deid.models import Option, Profile
from biobank.errors import InvalidProfile

DEFAULT_PROFILE = "research"

_KNOWN_KEYS = {
    "name",
    "description",
    "options",
    "allow_tags",
    "quarantine_sop_classes",
    "date_offset_max_days",
}


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped with the package."""
    folder = resources.files("biobank.deid").joinpath("data/profiles")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


@cache
def builtin_profile(name: str) -> Profile:
    """Return the packaged profile ``name``."""
    if name not in builtin_profile_names():
        raise InvalidProfile(
            f"unknown profile {name!r}; packaged profiles are "
            f"{', '.join(builtin_profile_names())}, or pass the path of a YAML profile file"
        )
    text = resources.files("biobank.deid").joinpath(f"data/profiles/{name}.yaml").read_text()
    return parse_profile(text, source=f"packaged profile {name}")


def parse_profile(text: str, source: str = "profile") -> Profile:
    """Parse a YAML profile; ``source`` names it in error messages."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidProfile(f"{source}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise InvalidProfile(f"{source}: expected a mapping with 'name' and 'options'")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise InvalidProfile(
            f"{source}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidProfile(f"{source}: 'name' must be a non-empty string")
    raw_options = data.get("options") or []
    if not isinstance(raw_options, list):
        raise InvalidProfile(f"{source}: 'options' must be a list of option names")
    options: set[Option] = set()
    valid = ", ".join(o.value for o in Option)
    for item in raw_options:
        try:
            options.add(Option(str(item).strip().lower().replace("-", "_").replace(" ", "_")))
        except ValueError:
            raise InvalidProfile(
                f"{source}: unknown option {item!r}; valid options: {valid}"
            ) from None
    if (
        Option.RETAIN_LONGITUDINAL_FULL_DATES in options
        and Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
    ):
        raise InvalidProfile(
            f"{source}: choose either retain_longitudinal_full_dates or "
            "retain_longitudinal_modified_dates, not both"
        )
    allow: set[int] = set()
    for item in data.get("allow_tags") or []:
        try:
            tag = int(str(item).replace("(", "").replace(")", "").replace(",", ""), 16)
        except ValueError:
            raise InvalidProfile(f"{source}: allow_tags entry {item!r} is not a hex tag") from None
        if (tag >> 16) & 1:
            raise InvalidProfile(
                f"{source}: allow_tags entry {item!r} is private; private attributes are kept "
                "only through the creator-resolved safe list"
            )
        allow.add(tag)
    max_days = data.get("date_offset_max_days", 3650)
    if not isinstance(max_days, int) or not 1 <= max_days <= 36500:
        raise InvalidProfile(f"{source}: date_offset_max_days must be an integer in 1..36500")
    classes = frozenset(str(u).strip() for u in data.get("quarantine_sop_classes") or [])
    return Profile(
        name=name.strip(),
        options=frozenset(options),
        description=str(data.get("description") or "").strip(),
        allow_tags=frozenset(allow),
        quarantine_sop_classes=classes,
        date_offset_max_days=max_days,
    )


__all__ = [
    "DEFAULT_PROFILE",
    "builtin_profile",
    "builtin_profile_names",
    "parse_profile",
]
