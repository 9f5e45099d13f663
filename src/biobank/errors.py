"""The one error tree of Imaging Biobank.

::

    BiobankError
      InvalidInput            bad input from a user or a file
        InvalidDicom          not DICOM, truncated, missing required UIDs
        InvalidClinicalRecord
        InvalidQuery
        InvalidProfile        a de-identification profile that cannot be used
        InvalidKey            a site key file that is missing, malformed or too open
      NotFound
      Conflict                the same identity with different content
      PermissionDenied        authenticated, but the role or grants do not allow it
        AuthenticationFailed  no credentials, or credentials that are not valid
      DeidentificationError   the engine could not de-identify an item
        QuarantineRequired    the item must not leave: it is held with its reason
      StorageError
      FederationError

Messages say what was wrong, where (file, tag, field) and what to do. They never carry PHI:
a value read from a hospital's header or record never goes into a message.
"""

from __future__ import annotations


class BiobankError(Exception):
    """Base of every error raised by Imaging Biobank."""


class InvalidInput(BiobankError):  # noqa: N818 - the tree's public names
    """Input from a user or a file is not acceptable."""


class InvalidDicom(InvalidInput):
    """A file is not DICOM, is truncated or corrupt, or lacks required attributes."""


class InvalidClinicalRecord(InvalidInput):
    """A clinical record breaks its form's rules."""


class InvalidQuery(InvalidInput):
    """A query cannot be compiled."""


class InvalidProfile(InvalidInput):
    """A de-identification profile names an unknown option or is malformed."""


class InvalidKey(InvalidInput):
    """A site key file is missing, malformed, or readable by others."""


class NotFound(BiobankError):  # noqa: N818
    """The named object does not exist."""


class Conflict(BiobankError):  # noqa: N818
    """The same identity (e.g. SOP Instance UID) arrived with different content."""


class PermissionDenied(BiobankError):  # noqa: N818
    """The caller may not do this."""


class AuthenticationFailed(PermissionDenied):  # noqa: N818
    """No credentials, or an unknown, revoked, expired or malformed token."""


class DeidentificationError(BiobankError):
    """The de-identification engine could not process an item."""


class QuarantineRequired(DeidentificationError):  # noqa: N818
    """The item must not be released; it is held with the reason given."""


class StorageError(BiobankError):
    """Reading or writing stored data failed."""


class FederationError(BiobankError):
    """A federated operation failed."""


__all__ = [
    "AuthenticationFailed",
    "BiobankError",
    "Conflict",
    "DeidentificationError",
    "FederationError",
    "InvalidClinicalRecord",
    "InvalidDicom",
    "InvalidInput",
    "InvalidKey",
    "InvalidProfile",
    "InvalidQuery",
    "NotFound",
    "PermissionDenied",
    "QuarantineRequired",
    "StorageError",
]
