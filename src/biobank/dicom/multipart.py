"""Multipart/related bodies (RFC 2046, RFC 2387) as DICOMweb uses them (PS3.18 8.6.1.2).

STOW-RS requests and WADO-RS responses carry DICOM instances, bulk data and frames as the
parts of a ``multipart/related`` body::

    Content-Type: multipart/related; type="application/dicom"; boundary=XYZ

    preamble (ignored)
    --XYZ
    Content-Type: application/dicom

    <bytes of part 1>
    --XYZ
    Content-Type: application/dicom

    <bytes of part 2>
    --XYZ--
    epilogue (ignored)

:class:`MultipartReader` parses such a body incrementally, chunk by chunk as it arrives,
without holding more than the part being read; :func:`encode_multipart` writes one as a
stream of chunks. Reading is lenient (LF-only line breaks, transport padding after a
boundary, a missing final line break, a boundary at the very start of the body); writing is
strict (CRLF everywhere, a boundary checked against every body).

This module does not know HTTP: the caller reads the ``Content-Type`` header with
:func:`parse_content_type`, takes its ``boundary`` parameter and feeds the body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from biobank.errors import InvalidInput

#: Characters of an RFC 7230 ``token`` (media types, parameter names, unquoted values).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: The largest header block of one part; a DICOMweb part has two or three short headers.
_MAX_HEADER_BYTES = 64 * 1024
#: The longest run of spaces and tabs accepted between a boundary and its line break.
_MAX_PADDING = 64
_HEADER_END = re.compile(rb"\n\r?\n")
#: A boundary as RFC 2046 5.1.1 allows it (``bchars``), for writing.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class PayloadTooLarge(InvalidInput):  # noqa: N818 - named after HTTP 413, like the tree
    """A part of a multipart body is larger than the limit the reader was given."""


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into its media type and parameters.

    The syntax is RFC 7231 3.1.1.1: ``type/subtype *( OWS ";" OWS name=value )`` where a
    value is a token or a quoted string. Reading is lenient: empty parameters (``;;``) and
    spaces around ``=`` are accepted.

    Parameters
    ----------
    header : str
        The header value, e.g. ``multipart/related; type="application/dicom"; boundary=x``.

    Returns
    -------
    tuple of (str, dict of str to str)
        The media type lower-cased (``multipart/related``) and the parameters, names
        lower-cased, quoted values unquoted (escapes resolved), values otherwise unchanged.

    Raises
    ------
    InvalidInput
        The value is empty, has no ``type/subtype``, or has a malformed parameter.
    """
    media_type, _, rest = header.partition(";")
    media_type = media_type.strip().lower()
    kind, slash, subtype = media_type.partition("/")
    if not slash or not _is_token(kind) or not _is_token(subtype):
        raise InvalidInput(
            "the Content-Type header is not a media type (expected type/subtype, e.g. "
            "multipart/related); fix the Content-Type header of the request"
        )
    params: dict[str, str] = {}
    pos = 0
    size = len(rest)
    while pos < size:
        char = rest[pos]
        if char in " \t;":
            pos += 1
            continue
        eq = rest.find("=", pos)
        if eq < 0:
            raise _bad_parameter(len(params) + 1)
        name = rest[pos:eq].strip().lower()
        if not _is_token(name):
            raise _bad_parameter(len(params) + 1)
        pos = eq + 1
        while pos < size and rest[pos] in " \t":
            pos += 1
        if pos < size and rest[pos] == '"':
            value, pos = _quoted_string(rest, pos, len(params) + 1)
        else:
            end = rest.find(";", pos)
            end = size if end < 0 else end
            value = rest[pos:end].strip()
            if not _is_token(value):
                raise _bad_parameter(len(params) + 1)
            pos = end
        params[name] = value
    return media_type, params


def _is_token(value: str) -> bool:
    return bool(value) and all(char in _TOKEN for char in value)


def _quoted_string(text: str, pos: int, index: int) -> tuple[str, int]:
    """Read the quoted string starting at ``text[pos] == '"'``; return it and the next pos."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise _bad_parameter(index, "has an unterminated quoted value")


def _bad_parameter(index: int, what: str = "is not name=value") -> InvalidInput:
    return InvalidInput(
        f"parameter {index} of the Content-Type header {what} (RFC 7231 syntax: "
        'type/subtype; name=token or name="quoted"); fix the Content-Type header'
    )


@dataclass(frozen=True)
class Part:
    """One part of a multipart body.

    Attributes
    ----------
    headers : dict of str to str
        The part's headers, names lower-cased; a repeated header keeps its values joined
        with ``", "``.
    content_type : str
        The value of the part's ``Content-Type`` header, parameters included
        (``application/dicom; transfer-syntax=1.2.840.10008.1.2.1``); ``""`` when the part
        has none (the caller applies the body's ``type`` parameter, RFC 2387).
    body : bytes
        The part's content.
    """

    headers: dict[str, str]
    content_type: str
    body: bytes

    @property
    def media_type(self) -> str:
        """The lower-cased media type of :attr:`content_type` without parameters, or ``""``."""
        return parse_content_type(self.content_type)[0] if self.content_type else ""


class MultipartReader:
    """Incremental parser of a multipart body (RFC 2046 5.1.1).

    Feed the body in chunks of any size; each call returns the parts it completed. The
    work is linear in the body size: every byte is searched once (a search resumes where
    the previous one stopped, less the length of a delimiter that may straddle two chunks)
    and a part's bytes are copied once, into :attr:`Part.body`.

    Parameters
    ----------
    boundary : str
        The ``boundary`` parameter of the body's ``Content-Type``.
    max_part_bytes : int
        The largest part body accepted; a larger part raises :class:`PayloadTooLarge` as
        soon as the reader has seen more than this many bytes of it.

    Raises
    ------
    InvalidInput
        The boundary is empty, longer than 200 characters or not printable ASCII.

    Notes
    -----
    Lenient reading: a delimiter is ``--boundary`` at the start of a line ended by CRLF or
    LF alone (the CR before it, if any, belongs to the delimiter), optionally followed by
    spaces or tabs; a line starting with ``--boundary`` followed by other characters is body
    content. The preamble and the epilogue are discarded. A part without headers gets
    ``{}`` and ``content_type == ""``.
    """

    def __init__(self, boundary: str, *, max_part_bytes: int) -> None:
        if (
            not boundary
            or len(boundary) > 200
            or not all(" " <= char <= "~" for char in boundary)
            or boundary.endswith(" ")
        ):
            raise InvalidInput(
                "the multipart boundary must be printable ASCII characters not ending with "
                "a space, at most 70 (RFC 2046 5.1.1; up to 200 are read); fix the boundary "
                "parameter of the Content-Type header"
            )
        if max_part_bytes < 0:
            raise ValueError("max_part_bytes must be >= 0")
        self._boundary = boundary
        self._delimiter = b"\n--" + boundary.encode("ascii")
        self._max = max_part_bytes
        # A virtual line break before the body, so that a first boundary at offset 0 is
        # found like any other delimiter (RFC 2046 allows it without a preceding CRLF).
        self._buffer = bytearray(b"\r\n")
        self._pos = 0  # start of the unconsumed data (body or headers) in the buffer
        self._search = 0  # where the next search for a delimiter or header end resumes
        self._state = "preamble"  # preamble, headers, body, done
        self._headers: dict[str, str] = {}
        self._index = 0  # 1-based number of the part being read
        self._seen = 0  # bytes fed, for the error on a body without any boundary

    @property
    def done(self) -> bool:
        """Whether the closing delimiter has been read."""
        return self._state == "done"

    def feed(self, chunk: bytes) -> list[Part]:
        """Add the next chunk of the body; return the parts completed by it, in order.

        Raises
        ------
        PayloadTooLarge
            The part being read exceeds ``max_part_bytes``.
        InvalidInput
            A part's header block is malformed or larger than 64 KiB.
        """
        if self._state == "done" or not chunk:
            return []  # the epilogue is ignored
        self._seen += len(chunk)
        self._buffer += chunk
        parts: list[Part] = []
        more = True
        while more:
            more = self._step(parts)
        if self._pos:
            del self._buffer[: self._pos]  # amortised: CPython moves the start pointer
            self._search -= self._pos
            self._pos = 0
        return parts

    def close(self) -> list[Part]:
        """Check that the body ended with its closing delimiter ``--boundary--``.

        Returns
        -------
        list of Part
            Always empty (every part was returned by :meth:`feed`); returned for symmetry.

        Raises
        ------
        InvalidInput
            The body has no boundary at all, or ended before its closing delimiter.
        """
        if self._state == "done":
            return []
        if self._state == "preamble":
            raise InvalidInput(
                f"the multipart body contains no boundary --{self._boundary} "
                f"({self._seen} bytes read); check that the boundary parameter of the "
                "Content-Type header matches the body"
            )
        raise InvalidInput(
            f"the multipart body ended before its closing boundary --{self._boundary}--; "
            "the upload was probably interrupted; resend it"
        )

    # -- the state machine ----------------------------------------------------------------

    def _step(self, parts: list[Part]) -> bool:
        """Advance by one delimiter or header block; False when more data is needed."""
        if self._state == "headers":
            return self._read_headers()
        if self._state == "done":
            return False
        buffer = self._buffer
        found = buffer.find(self._delimiter, self._search)
        if found < 0:
            keep = len(buffer) - len(self._delimiter) + 1  # a delimiter may straddle chunks
            self._search = max(self._search, keep, self._pos)
            if self._state == "preamble":
                self._pos = self._search  # the preamble is not kept
            else:
                self._check_size(len(buffer) - self._pos - len(self._delimiter) - 1)
            return False
        after = found + len(self._delimiter)
        kind = self._delimiter_kind(after)
        if kind is None:
            self._search = found  # undecided: look again when more data has come
            return False
        if not kind:
            self._search = found + 1  # "--boundary" followed by other text: body content
            return True
        end = found - 1 if found > self._pos and buffer[found - 1] == 0x0D else found
        if self._state == "body":
            self._check_size(end - self._pos)
            parts.append(self._part(bytes(buffer[self._pos : end])))
        if kind == "close":
            self._state = "done"
            self._pos = len(buffer)
            self._search = self._pos
            return False
        # The header block starts at the line break ending the delimiter line, so that an
        # empty block is found as "\n\r\n" like the end of a non-empty one.
        self._pos = self._search = buffer.index(b"\n", after)
        self._state = "headers"
        self._index += 1
        return True

    def _delimiter_kind(self, pos: int) -> str | bool | None:
        """What follows ``--boundary`` at ``pos``: "close", "next", False (no delimiter), None."""
        buffer = self._buffer
        if len(buffer) < pos + 2:
            return None
        if buffer[pos : pos + 2] == b"--":
            return "close"
        end = pos
        while end < len(buffer) and buffer[end] in b" \t" and end - pos <= _MAX_PADDING:
            end += 1
        if end >= len(buffer):
            return None if end - pos <= _MAX_PADDING else False
        if buffer[end] == 0x0A:
            return "next"
        if buffer[end] == 0x0D:
            if end + 1 >= len(buffer):
                return None
            return "next" if buffer[end + 1] == 0x0A else False
        return False

    def _read_headers(self) -> bool:
        buffer = self._buffer
        match = _HEADER_END.search(buffer, self._search)
        if match is None:
            if len(buffer) - self._pos > _MAX_HEADER_BYTES:
                raise InvalidInput(
                    f"part {self._index} of the multipart body has a header block larger "
                    f"than {_MAX_HEADER_BYTES} bytes or no blank line after its headers; "
                    "check the part headers (each ends with CRLF, then one empty line)"
                )
            self._search = max(self._pos, len(buffer) - 2)
            return False
        block = bytes(buffer[self._pos + 1 : match.start()])
        self._headers = self._parse_headers(block)
        self._pos = self._search = match.end()
        self._state = "body"
        return True

    def _parse_headers(self, block: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        last = ""
        for raw in block.split(b"\n"):
            line = raw.rstrip(b"\r").decode("latin-1")
            if not line:
                continue
            if line[0] in " \t" and last:  # obsolete line folding (RFC 7230 3.2.4)
                headers[last] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not _is_token(name):
                raise InvalidInput(
                    f"part {self._index} of the multipart body has a header line that is "
                    "not 'Name: value'; check the part headers"
                )
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
            last = name
        return headers

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise PayloadTooLarge(
                f"part {self._index} of the multipart body is larger than the limit of "
                f"{self._max} bytes; send it in a separate request or ask the operator to "
                "raise the limit"
            )

    def _part(self, body: bytes) -> Part:
        headers = self._headers
        self._headers = {}
        return Part(headers=headers, content_type=headers.get("content-type", ""), body=body)


def encode_multipart(
    parts: Iterable[tuple[bytes, dict[str, str]]], boundary: str
) -> Iterator[bytes]:
    """Encode ``parts`` as a multipart body, chunk by chunk (bodies are not copied).

    Each part is written as ``--boundary CRLF``, its headers (``Name: value CRLF``), an
    empty line, its body and CRLF; the body ends with ``--boundary-- CRLF``. No preamble
    and no epilogue.

    Parameters
    ----------
    parts : iterable of (bytes, dict of str to str)
        Each part's body and headers (e.g. ``{"Content-Type": "application/dicom"}``),
        consumed lazily.
    boundary : str
        The boundary, e.g. from :func:`new_boundary`.

    Yields
    ------
    bytes
        The encoded body in pieces: headers and bodies alternate.

    Raises
    ------
    InvalidInput
        The boundary is not RFC 2046 syntax, a header name or value contains a line break
        or a non-Latin-1 character, or a part body contains the delimiter (CRLF
        ``--boundary``); use :func:`new_boundary`.
    """
    if not _BOUNDARY.fullmatch(boundary):
        raise InvalidInput(
            "a multipart boundary is 1 to 70 of the characters RFC 2046 5.1.1 allows "
            "(letters, digits, '()+_,-./:=? and inner spaces); use new_boundary()"
        )
    marker = b"--" + boundary.encode("ascii")
    delimiter = b"\r\n" + marker
    lead = b""
    for index, (body, headers) in enumerate(parts, start=1):
        head = [lead, marker, b"\r\n"]
        for name, value in headers.items():
            if not _is_token(name) or any(char in value for char in "\r\n\0"):
                raise InvalidInput(
                    f"header {name!r} of part {index} has an invalid name or a line break "
                    "in its value; headers must be single-line Latin-1 text"
                )
            try:
                head.append(f"{name}: {value}\r\n".encode("latin-1"))
            except UnicodeEncodeError:
                raise InvalidInput(
                    f"header {name!r} of part {index} is not Latin-1 text; percent-encode the value"
                ) from None
        head.append(b"\r\n")
        # The body follows CRLF CRLF: a body starting with --boundary would form a delimiter.
        if body.startswith(marker) or delimiter in body:
            raise InvalidInput(
                f"part {index} contains the multipart boundary; encode it with another "
                "boundary from new_boundary()"
            )
        yield b"".join(head)
        if body:
            yield body
        lead = b"\r\n"
    yield lead + marker + b"--\r\n"


def new_boundary() -> str:
    """A random boundary: 32 hexadecimal digits after a fixed prefix, a token (RFC 2046)."""
    return "biobank-" + secrets.token_hex(16)


def multipart_content_type(
    part_type: str, boundary: str, transfer_syntax: str | None = None
) -> str:
    """The ``Content-Type`` of a ``multipart/related`` body of ``part_type`` parts.

    Parameters
    ----------
    part_type : str
        The media type of the parts (the RFC 2387 ``type`` parameter), e.g.
        ``application/dicom``.
    boundary : str
        The boundary the body is encoded with.
    transfer_syntax : str, optional
        A ``transfer-syntax`` parameter (PS3.18 8.7.3.5.2), e.g. ``1.2.840.10008.1.2.1``.

    Returns
    -------
    str
        E.g. ``multipart/related; type="application/dicom"; boundary=biobank-…``; the
        boundary is quoted only when it is not a token.
    """
    value = f'multipart/related; type="{part_type}"'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    quoted = boundary if _is_token(boundary) else '"' + boundary.replace('"', '\\"') + '"'
    return f"{value}; boundary={quoted}"


__all__ = [
    "MultipartReader",
    "Part",
    "PayloadTooLarge",
    "encode_multipart",
    "multipart_content_type",
    "new_boundary",
    "parse_content_type",
]
