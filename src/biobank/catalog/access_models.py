"""The rows of the access tables as frozen dataclasses, and the access log's chain hash.

Nothing here imports SQLAlchemy: :mod:`biobank.catalog.access` stores and returns these
rows, :mod:`biobank.access` and the adapters use them. ``to_json()`` gives JSON-ready values
(times as ISO 8601 strings).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry of the access log."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# -- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A row of ``app_user``.

    Parameters
    ----------
    id
        The user's key (``app_user.id``).
    username
        Unique name, shown in the access log.
    role
        ``admin``, ``uploader``, ``curator`` or ``researcher`` (checked by
        :mod:`biobank.access`, stored as text here).
    oidc_subject
        ``"<issuer>|<sub>"`` for a user provisioned from OIDC sign-in, else None.
    active
        False once disabled: the user's tokens and sign-ins are refused.
    created_at
        When the user was added (UTC).
    """

    id: int
    username: str
    role: str
    oidc_subject: str | None
    active: bool
    created_at: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "oidc_subject": self.oidc_subject,
            "active": self.active,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A row of ``api_token`` joined with its user.

    ``secret_hash`` is the SHA-256 (hex) of the token's secret; the secret itself is never
    stored. :meth:`to_json` leaves the hash out.
    """

    token_id: str
    user_id: int
    username: str
    role: str
    user_active: bool
    name: str
    secret_hash: str
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None
    last_used_at: datetime.datetime | None

    def state(self, now: datetime.datetime | None = None) -> str:
        """``"revoked"``, ``"expired"`` or ``"active"`` at ``now`` (default: the present)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or _now()):
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values, without the secret's hash."""
        return {
            "token_id": self.token_id,
            "username": self.username,
            "name": self.name,
            "state": self.state(),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One request to record in the access log (before it is chained).

    Parameters
    ----------
    at
        When it happened (timezone-aware).
    username, role
        Who (None for a request that did not authenticate).
    action
        What, e.g. ``"wado.retrieve"`` or ``"stow.store"`` (at most 64 characters).
    resource
        On what: DICOM UIDs or a path (de-identified; never PHI, never a token).
    status
        The outcome, as an HTTP or DIMSE-like status code.
    client
        The client's address (at most 64 characters), if known.
    detail
        Anything else worth keeping (no PHI).
    """

    at: datetime.datetime
    username: str | None
    role: str | None
    action: str
    resource: str
    status: int
    client: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """A stored entry of the access log: an :class:`AccessEvent` with its id and hashes."""

    id: int
    at: datetime.datetime
    username: str | None
    role: str | None
    action: str
    resource: str
    status: int
    client: str | None
    detail: str
    prev_hash: str
    entry_hash: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "id": self.id,
            "at": _iso(self.at),
            "username": self.username,
            "role": self.role,
            "action": self.action,
            "resource": self.resource,
            "status": self.status,
            "client": self.client,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of checking the access log's hash chain.

    Parameters
    ----------
    entries
        How many entries were checked (up to and including the first broken one).
    first_broken
        The id of the first entry that does not verify, or None if the chain is intact.
    reason
        Why that entry does not verify (empty when intact).
    """

    entries: int
    first_broken: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        """Whether every entry verified."""
        return self.first_broken is None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "intact": self.intact,
            "entries": self.entries,
            "first_broken": self.first_broken,
            "reason": self.reason,
        }


# -- the hash chain ----------------------------------------------------------------------


def _canonical_at(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def access_entry_hash(prev_hash: str, event: AccessEvent | AccessEntry) -> str:
    """The ``entry_hash`` of ``event`` following ``prev_hash``.

    SHA-256 (hex) of the UTF-8 bytes of ``prev_hash`` followed by the canonical JSON (sorted
    keys, no spaces, UTF-8) of ``at`` (UTC, ISO 8601 with microseconds), ``username``,
    ``role``, ``action``, ``resource``, ``status``, ``client`` and ``detail``.
    """
    fields = {
        "at": _canonical_at(event.at),
        "username": event.username,
        "role": event.role,
        "action": event.action,
        "resource": event.resource,
        "status": event.status,
        "client": event.client,
        "detail": event.detail,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


__all__ = [
    "GENESIS_HASH",
    "AccessEntry",
    "AccessEvent",
    "ChainReport",
    "TokenRecord",
    "UserRecord",
    "access_entry_hash",
]
