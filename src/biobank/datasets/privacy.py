"""Count protection: what a cohort count looks like once it leaves the node.

Small counts identify people, so counts are protected before they leave (research notes B1;
Samply Focus ``OBFUSCATE``, EGA Beacon2-PI ``imprecise_count``/``round_to_tens``):

1. a count of 1 to ``threshold - 1`` is reported as ``threshold`` with Beacon's
   ``countPrecision`` ``"imprecise"`` (the true count is *at most* that);
2. any other count is rounded to the nearest multiple of ``rounding`` (halves up),
   ``"rounded"``; ``rounding: 1`` leaves it ``"exact"``;
3. zero stays zero (``"exact"``) unless ``obfuscate_zero`` is set, when it is reported like a
   small count;
4. optionally (``epsilon`` set; off by default) Laplace noise of scale ``sensitivity /
   epsilon`` is added before rounding. The noise is *deterministic*: seeded by an HMAC of
   the node's secret, the normalised query and the stratum, so asking the same question
   again returns the same answer and averaging repeats reveals nothing.

Every stratum of a stratified count is protected the same way. Curators and administrators
of the node see exact counts; everyone else gets protected ones. Settings come from the
``cohorts:`` section of ``node.yaml`` (:meth:`CountPolicy.from_mapping`, strict keys).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biobank.errors import InvalidInput


class Precision(enum.StrEnum):
    """Beacon v2.2 ``countPrecision``."""

    EXACT = "exact"
    IMPRECISE = "imprecise"
    ROUNDED = "rounded"


@dataclass(frozen=True)
class ProtectedCount:
    """A count as reported, and how precise it is."""

    value: int
    precision: Precision

    def to_json(self) -> dict[str, Any]:
        """``{"value": 10, "precision": "imprecise"}``."""
        return {"value": self.value, "precision": self.precision.value}


def laplace_noise(scale: float, seed: bytes) -> float:
    """Laplace(0, ``scale``) noise drawn deterministically from ``seed`` (any bytes)."""
    digest = hashlib.sha256(seed).digest()
    fraction = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64  # in (0, 1)
    u = fraction - 0.5
    return -scale * math.copysign(1.0, u) * math.log(1.0 - 2.0 * abs(u))


def noise_seed(secret: bytes, normalised_query: str, stratum: str = "") -> bytes:
    """HMAC-SHA256(secret, query ‖ stratum): the same for the same question, secret per node."""
    message = normalised_query.encode() + b"\x00" + stratum.encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def _round(value: float, step: int) -> int:
    return int(math.floor(value / step + 0.5)) * step


def protect(
    count: int,
    *,
    threshold: int = 10,
    rounding: int = 10,
    obfuscate_zero: bool = False,
    epsilon: float | None = None,
    sensitivity: float = 1.0,
    seed: bytes | None = None,
) -> ProtectedCount:
    """The count to report for ``count`` (see the module docstring).

    Raises
    ------
    InvalidInput
        If ``count`` is negative, ``threshold`` or ``rounding`` below 1, or ``epsilon`` is
        given without a ``seed``.
    """
    if count < 0:
        raise InvalidInput(f"a count cannot be negative ({count})")
    if threshold < 1 or rounding < 1:
        raise InvalidInput("cohorts.threshold and cohorts.rounding must be at least 1")
    if count == 0 and not obfuscate_zero:
        return ProtectedCount(0, Precision.EXACT)
    if count < threshold:
        return ProtectedCount(threshold, Precision.IMPRECISE)
    value: float = count
    if epsilon is not None:
        if seed is None:
            raise InvalidInput("noise needs a seed (noise_seed of the node secret and query)")
        value += laplace_noise(sensitivity / epsilon, seed)
    reported = _round(value, rounding)
    if reported < threshold:
        return ProtectedCount(threshold, Precision.IMPRECISE)
    if rounding == 1 and epsilon is None:
        return ProtectedCount(reported, Precision.EXACT)
    return ProtectedCount(reported, Precision.ROUNDED)


def exact(count: int) -> ProtectedCount:
    """An unprotected count (for curators, administrators and the node's operator)."""
    return ProtectedCount(count, Precision.EXACT)


@dataclass(frozen=True)
class CountPolicy:
    """The ``cohorts:`` section of ``node.yaml`` (every key optional).

    ``threshold`` (10): counts below it (and above 0) are reported as it. ``rounding`` (10):
    other counts are rounded to a multiple of it (1: exact). ``obfuscate_zero`` (false):
    report zeros like small counts. ``epsilon`` (none): add Laplace noise of scale
    ``sensitivity / epsilon`` (``sensitivity`` 1, one person per count); Samply Focus uses
    0.28.
    """

    threshold: int = 10
    rounding: int = 10
    obfuscate_zero: bool = False
    epsilon: float | None = None
    sensitivity: float = 1.0

    KEYS = ("threshold", "rounding", "obfuscate_zero", "epsilon", "sensitivity")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "node.yaml") -> CountPolicy:
        """Validate the ``cohorts:`` mapping; errors name the key and what to write."""
        unknown = sorted(set(data) - set(cls.KEYS))
        if unknown:
            raise InvalidInput(
                f"{source}: unknown key cohorts.{unknown[0]}; known keys: {', '.join(cls.KEYS)}"
            )
        values: dict[str, Any] = {}
        for key in ("threshold", "rounding"):
            if key in data:
                value = data[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise InvalidInput(f"{source}: cohorts.{key} must be an integer of 1 or more")
                values[key] = value
        if "obfuscate_zero" in data:
            if not isinstance(data["obfuscate_zero"], bool):
                raise InvalidInput(f"{source}: cohorts.obfuscate_zero must be true or false")
            values["obfuscate_zero"] = data["obfuscate_zero"]
        for key in ("epsilon", "sensitivity"):
            value = data.get(key)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise InvalidInput(f"{source}: cohorts.{key} must be a positive number")
            values[key] = float(value)
        return cls(**values)

    def protect(self, count: int, seed: bytes | None = None) -> ProtectedCount:
        """:func:`protect` with this policy."""
        return protect(
            count,
            threshold=self.threshold,
            rounding=self.rounding,
            obfuscate_zero=self.obfuscate_zero,
            epsilon=self.epsilon,
            sensitivity=self.sensitivity,
            seed=seed,
        )


NOISE_KEY = Path("keys") / "cohort-noise.key"
"""Where a node keeps the secret that seeds count noise (mode 0600, made on first use)."""


def noise_secret(home: Path) -> bytes:
    """The node's count-noise secret (``<home>/keys/cohort-noise.key``), created if missing.

    Raises
    ------
    InvalidInput
        If the file exists but is readable by others or malformed.
    """
    path = home / NOISE_KEY
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by a concurrent caller
        else:
            try:
                os.write(fd, os.urandom(32).hex().encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
    if path.stat().st_mode & 0o077:
        raise InvalidInput(f"{path}: readable by others; run chmod 600 on it")
    try:
        return bytes.fromhex(path.read_text("ascii").strip())
    except ValueError:
        raise InvalidInput(f"{path}: not a hex secret; delete it to make a new one") from None


__all__ = [
    "NOISE_KEY",
    "CountPolicy",
    "Precision",
    "ProtectedCount",
    "exact",
    "laplace_noise",
    "noise_secret",
    "protect",
    "noise_seed",
]
