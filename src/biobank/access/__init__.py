"""Access: users, roles, API tokens, OIDC sign-in and the append-only access log.

Roles (:class:`Role`): ``admin`` and ``curator`` read everything, ``uploader`` stores and
reads back what it stored, ``researcher`` reads nothing yet (dataset grants come later).
:class:`AccessService` creates users and tokens and turns an ``Authorization`` header into a
:class:`Principal`; :func:`require` checks a :class:`Permission`; :class:`AccessLogWriter`
records every request that reads or writes patient data, off the request's path. The tables
live in the catalogue (:mod:`biobank.catalog.access`).

Example
-------
>>> service = AccessService(catalog)  # doctest: +SKIP
>>> service.create_user("alice", Role.UPLOADER)  # doctest: +SKIP
>>> token_id, token = service.create_token("alice", "scanner 3")  # doctest: +SKIP
>>> principal = service.authenticate(f"Bearer {token}")  # doctest: +SKIP
>>> require(principal, Permission.STORE)  # doctest: +SKIP
>>> with AccessLogWriter(catalog) as log:  # doctest: +SKIP
...     log.record(principal, "stow.store", study_uid, 200, "10.0.0.7")
"""

from biobank.access.audit import AccessLogWriter
from biobank.access.models import USERNAME_PATTERN, Permission, Principal, Role, Via
from biobank.access.oidc import OidcIdentity, OidcSettings, OidcVerifier
from biobank.access.service import AccessService, require
from biobank.catalog.access import AccessEntry, ChainReport, TokenRecord, UserRecord

__all__ = [
    "USERNAME_PATTERN",
    "AccessEntry",
    "AccessLogWriter",
    "AccessService",
    "ChainReport",
    "OidcIdentity",
    "OidcSettings",
    "OidcVerifier",
    "Permission",
    "Principal",
    "Role",
    "TokenRecord",
    "UserRecord",
    "Via",
    "require",
]
