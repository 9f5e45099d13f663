"""Writing the OMOP rows of clinical records: insert in dependency order, replace on update.

A record's rows come as plain ``table name → list of column dicts`` (:data:`OmopInput`),
without ``person_id`` (filled here). A row may carry ``"_name"``; a value that is a
:class:`RowRef` is replaced by the id of the row of that name, so rows are inserted in
dependency order (a stage measurement after the condition it qualifies, an
``episode_event`` after its episode and its event). ``death`` is keyed by the person, so a
record's death row replaces the person's previous one. Every row inserted is listed in
``clinical_record_row`` under its record, so that :func:`delete_record_rows` removes exactly
a version's rows when a corrected version replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select

from biobank.catalog.omop import (
    CLINICAL_RECORD_ROW,
    CONDITION_OCCURRENCE,
    DEATH,
    DRUG_EXPOSURE,
    EPISODE,
    EPISODE_EVENT,
    MEASUREMENT,
    OBSERVATION,
    PROCEDURE_OCCURRENCE,
    SPECIMEN,
    VISIT_OCCURRENCE,
)
from biobank.errors import InvalidInput

PERSON_TABLE = "person"
"""The :data:`OmopInput` entry holding the partial person row."""

EVENT_TABLES: tuple[Table, ...] = (
    VISIT_OCCURRENCE,
    CONDITION_OCCURRENCE,
    PROCEDURE_OCCURRENCE,
    DRUG_EXPOSURE,
    SPECIMEN,
    OBSERVATION,
    MEASUREMENT,
    DEATH,
    EPISODE,
    EPISODE_EVENT,
)
"""The tables a record may fill, in an order that respects the usual references."""
TABLES = {table.name: table for table in EVENT_TABLES}


@dataclass(frozen=True)
class RowRef:
    """A reference to the row named ``name`` (``"_name"``) of the same record's rows."""

    name: str


OmopInput = Mapping[str, Sequence[Mapping[str, Any]]]
"""The OMOP rows of one record: table name → rows (column → value; :class:`RowRef` s)."""


def _primary_key(table: Table) -> str:
    return str(next(iter(table.primary_key.columns)).name)


def delete_record_rows(conn: Connection, record_id: int) -> None:
    """Delete the OMOP rows a record's current version produced."""
    owned: dict[str, list[int]] = {}
    for table_name, row_id in conn.execute(
        select(CLINICAL_RECORD_ROW.c.table_name, CLINICAL_RECORD_ROW.c.row_id).where(
            CLINICAL_RECORD_ROW.c.record_id == record_id
        )
    ):
        owned.setdefault(str(table_name), []).append(int(row_id))
    episodes = owned.get(EPISODE.name, [])
    if episodes:
        conn.execute(delete(EPISODE_EVENT).where(EPISODE_EVENT.c.episode_id.in_(episodes)))
    for table_name, ids in owned.items():
        table = TABLES.get(table_name)
        if table is None or table is EPISODE_EVENT:
            continue
        column = table.c[_primary_key(table)]
        conn.execute(delete(table).where(column.in_(ids)))
    conn.execute(delete(CLINICAL_RECORD_ROW).where(CLINICAL_RECORD_ROW.c.record_id == record_id))


def _resolve(row: Mapping[str, Any], names: Mapping[str, int]) -> dict[str, Any] | None:
    """The row's values with references replaced by ids; None while one is unresolved."""
    values: dict[str, Any] = {}
    for column, value in row.items():
        if column == "_name":
            continue
        if isinstance(value, RowRef):
            if value.name not in names:
                return None
            value = names[value.name]
        values[column] = value
    return values


@dataclass
class PendingRows:
    """A record's OMOP rows waiting to be inserted with the batch's."""

    record_id: int
    person_id: int
    rows: OmopInput


def insert_record_rows(conn: Connection, pending: Sequence[PendingRows]) -> None:
    """Insert the OMOP rows of a batch's records, set-wise, and list them as the records'.

    Rows go in waves: in each, table after table in :data:`EVENT_TABLES` order, every row
    whose references are resolved is inserted (one multi-row INSERT ... RETURNING per table
    and column set), its id recorded under its ``_name`` for the rows that point at it.
    """
    owned: list[dict[str, Any]] = []
    _insert_deaths(conn, pending, owned)
    names: dict[int, dict[str, int]] = {item.record_id: {} for item in pending}
    waiting = [
        (item, table, row)
        for item in pending
        for table in EVENT_TABLES
        if table is not DEATH
        for row in item.rows.get(table.name, ())
    ]
    while waiting:
        progressed = False
        for table in EVENT_TABLES:
            ready: list[tuple[PendingRows, Mapping[str, Any], dict[str, Any]]] = []
            rest = []
            for entry in waiting:
                item, entry_table, row = entry
                values = _resolve(row, names[item.record_id]) if entry_table is table else None
                if values is None:
                    rest.append(entry)
                else:
                    ready.append((item, row, values))
            waiting = rest
            if ready:
                progressed = True
                _insert_ready(conn, table, ready, names, owned)
        if waiting and not progressed:
            missing = sorted(
                {
                    value.name
                    for item, _table, row in waiting
                    for value in row.values()
                    if isinstance(value, RowRef) and value.name not in names[item.record_id]
                }
            )
            raise InvalidInput(
                f"OMOP rows refer to row(s) {', '.join(missing)} that the record does not "
                "produce; fix the form's mapping"
            )
    if owned:
        conn.execute(insert(CLINICAL_RECORD_ROW), owned)


def _insert_ready(
    conn: Connection,
    table: Table,
    ready: Sequence[tuple[PendingRows, Mapping[str, Any], dict[str, Any]]],
    names: dict[int, dict[str, int]],
    owned: list[dict[str, Any]],
) -> None:
    """Insert rows of one table in one statement, noting their ids and names."""
    for item, _row, values in ready:
        if table is not EPISODE_EVENT:
            values["person_id"] = item.person_id
        unknown = [c for c in values if c not in table.c]
        if unknown:
            raise InvalidInput(
                f"OMOP table {table.name} has no column(s) {', '.join(sorted(unknown))}; "
                "fix the form's mapping"
            )
    # every row gets every column any of them has: OMOP columns have no server defaults,
    # so a missing column and NULL are the same, and one multi-row statement does
    columns = {c for _item, _row, values in ready for c in values}
    params = [{c: values.get(c) for c in columns} for _item, _row, values in ready]
    if table is EPISODE_EVENT:
        conn.execute(insert(EPISODE_EVENT), params)
        return
    key = table.c[_primary_key(table)]
    ids = conn.execute(insert(table).returning(key, sort_by_parameter_order=True), params)
    for (item, row, _values), row_id in zip(ready, ids.scalars(), strict=True):
        if isinstance(row.get("_name"), str):
            names[item.record_id][row["_name"]] = int(row_id)
        owned.append({"table_name": table.name, "row_id": int(row_id), "record_id": item.record_id})


def _insert_deaths(
    conn: Connection, pending: Sequence[PendingRows], owned: list[dict[str, Any]]
) -> None:
    """One death per person: the batch's last death row of a person replaces any earlier."""
    deaths: dict[int, tuple[int, dict[str, Any]]] = {}
    for item in pending:
        for row in item.rows.get(DEATH.name, ()):
            values = _resolve(row, {})
            if values is None:
                raise InvalidInput("a death row cannot refer to other rows; fix the mapping")
            deaths[item.person_id] = (item.record_id, values | {"person_id": item.person_id})
    if not deaths:
        return
    persons = sorted(deaths)
    conn.execute(delete(DEATH).where(DEATH.c.person_id.in_(persons)))
    conn.execute(
        delete(CLINICAL_RECORD_ROW).where(
            CLINICAL_RECORD_ROW.c.table_name == DEATH.name,
            CLINICAL_RECORD_ROW.c.row_id.in_(persons),
        )
    )
    for person_id in persons:
        record_id, values = deaths[person_id]
        unknown = [c for c in values if c not in DEATH.c]
        if unknown:
            raise InvalidInput(
                f"OMOP table death has no column(s) {', '.join(sorted(unknown))}; "
                "fix the form's mapping"
            )
        conn.execute(insert(DEATH), [values])
        owned.append({"table_name": DEATH.name, "row_id": person_id, "record_id": record_id})


__all__ = [
    "EVENT_TABLES",
    "PERSON_TABLE",
    "TABLES",
    "OmopInput",
    "PendingRows",
    "RowRef",
    "delete_record_rows",
    "insert_record_rows",
]
