"""Content negotiation for DICOMweb (PS3.18 §8.7): Accept headers, media types, syntaxes."""

from __future__ import annotations

from dataclasses import dataclass

from biobank.dicom.multipart import parse_content_type
from biobank.dicom.render import NotAcceptable

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: Media type of a compressed frame by transfer syntax (PS3.18 Table 8.7.3-2).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


@dataclass(frozen=True)
class Accepted:
    """One entry of an Accept header."""

    media_type: str
    params: dict[str, str]

    @property
    def part_type(self) -> str:
        """The ``type`` parameter of a multipart entry (lower case), or ``""``."""
        return self.params.get("type", "").lower()

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter, if any."""
        return self.params.get("transfer-syntax")


def parse_accept(header: str | None) -> list[Accepted]:
    """The entries of an Accept header in order (``*/*`` when absent or empty)."""
    if not header or not header.strip():
        return [Accepted("*/*", {})]
    entries = []
    for raw in _split(header):
        if not raw.strip():
            continue
        media, params = parse_content_type(raw)
        if params.get("q") == "0":
            continue
        entries.append(Accepted(media, params))
    return entries or [Accepted("*/*", {})]


def _split(header: str) -> list[str]:
    """Split on commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _wild(entry: Accepted, media: str) -> bool:
    kind = media.split("/")[0]
    return entry.media_type in ("*/*", f"{kind}/*", media)


def want_json(header: str | None) -> None:
    """Check that a DICOM JSON answer is acceptable (QIDO-RS, metadata, STOW-RS response).

    Raises
    ------
    NotAcceptable
        If the Accept header admits neither ``application/dicom+json`` nor ``application/json``.
    """
    for entry in parse_accept(header):
        if _wild(entry, "application/dicom+json") or entry.media_type == "application/json":
            return
        if entry.media_type == "multipart/related" and entry.part_type in (
            "application/dicom+json",
            "",
        ):
            return
    raise NotAcceptable(
        "this node answers in application/dicom+json (DICOM JSON); application/dicom+xml is "
        "not offered — send Accept: application/dicom+json"
    )


def instance_syntax(header: str | None) -> str | None:
    """The transfer syntax asked for instances (None: as stored, ``*`` or not specified).

    Raises
    ------
    NotAcceptable
        If the Accept header admits no ``multipart/related; type="application/dicom"``.
    """
    for entry in parse_accept(header):
        if entry.media_type in ("*/*", "multipart/*"):
            return None
        if entry.media_type == "multipart/related" and entry.part_type in (
            "application/dicom",
            "",
        ):
            syntax = entry.transfer_syntax
            return None if syntax in (None, "*") else syntax
        if entry.media_type == "application/dicom":  # single-part request: served as multipart
            syntax = entry.transfer_syntax
            return None if syntax in (None, "*") else syntax
    raise NotAcceptable(
        'instances are sent as multipart/related; type="application/dicom"; send that Accept '
        "header (optionally with transfer-syntax=*)"
    )


def frame_media(header: str | None, stored_syntax: str) -> tuple[str, str | None]:
    """How to send frames: (media type, transfer syntax) — compressed as stored, or native.

    A compressed frame goes as stored when the client accepts its media type or
    ``transfer-syntax=*``; otherwise it is decoded to ``application/octet-stream``
    (Explicit VR Little Endian pixel bytes).
    """
    compressed = FRAME_MEDIA_TYPES.get(stored_syntax)
    for entry in parse_accept(header):
        if entry.media_type in ("*/*", "multipart/*"):
            return (compressed, stored_syntax) if compressed else ("application/octet-stream", None)
        if entry.media_type != "multipart/related":
            continue
        part = entry.part_type or "application/octet-stream"
        syntax = entry.transfer_syntax
        as_stored = syntax == "*" or syntax == stored_syntax or part == compressed
        if (
            compressed
            and as_stored
            and (part in (compressed, "application/octet-stream", "*/*") or syntax == "*")
        ):
            return compressed, stored_syntax
        if part in ("application/octet-stream", "*/*") and syntax in (
            None,
            EXPLICIT_VR_LITTLE_ENDIAN,
            "*",
        ):
            return "application/octet-stream", None
    raise NotAcceptable(
        'frames are sent as multipart/related; type="application/octet-stream" (native) '
        + (f'or type="{compressed}" (as stored); ' if compressed else "; ")
        + "send one of those in the Accept header"
    )


def image_media(header: str | None, default: str = "image/jpeg") -> str:
    """The image type of a rendered or thumbnail answer (PNG or JPEG).

    ``multipart/related; type="image/png"`` counts as ``image/png`` (the parts of a study or
    series rendered answer).
    """
    for entry in parse_accept(header):
        media = entry.media_type
        if media == "multipart/related":
            media = entry.part_type or "*/*"
        if media in ("*/*", "image/*"):
            return default
        if media in ("image/jpeg", "image/png", "image/gif"):
            return media
    raise NotAcceptable(
        "rendered images are image/jpeg, image/png or image/gif; send one of those in Accept"
    )


__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "FRAME_MEDIA_TYPES",
    "Accepted",
    "frame_media",
    "image_media",
    "instance_syntax",
    "parse_accept",
    "want_json",
]
