"""The ingest hot path: one :meth:`Catalog.record_items` call as batched SQL.

Everything happens on one connection inside the caller's transaction:

1. one ``SELECT ... IN`` per level finds what is already catalogued: instances by SOP
   Instance UID, then (only for instances not seen before) patients, studies (locked
   ``FOR UPDATE`` on PostgreSQL, as their modalities are rewritten) and series;
2. every candidate is decided in input order, in memory: ``DUPLICATE`` or ``CONFLICT`` for a
   known SOP Instance UID, ``CONFLICT`` for a study under another patient or a series under
   another study (nothing is ever re-parented), else ``STORED``;
3. new patients, studies and series are inserted in one ``INSERT ... RETURNING`` each, new
   instances and all ingest items with one executemany each, and existing rows are updated
   with one executemany per level: counters incremented, NULL columns filled with
   ``COALESCE`` (a non-NULL value is never overwritten), rows in id order;
4. the batch's counters are incremented.

Reasons carry UIDs and digest prefixes only, never header values (PHI rule).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    RowMapping,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)

from biobank.catalog.models import InstanceRecord, ItemInput, ItemOutcome, ItemResult
from biobank.catalog.schema import (
    INGEST_BATCH,
    INGEST_ITEM,
    INSTANCE,
    PATIENT,
    PATIENT_FILLABLE,
    SERIES,
    SERIES_FILLABLE,
    STUDY,
    STUDY_FILLABLE,
)
from biobank.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from biobank.catalog.queries import AnySelect

IN_CHUNK = 500
"""Keys per ``IN (...)`` list (well below every backend's parameter limit)."""

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_LIMITED_FIELDS: tuple[tuple[str, int], ...] = tuple(
    (name, length)
    for table, names in (
        (PATIENT, ("patient_pseudonym", "patient_sex")),
        (STUDY, ("study_instance_uid", "study_time", "accession_number", "study_id")),
        (SERIES, ("series_instance_uid", "modality", "body_part_examined", "series_time")),
        (INSTANCE, ("sop_instance_uid", "sop_class_uid", "transfer_syntax_uid")),
    )
    for name in names
    if (length := getattr(table.c[name].type, "length", None)) is not None
)
_MODALITIES_LENGTH: int = getattr(STUDY.c.modalities_in_study.type, "length", None) or 128
_REQUIRED_FIELDS = (
    "patient_pseudonym",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "sop_class_uid",
)


def chunked(keys: Iterable[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """``keys`` sorted, in lists of at most ``size``."""
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def check_items(items: Sequence[ItemInput]) -> None:
    """Refuse inputs that break the calling contract (a bug in the caller, not in the data).

    Raises
    ------
    InvalidInput
        If a ``STORED`` item has no instance, another item has one, or a digest is malformed.
    """
    for index, item in enumerate(items):
        where = f"record_items: item {index}"
        if (item.outcome is ItemOutcome.STORED) != (item.instance is not None):
            raise InvalidInput(
                f"{where} has outcome {item.outcome.value!r} "
                f"{'without' if item.instance is None else 'with'} an instance; an instance "
                "is given exactly for the outcome 'stored' (a candidate to catalogue)"
            )
        if item.instance is not None and not _DIGEST.match(item.instance.blob_digest):
            raise InvalidInput(
                f"{where}: blob_digest is not a SHA-256 digest (64 lowercase hex digits); "
                "pass the digest the blob store returned"
            )
        if item.bytes_in < 0:
            raise InvalidInput(f"{where}: bytes_in is negative; pass the bytes read (>= 0)")


def join_modalities(modalities: Iterable[str]) -> str:
    """``modalities`` sorted and backslash-joined, cut at a whole value to fit the column."""
    joined = ""
    for modality in sorted(set(modalities)):
        candidate = f"{joined}\\{modality}" if joined else modality
        if len(candidate) > _MODALITIES_LENGTH:
            break
        joined = candidate
    return joined


def _unfit_field(instance: InstanceRecord) -> str | None:
    """Why the instance cannot be catalogued as it is (None when it can)."""
    for name in _REQUIRED_FIELDS:
        if not getattr(instance, name):
            return f"{name} is empty"
    for name, length in _LIMITED_FIELDS:
        value = getattr(instance, name)
        if value is not None and len(value) > length:
            return f"{name} is longer than {length} characters"
    return None


@dataclass
class _Node:
    """A patient, study or series: as found in the database or created by this call."""

    id: int | None
    parent: str | None  # the patient pseudonym of a study, the study UID of a series
    values: dict[str, Any]  # the fillable columns as they are now
    new: bool
    missing: list[str] = field(default_factory=list)  # fillable columns still NULL
    filled: bool = False
    add_instances: int = 0
    add_bytes: int = 0  # studies only
    add_children: int = 0  # studies of a patient, series of a study
    modalities: set[str] = field(default_factory=set)  # studies only

    @classmethod
    def create(
        cls, names: tuple[str, ...], values: dict[str, Any], parent: str | None, *, new: bool
    ) -> _Node:
        """A node with the fillable ``values`` (those absent are NULL)."""
        full = {name: values.get(name) for name in names}
        missing = [name for name, value in full.items() if value is None]
        return cls(id=None, parent=parent, values=full, new=new, missing=missing)

    def fill(self, instance: InstanceRecord) -> None:
        """Fill the NULL columns from ``instance`` (a non-NULL value is never replaced)."""
        if not self.missing:
            return
        still = []
        for name in self.missing:
            value = getattr(instance, name)
            if value is None:
                still.append(name)
            else:
                self.values[name] = value
                self.filled = True
        self.missing = still


def _lookup(*columns: Any, key: Column[Any]) -> AnySelect:
    return select(*columns).where(key.in_(bindparam("keys", expanding=True)))


_FIND_INSTANCES = _lookup(
    INSTANCE.c.sop_instance_uid, INSTANCE.c.blob_digest, key=INSTANCE.c.sop_instance_uid
)
_FIND_PATIENTS = _lookup(
    PATIENT.c.id,
    PATIENT.c.patient_pseudonym,
    *(PATIENT.c[n] for n in PATIENT_FILLABLE),
    key=PATIENT.c.patient_pseudonym,
)
_FIND_STUDIES = (
    _lookup(
        STUDY.c.id,
        STUDY.c.study_instance_uid,
        STUDY.c.modalities_in_study,
        PATIENT.c.patient_pseudonym,
        *(STUDY.c[n] for n in STUDY_FILLABLE),
        key=STUDY.c.study_instance_uid,
    )
    .join_from(STUDY, PATIENT, STUDY.c.patient_id == PATIENT.c.id)
    .order_by(STUDY.c.id)
    .with_for_update(of=STUDY)
)
_FIND_SERIES = _lookup(
    SERIES.c.id,
    SERIES.c.series_instance_uid,
    STUDY.c.study_instance_uid,
    *(SERIES.c[n] for n in SERIES_FILLABLE),
    key=SERIES.c.series_instance_uid,
).join_from(SERIES, STUDY, SERIES.c.study_id == STUDY.c.id)


def _update_statement(table: Table, fillable: tuple[str, ...], counters: tuple[str, ...]) -> Any:
    """``UPDATE`` by ``p_id``: COALESCE-fill ``fillable``, add ``p_<counter>`` to counters."""
    values: dict[str, Any] = {
        name: func.coalesce(table.c[name], bindparam(f"p_{name}", type_=table.c[name].type))
        for name in fillable
    }
    for counter in counters:
        values[counter] = table.c[counter] + bindparam(f"p_{counter}")
    if "updated_at" in table.c:
        values["updated_at"] = bindparam("p_now", type_=table.c.updated_at.type)
    if "modalities_in_study" in table.c:
        values["modalities_in_study"] = bindparam("p_modalities")
    return update(table).where(table.c.id == bindparam("p_id")).values(values)


_PATIENT_COUNTERS = {"number_of_studies": "add_children"}
_STUDY_COUNTERS = {
    "number_of_series": "add_children",
    "number_of_instances": "add_instances",
    "stored_bytes": "add_bytes",
}
_SERIES_COUNTERS = {"number_of_instances": "add_instances"}
_UPDATE_PATIENT = _update_statement(PATIENT, PATIENT_FILLABLE, tuple(_PATIENT_COUNTERS))
_UPDATE_STUDY = _update_statement(STUDY, STUDY_FILLABLE, tuple(_STUDY_COUNTERS))
_UPDATE_SERIES = _update_statement(SERIES, SERIES_FILLABLE, tuple(_SERIES_COUNTERS))
_INSERT_PATIENT = insert(PATIENT).returning(PATIENT.c.id, PATIENT.c.patient_pseudonym)
_INSERT_STUDY = insert(STUDY).returning(STUDY.c.id, STUDY.c.study_instance_uid)
_INSERT_SERIES = insert(SERIES).returning(SERIES.c.id, SERIES.c.series_instance_uid)
_INSERT_INSTANCE = insert(INSTANCE)
_INSERT_ITEM = insert(INGEST_ITEM)
_BATCH = INGEST_BATCH.c
_COUNT_BATCH = (
    update(INGEST_BATCH)
    .where(_BATCH.id == bindparam("p_id"))
    .values(
        {
            name: _BATCH[name] + bindparam(f"p_{name}")
            for name in (
                "received",
                "stored",
                "duplicate",
                "conflict",
                "rejected",
                "quarantined",
                "bytes_in",
            )
        }
    )
)


def _rows_in(conn: Connection, stmt: AnySelect, keys: Iterable[str]) -> Iterator[RowMapping]:
    for chunk in chunked(keys):
        yield from conn.execute(stmt, {"keys": chunk}).mappings()


def _short(digest: str) -> str:
    return digest[:12]


def _digest_conflict(instance: InstanceRecord, known: str) -> str:
    new = _short(instance.blob_digest)
    return (
        f"SOP Instance UID {instance.sop_instance_uid} is already stored as blob "
        f"{_short(known)}, this copy is blob {new}: the two exports disagree: check which is "
        f"right; the new content is kept as blob {new}, nothing was overwritten"
    )


def _study_conflict(instance: InstanceRecord) -> str:
    return (
        f"study {instance.study_instance_uid} is already catalogued under another patient "
        "pseudonym: the exports disagree about whose study it is; check the source and the "
        f"pseudonym key; the new content is kept as blob {_short(instance.blob_digest)}, "
        "nothing was re-parented"
    )


def _series_conflict(instance: InstanceRecord, study_uid: str) -> str:
    return (
        f"series {instance.series_instance_uid} already belongs to study {study_uid}, this copy "
        f"says study {instance.study_instance_uid}: check which export is right; the new "
        f"content is kept as blob {_short(instance.blob_digest)}, nothing was re-parented"
    )


class Recorder:
    """Records one call's items on ``conn`` (in the caller's transaction)."""

    def __init__(self, conn: Connection, batch_id: str, now: datetime.datetime) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.now = now
        self.known: dict[str, str] = {}  # SOP Instance UID -> digest (catalogued or stored now)
        self.patients: dict[str, _Node] = {}
        self.studies: dict[str, _Node] = {}
        self.series: dict[str, _Node] = {}
        self.instance_rows: list[dict[str, Any]] = []

    # -- reading what exists -------------------------------------------------------------

    def _load(self, candidates: list[InstanceRecord]) -> None:
        conn = self.conn
        for row in _rows_in(conn, _FIND_INSTANCES, (c.sop_instance_uid for c in candidates)):
            self.known[row["sop_instance_uid"]] = row["blob_digest"]
        fresh = [c for c in candidates if c.sop_instance_uid not in self.known]
        if not fresh:
            return
        for row in _rows_in(conn, _FIND_PATIENTS, (c.patient_pseudonym for c in fresh)):
            node = _Node.create(PATIENT_FILLABLE, dict(row), None, new=False)
            node.id = row["id"]
            self.patients[row["patient_pseudonym"]] = node
        for row in _rows_in(conn, _FIND_STUDIES, (c.study_instance_uid for c in fresh)):
            node = _Node.create(STUDY_FILLABLE, dict(row), row["patient_pseudonym"], new=False)
            node.id = row["id"]
            modalities = row["modalities_in_study"]
            node.modalities = set(modalities.split("\\")) if modalities else set()
            self.studies[row["study_instance_uid"]] = node
        for row in _rows_in(conn, _FIND_SERIES, (c.series_instance_uid for c in fresh)):
            node = _Node.create(SERIES_FILLABLE, dict(row), row["study_instance_uid"], new=False)
            node.id = row["id"]
            self.series[row["series_instance_uid"]] = node

    # -- deciding ------------------------------------------------------------------------

    def _decide(self, instance: InstanceRecord) -> tuple[ItemOutcome, str]:
        known = self.known.get(instance.sop_instance_uid)
        if known is not None:
            if known == instance.blob_digest:
                return ItemOutcome.DUPLICATE, "already stored with the same content"
            return ItemOutcome.CONFLICT, _digest_conflict(instance, known)
        unfit = _unfit_field(instance)
        if unfit is not None:
            return ItemOutcome.REJECTED, (
                f"{unfit}, which the catalogue cannot hold: the instance was not catalogued; "
                "check the source file"
            )
        study = self.studies.get(instance.study_instance_uid)
        if study is not None and study.parent != instance.patient_pseudonym:
            return ItemOutcome.CONFLICT, _study_conflict(instance)
        series = self.series.get(instance.series_instance_uid)
        if series is not None and series.parent != instance.study_instance_uid:
            return ItemOutcome.CONFLICT, _series_conflict(instance, series.parent or "?")
        self._store(instance, study, series)
        return ItemOutcome.STORED, ""

    def _store(self, instance: InstanceRecord, study: _Node | None, series: _Node | None) -> None:
        patient = self.patients.get(instance.patient_pseudonym)
        if patient is None:
            patient = _Node.create(PATIENT_FILLABLE, {}, None, new=True)
            self.patients[instance.patient_pseudonym] = patient
        if study is None:
            study = _Node.create(STUDY_FILLABLE, {}, instance.patient_pseudonym, new=True)
            self.studies[instance.study_instance_uid] = study
            patient.add_children += 1
        if series is None:
            series = _Node.create(SERIES_FILLABLE, {}, instance.study_instance_uid, new=True)
            self.series[instance.series_instance_uid] = series
            study.add_children += 1
        patient.fill(instance)
        study.fill(instance)
        series.fill(instance)
        series.add_instances += 1
        study.add_instances += 1
        study.add_bytes += instance.blob_size
        modality = series.values.get("modality")
        if modality:
            study.modalities.add(modality)
        self.known[instance.sop_instance_uid] = instance.blob_digest
        self.instance_rows.append(
            {
                "sop_instance_uid": instance.sop_instance_uid,
                "series_uid": instance.series_instance_uid,
                "sop_class_uid": instance.sop_class_uid,
                "instance_number": instance.instance_number,
                "transfer_syntax_uid": instance.transfer_syntax_uid,
                "rows": instance.rows,
                "columns": instance.columns,
                "number_of_frames": instance.number_of_frames,
                "bits_allocated": instance.bits_allocated,
                "blob_digest": instance.blob_digest,
                "blob_size": instance.blob_size,
                "header": instance.header_json,
                "deid_record": instance.deid_record_json,
                "batch_id": self.batch_id,
                "created_at": self.now,
            }
        )

    # -- writing -------------------------------------------------------------------------

    def _insert_new(self, stmt: Any, nodes: dict[str, _Node], rows: list[dict[str, Any]]) -> None:
        """Insert new rows; note the ids the database gave them."""
        if rows:
            for row_id, key in self.conn.execute(stmt, rows):
                nodes[key].id = row_id

    def _update_existing(
        self,
        stmt: Any,
        nodes: dict[str, _Node],
        fillable: tuple[str, ...],
        counters: dict[str, str],
    ) -> None:
        """Fill NULL columns and add to the counters of the touched existing rows, in id order."""
        touched = sorted(
            (
                node
                for node in nodes.values()
                if not node.new and (node.filled or node.add_children or node.add_instances)
            ),
            key=lambda node: node.id or 0,
        )
        params = []
        for node in touched:
            param = {f"p_{name}": node.values[name] for name in fillable}
            param.update({f"p_{column}": getattr(node, a) for column, a in counters.items()})
            param["p_id"] = node.id
            param["p_now"] = self.now
            param["p_modalities"] = join_modalities(node.modalities)
            params.append(param)
        if params:
            self.conn.execute(stmt, params)

    def _write(self) -> None:
        now = self.now
        self._insert_new(
            _INSERT_PATIENT,
            self.patients,
            [
                {
                    "patient_pseudonym": key,
                    **node.values,
                    "number_of_studies": node.add_children,
                    "created_at": now,
                }
                for key, node in self.patients.items()
                if node.new
            ],
        )
        self._insert_new(
            _INSERT_STUDY,
            self.studies,
            [
                {
                    "study_instance_uid": key,
                    "patient_id": self.patients[node.parent or ""].id,
                    **node.values,
                    "modalities_in_study": join_modalities(node.modalities),
                    "number_of_series": node.add_children,
                    "number_of_instances": node.add_instances,
                    "stored_bytes": node.add_bytes,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, node in self.studies.items()
                if node.new
            ],
        )
        self._insert_new(
            _INSERT_SERIES,
            self.series,
            [
                {
                    "series_instance_uid": key,
                    "study_id": self.studies[node.parent or ""].id,
                    **node.values,
                    "number_of_instances": node.add_instances,
                    "metadata_instances": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, node in self.series.items()
                if node.new
            ],
        )
        if self.instance_rows:
            for row in self.instance_rows:
                row["series_id"] = self.series[row.pop("series_uid")].id
            self.instance_rows.sort(key=lambda r: r["sop_instance_uid"])
            self.conn.execute(_INSERT_INSTANCE, self.instance_rows)
        self._update_existing(_UPDATE_SERIES, self.series, SERIES_FILLABLE, _SERIES_COUNTERS)
        self._update_existing(_UPDATE_STUDY, self.studies, STUDY_FILLABLE, _STUDY_COUNTERS)
        self._update_existing(_UPDATE_PATIENT, self.patients, PATIENT_FILLABLE, _PATIENT_COUNTERS)

    # -- the whole call ------------------------------------------------------------------

    def record(self, items: Sequence[ItemInput]) -> list[ItemResult]:
        """Decide and write every item; return one result per item, in input order.

        Raises
        ------
        NotFound
            If the batch does not exist (nothing is written).
        """
        self._load([item.instance for item in items if item.instance is not None])
        results: list[ItemResult] = []
        item_rows: list[dict[str, Any]] = []
        counts = dict.fromkeys(ItemOutcome, 0)
        for item in items:
            instance = item.instance
            if instance is None:
                outcome, reason = item.outcome, item.reason
                uid = digest = size = None
            else:
                outcome, reason = self._decide(instance)
                uid, digest = instance.sop_instance_uid, instance.blob_digest
                size = instance.blob_size
            counts[outcome] += 1
            results.append(ItemResult(item.source_path, outcome, reason, uid, digest))
            item_rows.append(
                {
                    "batch_id": self.batch_id,
                    "source_path": item.source_path,
                    "outcome": outcome.value,
                    "reason": reason,
                    "sop_instance_uid": uid,
                    "blob_digest": digest,
                    "blob_size": size,
                    "created_at": self.now,
                }
            )
        counted = self.conn.execute(
            _COUNT_BATCH,
            {
                "p_id": self.batch_id,
                "p_received": len(items),
                **{f"p_{outcome.value}": n for outcome, n in counts.items()},
                "p_bytes_in": sum(item.bytes_in for item in items),
            },
        )
        if counted.rowcount != 1:
            raise NotFound(
                f"no ingest batch {self.batch_id} in the catalogue; start one with start_batch"
            )
        self._write()
        if item_rows:
            self.conn.execute(_INSERT_ITEM, item_rows)
        return results


__all__ = ["IN_CHUNK", "Recorder", "check_items", "chunked", "join_modalities"]
