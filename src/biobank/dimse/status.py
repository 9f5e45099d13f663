"""DIMSE status codes the service answers with (PS3.4 Annex B and C, PS3.7 Annex C)."""

from __future__ import annotations

from pydicom import Dataset

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
"""Storage and C-FIND: refused, out of resources (the sender may retry)."""
OUT_OF_RESOURCES_MATCHES = 0xA701
"""C-MOVE, C-GET: out of resources, unable to calculate the number of matches."""
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
"""C-MOVE, C-GET: out of resources, unable to perform sub-operations."""
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH = 0xA900
"""C-FIND, C-MOVE, C-GET: the identifier does not match the SOP class."""
CANNOT_UNDERSTAND = 0xC000
"""Storage: cannot understand; Q/R: unable to process."""

ERROR_COMMENT_LENGTH = 64
"""Error Comment is LO: 64 characters, here ASCII (a command set has no character set)."""


def status(code: int, comment: str | None = None) -> Dataset:
    """A status dataset for a handler to return; ``comment`` becomes the Error Comment.

    The comment is cut to 64 characters; characters an LO in the default repertoire cannot
    hold (non-ASCII, control characters, the backslash) become ``?``.
    """
    ds = Dataset()
    ds.Status = code
    if comment:
        text = "".join(c if c.isascii() and c.isprintable() and c != "\\" else "?" for c in comment)
        ds.ErrorComment = text[:ERROR_COMMENT_LENGTH]
    return ds


__all__ = [
    "CANCEL",
    "CANNOT_UNDERSTAND",
    "ERROR_COMMENT_LENGTH",
    "IDENTIFIER_DOES_NOT_MATCH",
    "MOVE_DESTINATION_UNKNOWN",
    "OUT_OF_RESOURCES",
    "OUT_OF_RESOURCES_MATCHES",
    "OUT_OF_RESOURCES_SUBOPERATIONS",
    "PENDING",
    "PENDING_WARNING",
    "SUCCESS",
    "status",
]
