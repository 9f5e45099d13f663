"""The access-log record of one API call, written whether the call succeeds or fails.

Endpoints that read or change patient data wrap their work in :func:`audited`; they fill
:attr:`AuditEntry.detail` with counts and ids (never values, names or comments: the log is
kept for auditors and holds no PHI) and may set :attr:`AuditEntry.status` (e.g. 201).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request

from biobank.access import Principal
from biobank.api.deps import Services, client_of
from biobank.api.errors import status_of
from biobank.errors import BiobankError


@dataclass
class AuditEntry:
    """The access-log detail of a call, filled in by the endpoint (no PHI, no comments)."""

    detail: str = ""
    status: int = 200
    """The status the call answers with when it succeeds."""


@contextmanager
def audited(
    request: Request, svc: Services, caller: Principal, action: str, resource: str
) -> Iterator[AuditEntry]:
    """Record the call in the access log with its outcome, whether it succeeds or fails."""
    entry = AuditEntry()
    status = 200
    try:
        yield entry
        status = entry.status
    except BiobankError as exc:
        status = status_of(exc)
        raise
    except Exception:
        status = 500
        raise
    finally:
        svc.audit.record(caller, action, resource, status, client_of(request), entry.detail)


__all__ = ["AuditEntry", "audited"]
