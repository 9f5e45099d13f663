"""Reading clinical records from files: CSV exports of eCRFs and JSON documents.

CSV
    UTF-8, with or without a byte order mark (spreadsheets write one); the delimiter, ``,`` or
    ``;`` (spreadsheets in locales with a decimal comma), is detected from the header line.
    The header row names the variables; an empty cell is a missing value (left out of the
    record), so ``""`` never reaches validation as a value. Every value stays text: the
    form's types are applied by validation, which accepts a decimal comma.
JSON
    One record (an object), a list of records, or ``{"records": [...]}``; values keep their
    JSON types.

Errors name the file and the line (CSV) or the position (JSON) and say what to do; they
never quote a cell's value (it may be PHI).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from biobank.errors import InvalidInput

_DELIMITERS = (",", ";")


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{path}, line {line}: not UTF-8 text; save the file as UTF-8 (CSV UTF-8 in a "
            "spreadsheet) and import it again"
        ) from None


def _delimiter(path: Path, header: str) -> str:
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    if counts[best] == 0:
        return ","
    if counts[","] == counts[";"]:
        raise InvalidInput(
            f"{path}, line 1: the header has as many ',' as ';' so the delimiter is unclear; "
            "separate the columns with ',' or ';' only"
        )
    return best


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Read the records of a CSV file (see the module docstring)."""
    text = _text(path)
    header_line = text.split("\n", 1)[0]
    if not header_line.strip():
        raise InvalidInput(f"{path}, line 1: no header row; the first line must name the variables")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(path, header_line))
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise InvalidInput(f"{path}, line 1: the header is not valid CSV ({exc})") from None
    empty = [str(i + 1) for i, name in enumerate(header) if not name]
    if empty:
        raise InvalidInput(
            f"{path}, line 1: column(s) {', '.join(empty)} have no name; name every column "
            "after a variable of the form or remove it"
        )
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InvalidInput(f"{path}, line 1: column {name!r} appears twice; keep one of them")
        seen.add(name)
    records: list[dict[str, Any]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidInput(
                f"{path}, line {reader.line_num}: not valid CSV ({exc}); check the quoting"
            ) from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"{path}, line {reader.line_num}: {len(row)} cells for {len(header)} columns; "
                "check for a stray delimiter or a missing one (quote cells that contain it)"
            )
        records.append({name: cell for name, cell in zip(header, row, strict=True) if cell.strip()})
    return records


def read_json(path: Path) -> list[dict[str, Any]]:
    """Read the records of a JSON file (see the module docstring)."""
    text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
            "fix the file"
        ) from None
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
        where = "'records'"
    else:
        where = "the document"
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise InvalidInput(
            f"{path}: {where} must be a record (object) or a list of records, not "
            f"{type(data).__name__}; see docs for the format"
        )
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"{path}: record {index} of {where} is a {type(item).__name__}, not an object; "
                "give each record as an object of variable names to values"
            )
    return [dict(item) for item in data]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read the records of ``path``: ``.csv`` or ``.json`` (by its suffix).

    Raises
    ------
    InvalidInput
        If the file cannot be read or parsed; the message names the file and the line.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".json":
        return read_json(path)
    raise InvalidInput(
        f"{path}: unknown file type {suffix or '(none)'}; give a .csv or a .json file"
    )


__all__ = ["read_csv", "read_json", "read_records"]
