"""Importing clinical records: validate, pseudonymise, shift dates, map to OMOP and store.

:meth:`ClinicalService.import_records` takes the records of one form as submitted (from the
REST API or a file read by :func:`biobank.clinical.sources.read_records`) and, for each:

1. **coerces** it (:func:`~biobank.clinical.validate.coerce_record`: types, codes, ranges,
   required fields, unknown fields);
2. establishes the **patient identity**. On a *site* node (a ``pseudonymizer`` is given) the
   record carries ``patient_id`` and optionally ``issuer_of_patient_id`` (default ``""``),
   normalised exactly as the de-identifier reads PatientID and IssuerOfPatientID from a DICOM
   header (first value, padding and surrounding spaces removed), so the record gets the same
   pseudonym as the patient's images; a ``patient_pseudonym`` is refused (the site computes
   it). On a *central* node (no pseudonymizer) the record carries ``patient_pseudonym`` and
   a ``patient_id`` is refused: a central node accepts only pseudonymised records;
3. **shifts its dates** by the patient's offset, the one the de-identifier applies to the
   patient's images (:meth:`~biobank.deid.Pseudonymizer.date_offset_days` with the profile's
   ``date_offset_max_days``). A profile with *retain longitudinal full dates* keeps dates, so
   clinical dates are kept too. A profile with *retain longitudinal modified dates* shifts
   them, and so do we. A profile with neither removes dates from images; OMOP cannot do
   without dates, so clinical dates are still shifted (never kept) — the images then carry
   no dates to compare with, and the shift protects the clinical ones. A central node
   receives dates already shifted at the site and keeps them;
4. checks the form's **rules** (:func:`~biobank.clinical.validate.check_rules`), including
   cross-form rules against the same patient's stored records and the records earlier in
   the same submission. Rules are judged on the dates as submitted, against the other
   records shifted back by the same offset: the outcome is the same as judging shifted
   dates (a uniform shift keeps every comparison) and the messages quote dates the
   submitter recognises;
5. **maps** the shifted values to OMOP rows (:func:`~biobank.clinical.mapping.map_record`);
6. **stores** it (:class:`~biobank.catalog.clinical.ClinicalRecords`): created, updated (a
   new version, its OMOP rows replaced) or unchanged (same digest as the current version).

An invalid record is rejected with every problem named; the others are stored — nothing is
silently dropped: the :class:`ImportReport` has exactly one result per submitted record.
Records are stored in transactions of ``batch_size`` records; if a batch fails, its records
are retried one per transaction, so a failure stores nothing of the failing record and the
report says which records were stored (outcome ``failed`` for the others).

The record as submitted is kept for provenance: its digest (of the canonical JSON: sorted
keys, UTF-8, no spaces) always — on a site node an HMAC-SHA256 under a key derived from the
seal key, because the submitted record holds the patient ID and a plain hash would let anyone
who guesses a whole record confirm it; on a central node (records arrive pseudonymised) a
plain SHA-256 — and on a site node the record itself, sealed with AES-GCM
under a key derived from the site key (``site_key.derive("clinical-record")``; 12-byte random
nonce first, the pseudonym as associated data) so that only the site can read it back
(:meth:`ClinicalService.unseal`). The stored values never hold ``patient_id``.

Values are never logged: log lines carry the import id, the form and counts.

Building the service (the CLI and API adapters do this; ``clinical`` does not import
``ingest``)::

    catalog = node.open_catalog()
    extra = node.section("clinical").get("forms") or []  # files or folders of YAML forms
    forms = FormRegistry([node.home / path for path in extra])  # built-ins + the node's
    site_node = node.role is NodeRole.SITE
    key = node.site_key() if site_node else None
    service = ClinicalService(
        catalog,
        forms,
        site=node.config.site,
        pseudonymizer=Pseudonymizer(key) if key else None,
        profile=node.profile(),
        seal_key=key.derive(SEAL_PURPOSE) if key else None,
    )
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from biobank.catalog.clinical import (
    ClinicalRecords,
    RecordInput,
    RecordVersion,
    RowRef,
    StoredRecord,
)
from biobank.catalog.concepts import ConceptSeed
from biobank.catalog.data_queries import DataQueries
from biobank.catalog.repository import Catalog
from biobank.clinical.forms import FormRegistry
from biobank.clinical.mapping import map_record
from biobank.clinical.models import (
    IDENTITY_FIELDS,
    Form,
    OmopRef,
    OmopRows,
    Severity,
    ValidationIssue,
    Value,
    VariableType,
)
from biobank.clinical.validate import check_rules, coerce_record, has_errors, record_key
from biobank.deid import Profile, Pseudonymizer
from biobank.errors import InvalidInput, NotFound, PermissionDenied, StorageError

logger = logging.getLogger(__name__)

SEAL_PURPOSE = "clinical-record"
"""The site-key derivation label of the key that seals submitted records."""
NONCE_BYTES = 12
REJECTED = "rejected"
FAILED = "failed"
OUTCOMES = ("created", "updated", "unchanged", REJECTED, FAILED)
"""What can become of a submitted record."""
DEFAULT_BATCH = 500
_PSEUDONYM = re.compile(r"[A-Za-z0-9._:-]{1,50}\Z")


@dataclass(frozen=True)
class RecordResult:
    """What became of one submitted record."""

    index: int
    """Its position in the submission (0-based)."""
    outcome: str
    """``created``, ``updated``, ``unchanged``, ``rejected`` (invalid: see the issues) or
    ``failed`` (valid, but the database failed: nothing of it was stored; retry)."""
    record_id: int | None = None
    version: int | None = None
    patient_pseudonym: str | None = None
    record_key: str | None = None
    """The record's key fields as submitted (dates before shifting), like the issues'."""
    changed_fields: tuple[str, ...] = ()

    @property
    def stored(self) -> bool:
        """Whether the record is in the catalogue (created, updated or unchanged)."""
        return self.outcome not in (REJECTED, FAILED)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "outcome": self.outcome,
            "record_id": self.record_id,
            "version": self.version,
            "patient_pseudonym": self.patient_pseudonym,
            "record_key": self.record_key,
            "changed_fields": list(self.changed_fields),
        }


@dataclass
class ImportReport:
    """The outcome of one import: counts, one result per record, and every issue.

    The issues carry the submitted values: the report goes back to the submitter and is
    never logged.
    """

    import_id: str
    form: str
    results: list[RecordResult] = field(default_factory=list)
    issues: list[ValidationIssue] = field(default_factory=list)
    answered_queries: int = 0
    """Open data queries this import answered by correcting their records."""

    def _count(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def received(self) -> int:
        """How many records were submitted."""
        return len(self.results)

    @property
    def created(self) -> int:
        """How many records were new."""
        return self._count("created")

    @property
    def updated(self) -> int:
        """How many records replaced a stored version (a new version each)."""
        return self._count("updated")

    @property
    def unchanged(self) -> int:
        """How many records were the same as their stored version."""
        return self._count("unchanged")

    @property
    def rejected(self) -> int:
        """How many records were invalid (see :attr:`issues`)."""
        return self._count(REJECTED)

    @property
    def failed(self) -> int:
        """How many valid records could not be stored (a database failure; retry)."""
        return self._count(FAILED)

    @property
    def ok(self) -> bool:
        """Whether every record was stored."""
        return all(result.stored for result in self.results)

    def counts(self) -> dict[str, int]:
        """The counts by outcome, with ``received``."""
        return {"received": self.received} | {name: self._count(name) for name in OUTCOMES}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ids, counts, results and issues."""
        return {
            "import_id": self.import_id,
            "form": self.form,
            **self.counts(),
            "answered_queries": self.answered_queries,
            "results": [result.to_json() for result in self.results],
            "issues": [issue.to_json() for issue in self.issues],
        }


def dicom_identity(issuer: Any, patient_id: Any) -> tuple[str, str]:
    """Normalise (issuer, patient ID) as the de-identifier reads them from a DICOM header.

    The de-identifier takes the first value of IssuerOfPatientID and PatientID (LO, values
    separated by a backslash), without padding (NUL, spaces) or surrounding spaces; a missing
    issuer is ``""``. The same patient then gets the same pseudonym and date offset.
    """

    def first(value: Any) -> str:
        if value is None:
            return ""
        return str(value).rstrip("\x00").split("\\", 1)[0].strip()

    return first(issuer), first(patient_id)


def canonical_json(raw: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a submitted record: sorted keys, UTF-8, no spaces."""
    return json.dumps(
        {str(name): value for name, value in raw.items()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode("utf-8")


def seal(key: bytes, data: bytes, pseudonym: str) -> bytes:
    """AES-GCM under ``key``: 12-byte random nonce, then ciphertext and tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, pseudonym.encode("utf-8"))


def unseal_bytes(key: bytes, sealed: bytes, pseudonym: str) -> bytes:
    """Open :func:`seal`'s output.

    Raises
    ------
    cryptography.exceptions.InvalidTag
        If the key or the pseudonym is not the one it was sealed with, or the data changed.
    """
    return AESGCM(key).decrypt(
        sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], pseudonym.encode("utf-8")
    )


def _shift(values: Mapping[str, Value], form: Form, days: int) -> dict[str, Value]:
    if days == 0:
        return dict(values)
    dates = {v.name for v in form.variables if v.type is VariableType.DATE}
    return {
        name: value + dt.timedelta(days=days)
        if name in dates and isinstance(value, dt.date)
        else value
        for name, value in values.items()
    }


def _rows(omop: OmopRows) -> dict[str, list[dict[str, Any]]]:
    """The mapper's rows in the repository's terms (table names, :class:`RowRef` s)."""
    converted: dict[str, list[dict[str, Any]]] = {}
    for table, rows in omop.rows.items():
        name = str(getattr(table, "value", table))
        converted[name] = [
            {
                column: RowRef(value.name) if isinstance(value, OmopRef) else value
                for column, value in row.items()
            }
            for row in rows
        ]
    return converted


@dataclass
class _Prepared:
    index: int
    record: RecordInput
    shown_key: str | None


class _Others:
    """The same patient's records of other forms: stored, plus earlier in this import."""

    def __init__(self, records: ClinicalRecords) -> None:
        self._records = records
        self._stored: dict[tuple[str, str], dict[str, dict[str, Value]]] = {}
        self._added: dict[tuple[str, str], dict[str, dict[str, Value]]] = {}

    def of(self, form: str, pseudonym: str) -> dict[str, dict[str, Value]]:
        """The patient's records of ``form`` by key: stored, then this import's on top."""
        stored = self._stored.get((form, pseudonym))
        if stored is None:
            stored = {
                record.record_key: record.values
                for record in self._records.stored_records(form, pseudonym)
            }
            self._stored[(form, pseudonym)] = stored
        return stored | self._added.get((form, pseudonym), {})

    def add(self, record: RecordInput) -> None:
        """Note an accepted record of this import (the database is read only when asked)."""
        key = (record.form, record.patient_pseudonym)
        self._added.setdefault(key, {})[record.record_key] = dict(record.values)

    def lookup(self, pseudonym: str, days: int) -> Callable[[str], list[dict[str, Value]]]:
        """``others(form)`` for one patient, dates shifted back by ``days``."""

        def others(form: str) -> list[dict[str, Value]]:
            return [
                {
                    name: value - dt.timedelta(days=days) if isinstance(value, dt.date) else value
                    for name, value in values.items()
                }
                for values in self.of(form, pseudonym).values()
            ]

        return others


class ClinicalService:
    """Clinical record import and provenance on one node (see the module docstring).

    Parameters
    ----------
    catalog
        The node's catalogue.
    forms
        The forms the node knows.
    site
        The node's site name (``node.yaml`` ``site``), stored with every record.
    pseudonymizer
        The site key's transforms on a site node; ``None`` on a central node.
    profile
        The node's de-identification profile (decides whether dates are shifted).
    seed
        The OMOP concept seed (the built-in one by default).
    seal_key
        The 32-byte key sealing submitted records (``site_key.derive(SEAL_PURPOSE)``); ``None``
        keeps only their hash.
    batch_size
        Records per write transaction.
    """

    def __init__(
        self,
        catalog: Catalog,
        forms: FormRegistry,
        *,
        site: str,
        pseudonymizer: Pseudonymizer | None,
        profile: Profile,
        seed: ConceptSeed | None = None,
        seal_key: bytes | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if seal_key is not None and len(seal_key) != 32:
            raise InvalidInput("the seal key must be 32 bytes (site_key.derive(SEAL_PURPOSE))")
        if not 1 <= batch_size <= 1000:
            raise InvalidInput(f"batch_size must be 1..1000, not {batch_size}")
        self.catalog = catalog
        self.records = ClinicalRecords(catalog)
        self.forms = forms
        self.site = site
        self.pseudonymizer = pseudonymizer
        self.profile = profile
        self.seed = seed if seed is not None else ConceptSeed.builtin()
        self._seal_key = seal_key
        self._digest_key = (
            hmac.new(seal_key, b"submitted-record-digest", hashlib.sha256).digest()
            if seal_key is not None
            else None
        )
        self.batch_size = batch_size

    @property
    def is_site(self) -> bool:
        """Whether this node pseudonymises (holds the site key)."""
        return self.pseudonymizer is not None

    # -- import --------------------------------------------------------------------------

    def _digest(self, canonical: bytes) -> str:
        """The record's digest: keyed on a site node (see the module docstring)."""
        if self._digest_key is None:
            return hashlib.sha256(canonical).hexdigest()
        return hmac.new(self._digest_key, canonical, hashlib.sha256).hexdigest()

    def import_records(
        self,
        form: str,
        records: Sequence[Mapping[str, Any]],
        *,
        submitter: str,
        channel: str,
    ) -> ImportReport:
        """Validate and store ``records`` of ``form``; return one result per record.

        Parameters
        ----------
        form
            The form's name.
        records
            The records as submitted (field → value; CSV strings or JSON values).
        submitter
            Who submits (a user name), kept with each version.
        channel
            How (``api``, ``cli``), kept with the import.

        Raises
        ------
        NotFound
            If the form is unknown.
        StorageError
            If the import cannot even be started (the database is unreachable).
        """
        definition = self.forms.get(form)
        import_id = self.records.start_import(definition.name, channel, submitter, self.site)
        report = ImportReport(import_id=import_id, form=definition.name)
        results: dict[int, RecordResult] = {}
        others = _Others(self.records)
        pending: list[_Prepared] = []
        logger.info(
            "clinical import %s of form %s: %d record(s) received through %s",
            import_id,
            definition.name,
            len(records),
            channel,
        )
        for index, raw in enumerate(records):
            prepared, issues = self._prepare(definition, raw, index, others)
            report.issues.extend(issues)
            if prepared is None:
                results[index] = RecordResult(index, REJECTED, record_key=_shown_key(issues))
                continue
            others.add(prepared.record)
            pending.append(prepared)
            if len(pending) >= self.batch_size:
                stored, failures = self._store(pending, submitter, import_id)
                results.update(stored)
                report.issues.extend(failures)
                pending = []
        if pending:
            stored, failures = self._store(pending, submitter, import_id)
            results.update(stored)
            report.issues.extend(failures)
        report.results = [results[index] for index in range(len(records))]
        report.issues.sort(key=lambda issue: issue.record)
        report.answered_queries = self._answer_queries(report, submitter)
        counts = report.counts()
        counts["rejected"] += counts.pop(FAILED)
        problems = [issue.to_json() for issue in report.issues]
        try:
            self.records.finish_import(import_id, counts, problems)
        except StorageError:
            logger.warning("clinical import %s: its counts could not be recorded", import_id)
        logger.info(
            "clinical import %s of form %s: %d created, %d updated, %d unchanged, "
            "%d rejected, %d failed, %d issue(s)",
            import_id,
            definition.name,
            report.created,
            report.updated,
            report.unchanged,
            report.rejected,
            report.failed,
            len(report.issues),
        )
        return report

    def _answer_queries(self, report: ImportReport, submitter: str) -> int:
        """Move the open data queries of every corrected record to answered.

        A record ``updated`` with changed values answers the queries on the fields that
        changed and those on the whole record; a re-send with the same values (other
        formatting) answers nothing. Returns how many queries moved. A failure here is
        logged and leaves the queries open: the records themselves are stored.
        """
        queries = DataQueries(self.catalog)
        moved = 0
        for result in report.results:
            if (
                result.outcome == "updated"
                and result.record_id is not None
                and result.version is not None
                and result.changed_fields
            ):
                try:
                    moved += len(
                        queries.on_record_corrected(
                            result.record_id,
                            result.version,
                            submitter,
                            changed_fields=result.changed_fields,
                        )
                    )
                except StorageError:
                    logger.warning(
                        "clinical import %s: the queries of record %d stay open (storage)",
                        report.import_id,
                        result.record_id,
                    )
        return moved

    def _prepare(
        self, form: Form, raw: Any, index: int, others: _Others
    ) -> tuple[_Prepared | None, list[ValidationIssue]]:
        if not isinstance(raw, Mapping):
            return None, [
                ValidationIssue(
                    record=index,
                    field=None,
                    rule="type",
                    message=f"record {index} is a {type(raw).__name__}, not an object",
                    hint="give each record as an object of variable names to values",
                )
            ]
        values, issues = coerce_record(form, raw, index)
        shown_key = record_key(form, values) if form.key else None
        identity, identity_issues = self._identity(form, values, index, shown_key)
        issues += identity_issues
        invalid = {issue.field for issue in issues if issue.field is not None}
        if identity is None:
            issues += check_rules(form, values, index, invalid=invalid, key=shown_key)
            return None, issues
        pseudonym, days = identity
        issues += check_rules(
            form,
            values,
            index,
            others.lookup(pseudonym, days),
            invalid=invalid,
            key=shown_key,
        )
        if has_errors(issues):
            return None, issues
        typed = {k: v for k, v in values.items() if k not in IDENTITY_FIELDS}
        shifted = _shift(typed, form, days)
        try:
            mapped = map_record(
                form, {**shifted, "patient_pseudonym": pseudonym}, seed=self.seed, site=self.site
            )
            rows = _rows(mapped)
        except InvalidInput as exc:
            issues.append(
                ValidationIssue(
                    record=index,
                    field=None,
                    rule="omop_mapping",
                    message=f"the record cannot be mapped to OMOP: {exc}",
                    hint="correct the record, or ask the node's operator to fix the form",
                    record_key=shown_key,
                )
            )
            return None, issues
        canonical = canonical_json(raw)
        record = RecordInput(
            form=form.name,
            form_version=form.version,
            patient_pseudonym=pseudonym,
            record_key=record_key(form, shifted),
            site=self.site,
            values=shifted,
            raw_digest=self._digest(canonical),
            rows=rows,
            raw_sealed=(
                seal(self._seal_key, canonical, pseudonym) if self._seal_key is not None else None
            ),
            warnings=[
                {"field": i.field, "rule": i.rule, "severity": i.severity.value}
                for i in issues
                if i.severity is Severity.WARNING
            ],
        )
        return _Prepared(index, record, shown_key), issues

    def _identity(
        self, form: Form, values: Mapping[str, Value], index: int, shown_key: str | None
    ) -> tuple[tuple[str, int] | None, list[ValidationIssue]]:
        """The pseudonym and date offset of a record, or the issues why there is none."""

        def issue(name: str, message: str, hint: str, value: Value = None) -> ValidationIssue:
            return ValidationIssue(
                record=index,
                field=name,
                rule="identity",
                message=message,
                hint=hint,
                value=None if value is None else str(value),
                record_key=shown_key,
            )

        if self.pseudonymizer is None:
            refused = [name for name in ("patient_id", "issuer_of_patient_id") if name in values]
            if refused:
                return None, [
                    issue(
                        name,
                        "a central node accepts only pseudonymised records; pseudonymise at "
                        "the site",
                        "import the record on the site node (it replaces patient_id by "
                        "patient_pseudonym and shifts the dates), or send patient_pseudonym "
                        f"instead of {name}",
                    )
                    for name in refused
                ]
            pseudonym = values.get("patient_pseudonym")
            if pseudonym is None:
                return None, []  # coerce_record reported it missing
            if not _PSEUDONYM.match(str(pseudonym)):
                return None, [
                    issue(
                        "patient_pseudonym",
                        "patient_pseudonym is not a pseudonym (1 to 50 letters, digits, "
                        "'.', '_', ':' or '-')",
                        "send the pseudonym the site node gave the patient",
                        pseudonym,
                    )
                ]
            return (str(pseudonym), 0), []
        if "patient_pseudonym" in values:
            return None, [
                issue(
                    "patient_pseudonym",
                    "a site node computes the patient's pseudonym itself; patient_pseudonym "
                    "is not accepted here",
                    "send patient_id (and issuer_of_patient_id if the images carry one) "
                    "instead of patient_pseudonym",
                    values["patient_pseudonym"],
                )
            ]
        if "patient_id" not in values:
            return None, []  # coerce_record reported it missing
        issuer, patient_id = dicom_identity(
            values.get("issuer_of_patient_id"), values.get("patient_id")
        )
        if not patient_id:
            return None, [
                issue(
                    "patient_id",
                    "patient_id is empty once read as DICOM reads it (its first value, "
                    "before any '\\')",
                    "send the PatientID the patient's images carry",
                    values.get("patient_id"),
                )
            ]
        pseudonym = self.pseudonymizer.patient_pseudonym(issuer, patient_id)
        days = 0
        if not self.profile.keeps_full_dates:
            days = self.pseudonymizer.date_offset_days(
                issuer, patient_id, self.profile.date_offset_max_days
            )
        return (pseudonym, days), []

    def _store(
        self, pending: Sequence[_Prepared], submitter: str, import_id: str
    ) -> tuple[dict[int, RecordResult], list[ValidationIssue]]:
        """Store a batch in one transaction; if it fails, each record in its own."""
        try:
            outcomes = self.records.save_records(
                [p.record for p in pending], submitter=submitter, import_id=import_id
            )
        except (StorageError, InvalidInput) as exc:
            if len(pending) == 1:
                logger.warning(
                    "clinical import %s: record %d could not be stored (%s)",
                    import_id,
                    pending[0].index,
                    type(exc).__name__,
                )
                return {pending[0].index: self._failed(pending[0])}, [
                    self._failure(pending[0], exc)
                ]
            logger.warning(
                "clinical import %s: a batch of %d record(s) failed (%s); storing them one by one",
                import_id,
                len(pending),
                type(exc).__name__,
            )
            results: dict[int, RecordResult] = {}
            issues: list[ValidationIssue] = []
            for prepared in pending:
                result, failures = self._store([prepared], submitter, import_id)
                results.update(result)
                issues += failures
            return results, issues
        return {
            prepared.index: RecordResult(
                prepared.index,
                outcome.outcome,
                record_id=outcome.record_id,
                version=outcome.version,
                patient_pseudonym=prepared.record.patient_pseudonym,
                record_key=prepared.shown_key,
                changed_fields=outcome.changed_fields,
            )
            for prepared, outcome in zip(pending, outcomes, strict=True)
        }, []

    @staticmethod
    def _failed(prepared: _Prepared) -> RecordResult:
        return RecordResult(
            prepared.index,
            FAILED,
            patient_pseudonym=prepared.record.patient_pseudonym,
            record_key=prepared.shown_key,
        )

    @staticmethod
    def _failure(prepared: _Prepared, exc: Exception) -> ValidationIssue:
        if isinstance(exc, StorageError):
            message = f"the record is valid but could not be stored: {exc}"
            hint = "import it again; nothing of it was written (the others are stored)"
        else:
            message = f"the record is valid but its OMOP rows could not be stored: {exc}"
            hint = "tell the node's operator: the form's OMOP mapping needs fixing"
        return ValidationIssue(
            record=prepared.index,
            field=None,
            rule="storage",
            message=message,
            hint=hint,
            record_key=prepared.shown_key,
        )

    # -- reading -------------------------------------------------------------------------

    def record(self, record_id: int) -> StoredRecord:
        """The current version of a record (values pseudonymised and dates shifted)."""
        return self.records.get(record_id)

    def history(self, record_id: int) -> list[RecordVersion]:
        """Every version of a record: submitter, time, digest, changed fields."""
        return self.records.history(record_id)

    def unseal(self, record_id: int, version: int | None = None) -> dict[str, Any]:
        """The record as it was submitted (default: its current version). Site nodes only.

        Raises
        ------
        PermissionDenied
            On a node without the seal key (a central node), or if the record was sealed
            under another site key.
        NotFound
            If there is no such record or version, or it was stored without its submitted
            record.
        """
        if self._seal_key is None:
            raise PermissionDenied(
                "this node keeps no submitted clinical records (only their digest): only "
                "the site node that imported a record can show it as submitted"
            )
        pseudonym, sealed = self.records.sealed(record_id, version)
        which = "current version" if version is None else f"version {version}"
        if sealed is None:
            raise NotFound(
                f"the {which} of clinical record {record_id} was stored without its "
                "submitted record (imported without a seal key); see its history()"
            )
        try:
            data = unseal_bytes(self._seal_key, sealed, pseudonym)
        except InvalidTag:
            raise PermissionDenied(
                f"the {which} of clinical record {record_id} was sealed under another site "
                "key (or altered); open it on the site node that imported it"
            ) from None
        result = json.loads(data.decode("utf-8"))
        if not isinstance(result, dict):
            raise NotFound(f"clinical record {record_id}: the sealed record is not an object")
        return result


def _shown_key(issues: Sequence[ValidationIssue]) -> str | None:
    for issue in issues:
        if issue.record_key is not None:
            return issue.record_key
    return None


__all__ = [
    "DEFAULT_BATCH",
    "FAILED",
    "OUTCOMES",
    "REJECTED",
    "SEAL_PURPOSE",
    "ClinicalService",
    "ImportReport",
    "RecordResult",
    "canonical_json",
    "dicom_identity",
    "seal",
    "unseal_bytes",
]
