"""Roles, permissions and the authenticated caller (:class:`Principal`).

=============  =====================================  ===============================
role           may store                              may read
=============  =====================================  ===============================
``admin``      yes                                    everything; manages users
``curator``    yes                                    everything
``uploader``   yes                                    only the studies it uploaded
``researcher`` no                                     nothing yet (dataset grants later)
=============  =====================================  ===============================
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
"""A username: 1 to 64 letters, digits and ``. _ @ + -``, starting with a letter or digit."""

Via: TypeAlias = Literal["token", "oidc", "local"]
"""How a principal authenticated: an API token, an OIDC bearer JWT, or locally (CLI)."""


class Role(enum.StrEnum):
    """What a user may do on the node (see the module docstring)."""

    ADMIN = "admin"
    CURATOR = "curator"
    UPLOADER = "uploader"
    RESEARCHER = "researcher"

    @property
    def rank(self) -> int:
        """Privilege order: researcher 0 < uploader 1 < curator 2 < admin 3."""
        return _RANK[self]


_RANK = {Role.RESEARCHER: 0, Role.UPLOADER: 1, Role.CURATOR: 2, Role.ADMIN: 3}


class Permission(enum.StrEnum):
    """What :func:`biobank.access.require` checks."""

    READ = "read"
    """Read some patient data (all of it, or only one's own uploads)."""
    READ_ALL = "read_all"
    """Read any patient data on the node."""
    STORE = "store"
    """Store (upload) patient data."""
    ADMIN = "admin"
    """Manage users and tokens."""

    @property
    def description(self) -> str:
        """The permission in words, for messages."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Permission.READ: "read imaging data",
    Permission.READ_ALL: "read every study on the node",
    Permission.STORE: "store imaging data",
    Permission.ADMIN: "manage users and tokens",
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request.

    Parameters
    ----------
    user_id
        ``app_user.id``.
    username
        The user's name (recorded in the access log).
    role
        The role the request runs with (for OIDC, the one the token maps to).
    via
        ``"token"``, ``"oidc"`` or ``"local"``.
    """

    user_id: int
    username: str
    role: Role
    via: Via

    @property
    def can_read_all(self) -> bool:
        """Admins and curators read every study."""
        return self.role in (Role.ADMIN, Role.CURATOR)

    @property
    def can_store(self) -> bool:
        """Admins, uploaders and curators store data."""
        return self.role in (Role.ADMIN, Role.UPLOADER, Role.CURATOR)

    @property
    def reads_only_own(self) -> bool:
        """Uploaders read back only the studies they uploaded (``study_owner``)."""
        return self.role is Role.UPLOADER

    @property
    def can_read_any(self) -> bool:
        """Whether the caller may read some data at all (everyone but researchers, for now)."""
        return self.role is not Role.RESEARCHER

    @property
    def is_admin(self) -> bool:
        """Admins manage users and tokens."""
        return self.role is Role.ADMIN

    def allows(self, permission: Permission) -> bool:
        """Whether the caller has ``permission``."""
        if permission is Permission.READ:
            return self.can_read_any
        if permission is Permission.READ_ALL:
            return self.can_read_all
        if permission is Permission.STORE:
            return self.can_store
        return self.is_admin


__all__ = ["USERNAME_PATTERN", "Permission", "Principal", "Role", "Via"]
