"""Clinical records: each submitted form record, its versions and the OMOP rows it produced.

A record is identified by ``(form, patient_pseudonym, record_key)`` (``record_key`` names the
form's key fields, empty for a form with one record per patient). :meth:`ClinicalRecords.
save_records` stores a batch of records in one write transaction; for each record:

- the OMOP person of the pseudonym is found or created (:func:`.omop_person.ensure_persons`);
- no current record → version 1 (``clinical_record`` and ``clinical_record_version``);
- a current record with the same ``raw_digest`` → ``unchanged``: nothing is written;
- otherwise → version + 1: the version is added to the history with the names of the fields
  that changed, the current record is updated, and the OMOP rows the previous version
  produced (listed in ``clinical_record_row``; with the ``episode_event`` rows of its
  episodes) are deleted before the new rows are inserted — a corrected record replaces
  exactly its own rows and leaves nothing behind.

OMOP rows come as plain ``table name → list of column dicts`` (:data:`OmopInput`), without
``person_id`` (filled here). A row may carry ``"_name"``; a value that is a :class:`RowRef`
is replaced by the id of the row of that name, so rows are inserted in dependency order
(a stage measurement after the condition it qualifies, an ``episode_event`` after its episode
and its event). The ``person`` entry is a partial person row applied with
:func:`.omop_person.set_demographics` (the clinical form owns demographics); ``death`` is
keyed by the person, so a record's death row replaces the person's previous one. Observation
periods are recomputed for every person the batch touched.

Values are stored as JSON with dates tagged (``{"$date": "2021-03-04"}``) and read back as
:class:`datetime.date`. Import problems are stored without values or messages (record
index, field, rule, severity): values, and messages quoting them, may be PHI.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select, tuple_, update

from biobank.catalog.clinical_rows import (
    PERSON_TABLE,
    TABLES,
    OmopInput,
    PendingRows,
    RowRef,
    delete_record_rows,
    insert_record_rows,
)
from biobank.catalog.omop import (
    CLINICAL_IMPORT,
    CLINICAL_RECORD,
    CLINICAL_RECORD_ROW,
    CLINICAL_RECORD_VERSION,
)
from biobank.catalog.omop_person import (
    ensure_persons,
    refresh_observation_periods,
    set_demographics,
)
from biobank.catalog.repository import Catalog
from biobank.errors import InvalidInput, NotFound

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"

_MAX_BATCH = 1000


@dataclass(frozen=True)
class RecordInput:
    """One record to save, already validated, pseudonymised, date-shifted and mapped."""

    form: str
    form_version: int
    patient_pseudonym: str
    record_key: str
    site: str
    values: Mapping[str, Any]
    """Typed values (no identity fields): str, int, float, bool, date or None."""
    raw_digest: str
    rows: OmopInput = field(default_factory=dict)
    raw_sealed: bytes | None = None
    warnings: Sequence[Mapping[str, Any]] = ()
    """Warnings the record was stored with (field, rule, severity: no values)."""


class SaveOutcome(NamedTuple):
    """What :meth:`ClinicalRecords.save_records` did with one record."""

    outcome: str
    """``created``, ``updated`` or ``unchanged``."""
    record_id: int
    version: int
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredRecord:
    """The current version of a record."""

    id: int
    form: str
    form_version: int
    patient_pseudonym: str
    record_key: str
    person_id: int
    site: str
    version: int
    raw_digest: str
    submitter: str
    import_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    values: dict[str, Any]
    warnings: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO text)."""
        return {
            "id": self.id,
            "form": self.form,
            "form_version": self.form_version,
            "patient_pseudonym": self.patient_pseudonym,
            "record_key": self.record_key,
            "person_id": self.person_id,
            "site": self.site,
            "version": self.version,
            "raw_digest": self.raw_digest,
            "submitter": self.submitter,
            "import_id": self.import_id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "updated_at": self.updated_at.isoformat(timespec="seconds"),
            "values": plain_values(self.values),
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class RecordVersion:
    """One version of a record, as submitted then."""

    record_id: int
    version: int
    raw_digest: str
    submitter: str
    import_id: str | None
    submitted_at: dt.datetime
    changed_fields: list[str]
    values: dict[str, Any]
    sealed: bool
    """Whether the submitted record is kept (sealed with the site key)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO text)."""
        return {
            "record_id": self.record_id,
            "version": self.version,
            "raw_digest": self.raw_digest,
            "submitter": self.submitter,
            "import_id": self.import_id,
            "submitted_at": self.submitted_at.isoformat(timespec="seconds"),
            "changed_fields": self.changed_fields,
            "values": plain_values(self.values),
            "sealed": self.sealed,
        }


@dataclass(frozen=True)
class ImportSummary:
    """One import: who sent what through which channel, and what became of it."""

    id: str
    form: str
    channel: str
    submitter: str
    site: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, int]
    problems: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "form": self.form,
            "channel": self.channel,
            "submitter": self.submitter,
            "site": self.site,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": (
                self.finished_at.isoformat(timespec="seconds") if self.finished_at else None
            ),
            "counts": self.counts,
            "problems": self.problems,
        }


_COUNTS = ("received", "created", "updated", "unchanged", "rejected")


# --- JSON of typed values -------------------------------------------------------------------


def _tagged(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    return value


def encode_values(values: Mapping[str, Any]) -> str:
    """The JSON text of typed values, dates tagged (``{"$date": "2021-03-04"}``)."""
    return json.dumps(
        {name: _tagged(value) for name, value in sorted(values.items())},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _untagged(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$date" in value:
            return dt.date.fromisoformat(value["$date"])
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
    return value


def decode_values(text: str | None) -> dict[str, Any]:
    """The typed values of :func:`encode_values`' text (dates as :class:`datetime.date`)."""
    data = json.loads(text) if text else {}
    return {str(name): _untagged(value) for name, value in data.items()}


def plain_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values for a JSON answer: dates as ISO text."""
    return {
        name: value.isoformat() if isinstance(value, dt.date) else value
        for name, value in values.items()
    }


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    names = set(before) | set(after)
    return tuple(
        sorted(
            name
            for name in names
            if before.get(name) != after.get(name)
            or type(before.get(name)) is not type(after.get(name))
        )
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ClinicalRecords:
    """The clinical record tables of a catalogue (see the module docstring)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- imports -------------------------------------------------------------------------

    def start_import(self, form: str, channel: str, submitter: str, site: str) -> str:
        """Record the start of an import and return its id (32 hex digits)."""
        _check_length("form", form, 64)
        _check_length("channel", channel, 16)
        _check_length("submitter", submitter, 128)
        _check_length("site", site, 64)
        import_id = uuid.uuid4().hex
        with self.catalog._writing(f"starting clinical import {import_id}") as conn:
            conn.execute(
                insert(CLINICAL_IMPORT).values(
                    id=import_id,
                    form=form,
                    channel=channel,
                    submitter=submitter,
                    site=site,
                    started_at=_now(),
                )
            )
        return import_id

    def finish_import(
        self,
        import_id: str,
        counts: Mapping[str, int],
        problems: Sequence[Mapping[str, Any]],
    ) -> None:
        """Record an import's counts and problems.

        ``problems`` are stored without values: only ``record``, ``field``, ``rule`` and
        ``severity`` of each are kept, whatever else they carry.
        """
        kept = [
            {
                "record": problem.get("record"),
                "field": problem.get("field"),
                "rule": problem.get("rule"),
                "severity": problem.get("severity", "error"),
            }
            for problem in problems
        ]
        with self.catalog._writing(f"finishing clinical import {import_id}") as conn:
            result = conn.execute(
                update(CLINICAL_IMPORT)
                .where(CLINICAL_IMPORT.c.id == import_id)
                .values(
                    finished_at=_now(),
                    problems=_dumps(kept),
                    **{name: int(counts.get(name, 0)) for name in _COUNTS},
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"no clinical import {import_id}; start it with start_import")

    def imports(self, limit: int = 50, offset: int = 0) -> list[ImportSummary]:
        """The most recent imports first."""
        stmt = (
            select(CLINICAL_IMPORT)
            .order_by(CLINICAL_IMPORT.c.started_at.desc(), CLINICAL_IMPORT.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.catalog._reading("reading clinical imports") as conn:
            return [_import(row) for row in conn.execute(stmt).mappings()]

    def get_import(self, import_id: str) -> ImportSummary:
        """One import.

        Raises
        ------
        NotFound
            If there is no import ``import_id``.
        """
        with self.catalog._reading(f"reading clinical import {import_id}") as conn:
            row = (
                conn.execute(select(CLINICAL_IMPORT).where(CLINICAL_IMPORT.c.id == import_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no clinical import {import_id}; list them with imports()")
        return _import(row)

    # -- writing records -----------------------------------------------------------------

    def save_record(
        self, record: RecordInput, *, submitter: str, import_id: str | None = None
    ) -> SaveOutcome:
        """Save one record in its own transaction (see :meth:`save_records`)."""
        return self.save_records([record], submitter=submitter, import_id=import_id)[0]

    def save_records(
        self,
        records: Sequence[RecordInput],
        *,
        submitter: str,
        import_id: str | None = None,
    ) -> list[SaveOutcome]:
        """Save ``records`` in ONE write transaction; all are stored or none.

        Returns one outcome per record, in order. Records of the same key later in the
        batch see the earlier ones (a repeated record is ``unchanged``, a different one a
        new version).

        Raises
        ------
        StorageError
            If the database fails (nothing of the batch is written).
        InvalidInput
            If a record's rows are malformed (unknown table, unresolvable reference).
        """
        if not records:
            return []
        if len(records) > _MAX_BATCH:
            raise InvalidInput(
                f"{len(records)} clinical records in one transaction; save at most "
                f"{_MAX_BATCH} at a time"
            )
        _check_length("submitter", submitter, 128)
        for record in records:
            _check_record(record)
        now = _now()
        what = f"saving {len(records)} clinical record(s)" + (
            f" of import {import_id}" if import_id else ""
        )
        with self.catalog._writing(what) as conn:
            persons = ensure_persons(conn, (r.patient_pseudonym for r in records))
            current = self._current(conn, records)
            outcomes = []
            batch = _Batch()
            for record in records:
                person_id = persons[record.patient_pseudonym]
                identity = (record.form, record.patient_pseudonym, record.record_key)
                outcome, state = self._save_one(
                    conn, batch, record, person_id, current.get(identity), submitter, import_id, now
                )
                current[identity] = state
                outcomes.append(outcome)
            if batch.versions:
                conn.execute(insert(CLINICAL_RECORD_VERSION), batch.versions)
            insert_record_rows(conn, list(batch.rows.values()))
            if batch.persons:
                refresh_observation_periods(conn, batch.persons)
        return outcomes

    @staticmethod
    def _current(
        conn: Connection, records: Sequence[RecordInput]
    ) -> dict[tuple[str, str, str], _Current]:
        keys = sorted({(r.form, r.patient_pseudonym, r.record_key) for r in records})
        found: dict[tuple[str, str, str], _Current] = {}
        columns = (
            CLINICAL_RECORD.c.form,
            CLINICAL_RECORD.c.patient_pseudonym,
            CLINICAL_RECORD.c.record_key,
        )
        for start in range(0, len(keys), 300):
            chunk = keys[start : start + 300]
            rows = conn.execute(
                select(
                    *columns,
                    CLINICAL_RECORD.c.id,
                    CLINICAL_RECORD.c.version,
                    CLINICAL_RECORD.c.raw_digest,
                    CLINICAL_RECORD.c.record_values,
                ).where(tuple_(*columns).in_(chunk))
            )
            for row in rows:
                found[(row.form, row.patient_pseudonym, row.record_key)] = _Current(
                    int(row.id), int(row.version), row.raw_digest, decode_values(row.record_values)
                )
        return found

    def _save_one(
        self,
        conn: Connection,
        batch: _Batch,
        record: RecordInput,
        person_id: int,
        current: _Current | None,
        submitter: str,
        import_id: str | None,
        now: dt.datetime,
    ) -> tuple[SaveOutcome, _Current]:
        values_json = encode_values(record.values)
        values = decode_values(values_json)
        if current is not None and current.raw_digest == record.raw_digest:
            return SaveOutcome(UNCHANGED, current.record_id, current.version), current
        changed: tuple[str, ...] = ()
        state = {
            "form_version": record.form_version,
            "person_id": person_id,
            "site": record.site,
            "raw_digest": record.raw_digest,
            "submitter": submitter,
            "import_id": import_id,
            "updated_at": now,
            "warnings": _dumps([dict(w) for w in record.warnings]) if record.warnings else None,
            "record_values": values_json,
            "raw_sealed": record.raw_sealed,
        }
        if current is None:
            record_id = int(
                conn.execute(
                    insert(CLINICAL_RECORD).returning(CLINICAL_RECORD.c.id),
                    [
                        state
                        | {
                            "form": record.form,
                            "patient_pseudonym": record.patient_pseudonym,
                            "record_key": record.record_key,
                            "version": 1,
                            "created_at": now,
                        }
                    ],
                ).scalar_one()
            )
            version, outcome = 1, CREATED
        else:
            record_id = current.record_id
            version = current.version + 1
            changed = _changed(current.values, values)
            outcome = UPDATED
            conn.execute(
                update(CLINICAL_RECORD)
                .where(CLINICAL_RECORD.c.id == record_id)
                .values(state | {"version": version})
            )
            delete_record_rows(conn, record_id)
        batch.versions.append(
            {
                "record_id": record_id,
                "version": version,
                "raw_digest": record.raw_digest,
                "submitter": submitter,
                "import_id": import_id,
                "submitted_at": now,
                "changed_fields": _dumps(list(changed)),
                "record_values": values_json,
                "raw_sealed": record.raw_sealed,
            }
        )
        for partial in record.rows.get(PERSON_TABLE, ()):
            set_demographics(conn, person_id, dict(partial), only_unknown=False)
        # a later version in the same batch replaces the rows of an earlier one
        batch.rows[record_id] = PendingRows(record_id, person_id, record.rows)
        batch.persons.add(person_id)
        return (
            SaveOutcome(outcome, record_id, version, changed),
            _Current(record_id, version, record.raw_digest, values),
        )

    # -- reading records -----------------------------------------------------------------

    def get(self, record_id: int) -> StoredRecord:
        """The current version of record ``record_id``.

        Raises
        ------
        NotFound
            If there is no such record.
        """
        with self.catalog._reading(f"reading clinical record {record_id}") as conn:
            row = (
                conn.execute(select(CLINICAL_RECORD).where(CLINICAL_RECORD.c.id == record_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no clinical record {record_id}; list them with records()")
        return _stored(row)

    def find(self, form: str, patient_pseudonym: str, record_key: str) -> StoredRecord | None:
        """The current record of ``(form, patient_pseudonym, record_key)``, if any."""
        with self.catalog._reading(f"reading a clinical record of form {form}") as conn:
            row = (
                conn.execute(
                    select(CLINICAL_RECORD).where(
                        CLINICAL_RECORD.c.form == form,
                        CLINICAL_RECORD.c.patient_pseudonym == patient_pseudonym,
                        CLINICAL_RECORD.c.record_key == record_key,
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _stored(row)

    def stored_records(self, form: str, patient_pseudonym: str) -> list[StoredRecord]:
        """The current records of ``form`` of one patient (oldest first)."""
        return self.stored_records_of(form, [patient_pseudonym]).get(patient_pseudonym, [])

    def stored_records_of(
        self, form: str, patient_pseudonyms: Sequence[str]
    ) -> dict[str, list[StoredRecord]]:
        """The current records of ``form`` of several patients, by pseudonym."""
        wanted = sorted(set(patient_pseudonyms))
        found: dict[str, list[StoredRecord]] = {}
        with self.catalog._reading(f"reading clinical records of form {form}") as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    select(CLINICAL_RECORD)
                    .where(
                        CLINICAL_RECORD.c.form == form,
                        CLINICAL_RECORD.c.patient_pseudonym.in_(wanted[start : start + 500]),
                    )
                    .order_by(CLINICAL_RECORD.c.id)
                ).mappings()
                for row in rows:
                    found.setdefault(row["patient_pseudonym"], []).append(_stored(row))
        return found

    def history(self, record_id: int) -> list[RecordVersion]:
        """Every version of record ``record_id``, first to last.

        Raises
        ------
        NotFound
            If there is no such record.
        """
        with self.catalog._reading(f"reading the history of clinical record {record_id}") as conn:
            rows = (
                conn.execute(
                    select(
                        CLINICAL_RECORD_VERSION.c.record_id,
                        CLINICAL_RECORD_VERSION.c.version,
                        CLINICAL_RECORD_VERSION.c.raw_digest,
                        CLINICAL_RECORD_VERSION.c.submitter,
                        CLINICAL_RECORD_VERSION.c.import_id,
                        CLINICAL_RECORD_VERSION.c.submitted_at,
                        CLINICAL_RECORD_VERSION.c.changed_fields,
                        CLINICAL_RECORD_VERSION.c.record_values,
                        CLINICAL_RECORD_VERSION.c.raw_sealed.is_not(None).label("sealed"),
                    )
                    .where(CLINICAL_RECORD_VERSION.c.record_id == record_id)
                    .order_by(CLINICAL_RECORD_VERSION.c.version)
                )
                .mappings()
                .all()
            )
        if not rows:
            raise NotFound(f"no clinical record {record_id}; list them with records()")
        return [
            RecordVersion(
                record_id=int(row["record_id"]),
                version=int(row["version"]),
                raw_digest=row["raw_digest"],
                submitter=row["submitter"],
                import_id=row["import_id"],
                submitted_at=row["submitted_at"],
                changed_fields=json.loads(row["changed_fields"] or "[]"),
                values=decode_values(row["record_values"]),
                sealed=bool(row["sealed"]),
            )
            for row in rows
        ]

    def sealed(self, record_id: int, version: int | None = None) -> tuple[str, bytes | None]:
        """The pseudonym and the sealed submitted record of a version (default: current).

        Raises
        ------
        NotFound
            If there is no such record or version.
        """
        with self.catalog._reading(f"reading clinical record {record_id}") as conn:
            pseudonym = conn.execute(
                select(CLINICAL_RECORD.c.patient_pseudonym).where(CLINICAL_RECORD.c.id == record_id)
            ).scalar_one_or_none()
            if pseudonym is None:
                raise NotFound(f"no clinical record {record_id}; list them with records()")
            stmt = select(CLINICAL_RECORD_VERSION.c.raw_sealed).where(
                CLINICAL_RECORD_VERSION.c.record_id == record_id
            )
            if version is None:
                stmt = stmt.order_by(CLINICAL_RECORD_VERSION.c.version.desc()).limit(1)
            else:
                stmt = stmt.where(CLINICAL_RECORD_VERSION.c.version == version)
            found = conn.execute(stmt).first()
        if found is None:
            raise NotFound(
                f"clinical record {record_id} has no version {version}; see its history()"
            )
        return str(pseudonym), None if found[0] is None else bytes(found[0])

    def records(
        self,
        form: str | None = None,
        site: str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        patient_pseudonym: str | None = None,
    ) -> list[StoredRecord]:
        """Current records, filtered by form, site and patient, in order of id."""
        stmt = select(CLINICAL_RECORD)
        if form is not None:
            stmt = stmt.where(CLINICAL_RECORD.c.form == form)
        if site is not None:
            stmt = stmt.where(CLINICAL_RECORD.c.site == site)
        if patient_pseudonym is not None:
            stmt = stmt.where(CLINICAL_RECORD.c.patient_pseudonym == patient_pseudonym)
        stmt = stmt.order_by(CLINICAL_RECORD.c.id).limit(limit).offset(offset)
        with self.catalog._reading("reading clinical records") as conn:
            return [_stored(row) for row in conn.execute(stmt).mappings()]

    def count(self, form: str | None = None, site: str | None = None) -> int:
        """How many current records (of ``form``, of ``site``)."""
        stmt = select(func.count()).select_from(CLINICAL_RECORD)
        if form is not None:
            stmt = stmt.where(CLINICAL_RECORD.c.form == form)
        if site is not None:
            stmt = stmt.where(CLINICAL_RECORD.c.site == site)
        with self.catalog._reading("counting clinical records") as conn:
            return int(conn.execute(stmt).scalar_one())

    def form_values(self, form: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        """``(record_id, pseudonym, site, values)`` of every current record of ``form``."""
        stmt = (
            select(
                CLINICAL_RECORD.c.id,
                CLINICAL_RECORD.c.patient_pseudonym,
                CLINICAL_RECORD.c.site,
                CLINICAL_RECORD.c.record_values,
            )
            .where(CLINICAL_RECORD.c.form == form)
            .order_by(CLINICAL_RECORD.c.id)
        )
        with self.catalog._reading(f"reading the values of form {form}") as conn:
            return [
                (int(row.id), row.patient_pseudonym, row.site, decode_values(row.record_values))
                for row in conn.execute(stmt)
            ]

    def rows(self, record_id: int) -> dict[str, list[int]]:
        """The OMOP rows the current version of a record produced: table → ids."""
        stmt = (
            select(CLINICAL_RECORD_ROW.c.table_name, CLINICAL_RECORD_ROW.c.row_id)
            .where(CLINICAL_RECORD_ROW.c.record_id == record_id)
            .order_by(CLINICAL_RECORD_ROW.c.table_name, CLINICAL_RECORD_ROW.c.row_id)
        )
        found: dict[str, list[int]] = {}
        with self.catalog._reading(f"reading the OMOP rows of clinical record {record_id}") as conn:
            for table_name, row_id in conn.execute(stmt):
                found.setdefault(str(table_name), []).append(int(row_id))
        return found


@dataclass
class _Batch:
    """What a batch writes after its records: versions, OMOP rows, persons to refresh."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[int, PendingRows] = field(default_factory=dict)
    persons: set[int] = field(default_factory=set)


@dataclass
class _Current:
    record_id: int
    version: int
    raw_digest: str
    values: dict[str, Any]


def _check_length(name: str, value: str, limit: int) -> None:
    if not value or len(value) > limit:
        raise InvalidInput(f"{name} must be 1 to {limit} characters long, not {len(value)}")


def _check_record(record: RecordInput) -> None:
    _check_length("form", record.form, 64)
    _check_length("patient_pseudonym", record.patient_pseudonym, 64)
    _check_length("site", record.site, 64)
    if len(record.record_key) > 255:
        raise InvalidInput(
            f"the key of a record of form {record.form} is {len(record.record_key)} characters "
            "long (at most 255); shorten the form's key fields"
        )
    unknown = [name for name in record.rows if name != PERSON_TABLE and name not in TABLES]
    if unknown:
        raise InvalidInput(
            f"form {record.form}: OMOP rows for unknown table(s) {', '.join(sorted(unknown))}; "
            f"a record may fill {', '.join([PERSON_TABLE, *TABLES])}"
        )


def _stored(row: Any) -> StoredRecord:
    return StoredRecord(
        id=int(row["id"]),
        form=row["form"],
        form_version=int(row["form_version"]),
        patient_pseudonym=row["patient_pseudonym"],
        record_key=row["record_key"],
        person_id=int(row["person_id"]),
        site=row["site"],
        version=int(row["version"]),
        raw_digest=row["raw_digest"],
        submitter=row["submitter"],
        import_id=row["import_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        values=decode_values(row["record_values"]),
        warnings=json.loads(row["warnings"]) if row["warnings"] else [],
    )


def _import(row: Any) -> ImportSummary:
    return ImportSummary(
        id=row["id"],
        form=row["form"],
        channel=row["channel"],
        submitter=row["submitter"],
        site=row["site"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        counts={name: int(row[name]) for name in _COUNTS},
        problems=json.loads(row["problems"]) if row["problems"] else [],
    )


__all__ = [
    "CREATED",
    "PERSON_TABLE",
    "UNCHANGED",
    "UPDATED",
    "ClinicalRecords",
    "ImportSummary",
    "OmopInput",
    "RecordInput",
    "RecordVersion",
    "RowRef",
    "SaveOutcome",
    "StoredRecord",
    "decode_values",
    "encode_values",
    "plain_values",
]
