"""What a push is given (options, destination) and what it reports, study by study."""

from __future__ import annotations

import enum
import hashlib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from biobank.errors import InvalidInput

MiB = 1 << 20
DEFAULT_BATCH_INSTANCES = 50
DEFAULT_BATCH_BYTES = 32 * MiB


@dataclass(frozen=True)
class PushOptions:
    """How a push sends and retries.

    Parameters
    ----------
    batch_instances, batch_bytes
        The most instances, and bytes, sent in one STOW-RS request (an instance larger
        than ``batch_bytes`` goes alone).
    attempts
        Tries per HTTP request before the push stops (1: no retry).
    backoff_seconds, max_backoff_seconds
        The first wait between two tries, doubled at each try up to the maximum (which also
        bounds a ``Retry-After``).
    timeout_seconds
        How long one request may take to send or answer (connecting: at most 10 s).
    page_size
        The QIDO-RS ``limit`` when listing what the destination holds.
    recheck
        Ignore the journal: ask the destination about every study again.
    """

    batch_instances: int = DEFAULT_BATCH_INSTANCES
    batch_bytes: int = DEFAULT_BATCH_BYTES
    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 300.0
    page_size: int = 1000
    recheck: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_instances", "batch_bytes", "attempts", "page_size"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"push option {name} must be at least 1")
        for name in ("backoff_seconds", "max_backoff_seconds", "timeout_seconds"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"push option {name} must not be negative")


@dataclass(frozen=True)
class Destination:
    """A DICOMweb service to push to: its root URL and a bearer token (never printed)."""

    url: str
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, token: str | None = None) -> Destination:
        """Check and normalise ``url`` (the DICOMweb root, e.g. ``https://hub/dicomweb``).

        Raises
        ------
        InvalidInput
            If ``url`` is not an http(s) URL with a host, or carries a query or credentials.
        """
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(
                "the destination must be an http:// or https:// URL of a DICOMweb root, "
                "e.g. https://central.example.org/dicomweb"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise InvalidInput(
                "the destination URL must not carry credentials, a query or a fragment; "
                "give the DICOMweb root and pass the token with --token"
            )
        return cls(urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/"))), token)

    @property
    def key(self) -> str:
        """16 hex digits naming the destination's journal (a hash of its URL)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FailedInstance:
    """An instance the destination refused or did not acknowledge, and why."""

    sop_instance_uid: str
    reason: str
    code: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"sop_instance_uid": self.sop_instance_uid, "code": self.code, "reason": self.reason}


class StudyState(enum.StrEnum):
    """What became of a study."""

    PUSHED = "pushed"
    """Every instance is at the destination and the counts agree (journaled)."""
    SKIPPED = "skipped"
    """The journal says it was pushed and the local study has not changed since."""
    FAILED = "failed"
    """Some instances were refused, or the counts disagree, or the study is unknown here."""
    NOT_ATTEMPTED = "not-attempted"
    """The push stopped before this study."""


@dataclass
class StudyPush:
    """The push of one study."""

    study_instance_uid: str
    instances: int = 0
    sent: int = 0
    already_present: int = 0
    bytes_sent: int = 0
    requests: int = 0
    state: StudyState = StudyState.NOT_ATTEMPTED
    failed: list[FailedInstance] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "state": self.state.value,
            "instances": self.instances,
            "sent": self.sent,
            "already_present": self.already_present,
            "bytes_sent": self.bytes_sent,
            "requests": self.requests,
            "failed": [f.to_json() for f in self.failed],
            "problems": list(self.problems),
        }


@dataclass
class PushReport:
    """What a push did, study by study; ``stopped`` says why it stopped early, if it did."""

    destination: str
    studies: list[StudyPush] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        """True when every study is at the destination (pushed or skipped)."""
        return self.stopped is None and all(
            s.state in (StudyState.PUSHED, StudyState.SKIPPED) for s in self.studies
        )

    def summary(self) -> dict[str, Any]:
        """The figures of the run (studies, instances, bytes, seconds)."""
        sent = sum(s.sent for s in self.studies)
        states = [s.state for s in self.studies]
        return {
            "destination": self.destination,
            "studies": len(self.studies),
            "pushed": states.count(StudyState.PUSHED),
            "skipped": states.count(StudyState.SKIPPED),
            "failed": states.count(StudyState.FAILED),
            "not_attempted": states.count(StudyState.NOT_ATTEMPTED),
            "instances": sum(s.instances for s in self.studies),
            "instances_sent": sent,
            "already_present": sum(s.already_present for s in self.studies),
            "instances_failed": sum(len(s.failed) for s in self.studies),
            "bytes_sent": sum(s.bytes_sent for s in self.studies),
            "requests": sum(s.requests for s in self.studies),
            "seconds": round(self.seconds, 3),
            "instances_per_second": round(sent / self.seconds, 1) if self.seconds > 0 else 0.0,
            "stopped": self.stopped,
        }

    def to_json(self) -> dict[str, Any]:
        """The summary and every study."""
        return {"summary": self.summary(), "studies": [s.to_json() for s in self.studies]}


@dataclass(frozen=True)
class PushProgress:
    """Where a running push is (for a progress bar)."""

    studies_done: int
    studies_total: int
    instances_done: int
    instances_total: int
    bytes_sent: int


ProgressCallback = Callable[[PushProgress], None]
BatchHook = Callable[[StudyPush], None]


__all__ = [
    "BatchHook",
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_INSTANCES",
    "Destination",
    "FailedInstance",
    "ProgressCallback",
    "PushOptions",
    "PushProgress",
    "PushReport",
    "StudyPush",
    "StudyState",
]
