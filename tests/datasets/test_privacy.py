"""Count protection: small counts, rounding, zeros, deterministic noise, the node policy."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest

from biobank.datasets.privacy import (
    NOISE_KEY,
    CountPolicy,
    Precision,
    ProtectedCount,
    laplace_noise,
    noise_secret,
    noise_seed,
    protect,
)
from biobank.errors import InvalidInput

IMPRECISE, ROUNDED, EXACT = Precision.IMPRECISE, Precision.ROUNDED, Precision.EXACT


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, ProtectedCount(0, EXACT)),
        (1, ProtectedCount(10, IMPRECISE)),
        (9, ProtectedCount(10, IMPRECISE)),
        (10, ProtectedCount(10, ROUNDED)),
        (14, ProtectedCount(10, ROUNDED)),
        (15, ProtectedCount(20, ROUNDED)),
        (1234, ProtectedCount(1230, ROUNDED)),
    ],
)
def test_the_default_protection(count: int, expected: ProtectedCount) -> None:
    assert protect(count) == expected


def test_settings() -> None:
    assert protect(0, obfuscate_zero=True) == ProtectedCount(10, IMPRECISE)
    assert protect(4, threshold=5) == ProtectedCount(5, IMPRECISE)
    assert protect(5, threshold=5, rounding=1) == ProtectedCount(5, EXACT)
    assert protect(149, rounding=100) == ProtectedCount(100, ROUNDED)
    assert protect(12, threshold=20, rounding=5) == ProtectedCount(20, IMPRECISE)
    assert protect(26, threshold=20, rounding=5).to_json() == {"value": 25, "precision": "rounded"}


def test_errors() -> None:
    with pytest.raises(InvalidInput, match="negative"):
        protect(-1)
    with pytest.raises(InvalidInput, match="at least 1"):
        protect(5, rounding=0)
    with pytest.raises(InvalidInput, match="seed"):
        protect(50, epsilon=0.28)


def test_noise_is_deterministic_per_secret_query_and_stratum() -> None:
    seed = noise_seed(b"secret", '{"tree":1}', "persons|gender=male")
    first = protect(500, epsilon=0.28, seed=seed)
    assert first == protect(500, epsilon=0.28, seed=seed)  # a repeat reveals nothing
    assert first.precision is ROUNDED and first.value % 10 == 0
    others = {
        noise_seed(b"other secret", '{"tree":1}', "persons|gender=male"),
        noise_seed(b"secret", '{"tree":2}', "persons|gender=male"),
        noise_seed(b"secret", '{"tree":1}', "persons|gender=female"),
    }
    assert len(others | {seed}) == 4


def test_the_noise_is_laplace_of_the_right_scale() -> None:
    draws = [laplace_noise(1 / 0.28, i.to_bytes(4, "big")) for i in range(20000)]
    assert abs(statistics.mean(draws)) < 0.15
    # The mean absolute deviation of Laplace(0, b) is b.
    assert statistics.mean(abs(d) for d in draws) == pytest.approx(1 / 0.28, rel=0.05)


def test_noise_never_reports_below_the_threshold() -> None:
    reported = [
        protect(10, epsilon=0.05, seed=i.to_bytes(2, "big")) for i in range(300)
    ]  # large noise
    assert min(r.value for r in reported) == 10
    assert {r.precision for r in reported if r.value == 10} <= {IMPRECISE, ROUNDED}
    assert any(r.value > 10 for r in reported)


class TestPolicy:
    def test_defaults_and_values(self) -> None:
        assert CountPolicy.from_mapping({}) == CountPolicy(10, 10, False, None, 1.0)
        policy = CountPolicy.from_mapping(
            {"threshold": 5, "rounding": 1, "obfuscate_zero": True, "epsilon": 0.28}
        )
        assert policy.protect(0, b"s") == ProtectedCount(5, IMPRECISE)
        assert policy.epsilon == 0.28

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"treshold": 5}, "unknown key cohorts.treshold; known keys: threshold"),
            ({"threshold": 0}, "cohorts.threshold must be an integer of 1 or more"),
            ({"rounding": "10"}, "cohorts.rounding must be an integer"),
            ({"obfuscate_zero": "yes"}, "cohorts.obfuscate_zero must be true or false"),
            ({"epsilon": -1}, "cohorts.epsilon must be a positive number"),
        ],
    )
    def test_strict_keys(self, data: dict[str, object], message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            CountPolicy.from_mapping(data, "node.yaml")


def test_the_noise_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    secret = noise_secret(tmp_path)
    assert len(secret) == 32 and noise_secret(tmp_path) == secret
    path = tmp_path / NOISE_KEY
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInput, match="readable by others"):
        noise_secret(tmp_path)
