"""The catalogue repository: :class:`Catalog`, the one door to the catalogue database.

Writes run in one transaction each (``BEGIN IMMEDIATE`` on SQLite, so writers queue rather
than fail); reads run in short transactions and return the frozen dataclasses of
:mod:`biobank.catalog.models`, never ORM objects. Database failures surface as
:class:`biobank.errors.StorageError` with the (password-masked) URL, what was being done and
what to do; messages carry UIDs and digests only, never header values.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import uuid
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from biobank.catalog import database
from biobank.catalog.models import (
    PROBLEM_OUTCOMES,
    BatchState,
    BatchSummary,
    BlobReference,
    CatalogStats,
    InstanceSummary,
    ItemInput,
    ItemOutcome,
    ItemResult,
    PatientSummary,
    ProblemItem,
    SeriesSummary,
    StudySummary,
)
from biobank.catalog.queries import (
    instances_query,
    is_exact,
    page,
    patients_query,
    problems_query,
    series_query,
    studies_query,
    to_batch,
    to_instance,
    to_patient,
    to_problem,
    to_series,
    to_study,
)
from biobank.catalog.recording import Recorder, check_items, chunked, join_modalities
from biobank.catalog.schema import (
    INGEST_BATCH,
    INGEST_ITEM,
    INSTANCE,
    PATIENT,
    SERIES,
    STUDY,
)
from biobank.catalog.search import DicomQuery, SearchResult, run_search
from biobank.errors import InvalidInput, NotFound, StorageError

logger = logging.getLogger(__name__)

REFRESH_CHUNK = 256
"""At most this many series are refreshed per transaction by :meth:`Catalog.refresh_series`."""
REFRESH_INSTANCES = 10_000
"""... and about this many instances' headers (a larger series is refreshed alone)."""
ANALYZE_AFTER = 10_000
"""A batch that stored at least this many instances refreshes the planner statistics."""
STREAM_ROWS = 1000
"""Rows fetched at a time when streaming (:meth:`Catalog.blob_references`)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _check_length(name: str, value: str | None, length: int) -> None:
    if value is not None and len(value) > length:
        raise InvalidInput(f"start_batch: {name} is longer than {length} characters; shorten it")


def _json_array(parts: list[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def _instance_order(instance: Any) -> tuple[Any, ...]:
    return (
        instance.instance_number.is_(None),
        instance.instance_number,
        instance.sop_instance_uid,
    )


class Catalog:
    """The catalogue of stored, de-identified instances and of ingest batches.

    Parameters
    ----------
    url
        ``sqlite:///path`` (embedded, the default) or ``postgresql://user@host/db``
        (psycopg 3; ``postgresql+psycopg://`` is accepted too). The constructor does not
        touch the schema; :meth:`open` also migrates it.

    Raises
    ------
    InvalidInput
        If the URL names an unsupported backend.
    """

    def __init__(self, url: str) -> None:
        self._engine = database.create_catalog_engine(url)
        self._url = database.normalise_url(url)
        self._where = f"catalogue {database.safe_url(url)}"

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Open the catalogue at ``url`` and upgrade its schema to the newest revision."""
        catalog = cls(url)
        try:
            catalog.migrate()
        except BaseException:
            catalog.close()
            raise
        return catalog

    @property
    def url(self) -> str:
        """The database URL (the psycopg 3 driver made explicit for PostgreSQL)."""
        return self._url

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"Catalog({database.safe_url(self._url)!r})"

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (idempotent)."""
        database.migrate(self._engine)

    def schema_revision(self) -> str | None:
        """The schema revision of the database (None if never migrated)."""
        return database.current_revision(self._engine)

    def ping(self) -> None:
        """Check that the database answers (one trivial query).

        Raises
        ------
        StorageError
            If it does not.
        """
        with self._reading("checking that the catalogue answers") as conn:
            conn.execute(select(literal(1))).scalar_one()

    def analyze(self) -> None:
        """Refresh the query planner's statistics; worth it after a large ingest.

        PostgreSQL's autovacuum does this eventually; SQLite samples (``analysis_limit``).
        """
        with self._writing("analysing the tables") as conn:
            if self.backend == "sqlite":
                conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------

    def _failed(self, what: str, exc: SQLAlchemyError) -> StorageError:
        return StorageError(
            f"{self._where}: {what} failed ({type(exc).__name__}); check that the database "
            "is reachable and its schema migrated (Catalog.open migrates it), then retry"
        )

    def _write_connection(self) -> Connection:
        return self._engine.connect().execution_options(**{database.WRITE: True})

    @contextmanager
    def _reading(self, what: str) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._failed(what, exc) from exc

    @contextmanager
    def _writing(self, what: str) -> Iterator[Connection]:
        try:
            with self._write_connection() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise self._failed(what, exc) from exc

    # -- ingest batches ------------------------------------------------------------------

    def start_batch(
        self,
        *,
        role: str,
        sources: Sequence[str],
        profile: str | None,
        key_id: str | None,
        pid: int | None = None,
    ) -> str:
        """Record the start of an ingest batch; return its id (32 hex digits).

        ``pid`` defaults to this process's id, so a stale ``running`` batch can be detected.
        """
        _check_length("role", role, 16)
        _check_length("profile", profile, 64)
        _check_length("key_id", key_id, 64)
        if isinstance(sources, str):
            raise InvalidInput("start_batch: sources is a list of strings, not one string")
        batch_id = uuid.uuid4().hex
        row = {
            "id": batch_id,
            "started_at": _now(),
            "finished_at": None,
            "state": BatchState.RUNNING.value,
            "role": role,
            "pid": os.getpid() if pid is None else pid,
            "profile": profile,
            "key_id": key_id,
            "sources": json.dumps([str(source) for source in sources]),
            "expected": None,
        }
        with self._writing("starting an ingest batch") as conn:
            conn.execute(insert(INGEST_BATCH), row)
        return batch_id

    def record_items(self, batch_id: str, items: Sequence[ItemInput]) -> list[ItemResult]:
        """Record a batch's input items; catalogue the new instances (see the module doc).

        One transaction: every item becomes an ``ingest_item`` row and the batch's counters
        grow. A candidate with a new SOP Instance UID is ``STORED`` (patient, study and series
        created as needed; their NULL columns filled, never overwritten); a known one is
        ``DUPLICATE`` (same digest) or ``CONFLICT`` (another digest; nothing overwritten); a
        study under another patient or a series under another study is a ``CONFLICT``. Within
        one call the first of two candidates with the same UID wins. If the transaction
        fails (e.g. a concurrent writer inserted the same rows), it is retried once.

        Returns
        -------
        list[ItemResult]
            One result per item, in input order.

        Raises
        ------
        InvalidInput
            If the items break the contract of :class:`ItemInput`.
        NotFound
            If there is no batch ``batch_id``.
        StorageError
            If the transaction failed twice.
        """
        check_items(items)
        for attempt in (1, 2):
            try:
                with self._write_connection() as conn, conn.begin():
                    return Recorder(conn, batch_id, _now()).record(items)
            except (IntegrityError, OperationalError) as exc:
                if attempt == 2:
                    raise StorageError(
                        f"{self._where}: recording {len(items)} items of ingest batch {batch_id} "
                        f"failed twice ({type(exc).__name__}), nothing of them was recorded; "
                        "check the database and run the ingest again (it is idempotent)"
                    ) from exc
                logger.warning(
                    "catalogue: recording %d items of batch %s failed (%s); retrying once",
                    len(items),
                    batch_id,
                    type(exc).__name__,
                )
            except SQLAlchemyError as exc:
                raise self._failed(f"recording items of ingest batch {batch_id}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def finish_batch(
        self, batch_id: str, *, state: BatchState, expected: int | None = None
    ) -> None:
        """Close a batch as ``COMPLETE`` or ``INTERRUPTED``, with the count it expected.

        After a batch that stored :data:`ANALYZE_AFTER` instances or more, the planner
        statistics are refreshed (:meth:`analyze`), so queries keep their index plans even
        where PostgreSQL's autovacuum is off; a failure there is logged, not raised.
        """
        if state is BatchState.RUNNING:
            raise InvalidInput(
                f"finish_batch({batch_id}): a batch finishes as complete or interrupted"
            )
        values: dict[str, Any] = {"state": state.value, "finished_at": _now()}
        if expected is not None:
            values["expected"] = expected
        self._update_batch(batch_id, values, "finishing")
        if self.batch(batch_id).stored >= ANALYZE_AFTER:
            try:
                self.analyze()
            except StorageError as exc:
                logger.warning("catalogue: refreshing planner statistics failed: %s", exc)

    def set_batch_state(self, batch_id: str, state: BatchState) -> None:
        """Set a batch's state: ``RUNNING`` reopens it, another state closes it."""
        values: dict[str, Any] = {"state": state.value}
        if state is BatchState.RUNNING:
            values["finished_at"] = None
        else:
            finished_at = INGEST_BATCH.c.finished_at
            values["finished_at"] = func.coalesce(finished_at, literal(_now(), finished_at.type))
        self._update_batch(batch_id, values, "changing the state of")

    def _update_batch(self, batch_id: str, values: dict[str, Any], doing: str) -> None:
        stmt = update(INGEST_BATCH).where(INGEST_BATCH.c.id == batch_id).values(values)
        with self._writing(f"{doing} ingest batch {batch_id}") as conn:
            if conn.execute(stmt).rowcount == 0:
                raise NotFound(
                    f"no ingest batch {batch_id} in the catalogue; list them with batches()"
                )

    def _batches(self, conn: Connection, stmt: Any) -> list[BatchSummary]:
        return [
            to_batch(row, tuple(json.loads(row["sources"])))
            for row in conn.execute(stmt).mappings()
        ]

    def running_batches(self) -> list[BatchSummary]:
        """The batches still marked running, oldest first."""
        stmt = (
            select(INGEST_BATCH)
            .where(INGEST_BATCH.c.state == BatchState.RUNNING.value)
            .order_by(INGEST_BATCH.c.started_at, INGEST_BATCH.c.id)
        )
        with self._reading("listing running ingest batches") as conn:
            return self._batches(conn, stmt)

    def batch(self, batch_id: str) -> BatchSummary:
        """The batch ``batch_id``.

        Raises
        ------
        NotFound
            If there is no such batch.
        """
        stmt = select(INGEST_BATCH).where(INGEST_BATCH.c.id == batch_id)
        with self._reading(f"reading ingest batch {batch_id}") as conn:
            found = self._batches(conn, stmt)
        if not found:
            raise NotFound(f"no ingest batch {batch_id} in the catalogue; list them with batches()")
        return found[0]

    def batches(self, *, limit: int = 10) -> list[BatchSummary]:
        """The newest ``limit`` batches, newest first."""
        stmt = page(
            select(INGEST_BATCH).order_by(
                INGEST_BATCH.c.started_at.desc(), INGEST_BATCH.c.id.desc()
            ),
            limit,
            0,
        )
        with self._reading("listing ingest batches") as conn:
            return self._batches(conn, stmt)

    # -- queries -------------------------------------------------------------------------

    def find_patients(
        self, *, patient_pseudonym: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[PatientSummary]:
        """Patients by pseudonym (DICOM wildcards ``*`` ``?`` allowed), in pseudonym order."""
        stmt = page(patients_query(patient_pseudonym), limit, offset)
        with self._reading("finding patients") as conn:
            return [to_patient(row) for row in conn.execute(stmt).mappings()]

    def find_studies(
        self,
        *,
        patient_pseudonym: str | None = None,
        study_instance_uid: str | None = None,
        date_from: datetime.date | None = None,
        date_to: datetime.date | None = None,
        modality: str | None = None,
        accession_number: str | None = None,
        study_description: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[StudySummary]:
        """Studies matching every filter given, by study date (missing last) then UID.

        Text filters (pseudonym, accession number, description) take DICOM wildcards;
        ``date_from``/``date_to`` are inclusive; ``modality`` keeps the studies having a
        series of that modality.
        """
        query = functools.partial(
            studies_query,
            patient_pseudonym=patient_pseudonym,
            study_instance_uid=study_instance_uid,
            date_from=date_from,
            date_to=date_to,
            modality=modality,
            accession_number=accession_number,
            study_description=study_description,
        )
        selective = (
            date_from is not None
            or date_to is not None
            or bool(study_instance_uid)
            or is_exact(patient_pseudonym)
        )
        with self._reading("finding studies") as conn:
            if selective:
                stmt = page(query(), limit, offset)
                return [to_study(row) for row in conn.execute(stmt).mappings()]
            # Dated studies first, in date-index order, then the undated ones (by UID): two
            # index-ordered queries instead of sorting every study.
            dated = query(dated=True)
            rows = list(conn.execute(page(dated, limit, offset)).mappings())
            if len(rows) < limit:
                skip = 0
                if not rows and offset:
                    counted = select(func.count()).select_from(dated.order_by(None).subquery())
                    skip = offset - conn.execute(counted).scalar_one()
                undated = query(dated=False)
                rows += conn.execute(page(undated, limit - len(rows), skip)).mappings()
            return [to_study(row) for row in rows]

    def find_series(
        self,
        *,
        study_instance_uid: str | None = None,
        series_instance_uid: str | None = None,
        modality: str | None = None,
        series_description: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SeriesSummary]:
        """Series matching every filter given, by Series Number (missing last) then UID."""
        stmt = series_query(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            modality=modality,
            series_description=series_description,
        )
        stmt = page(stmt, limit, offset)
        with self._reading("finding series") as conn:
            return [to_series(row) for row in conn.execute(stmt).mappings()]

    def find_instances(
        self,
        *,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
        study_instance_uid: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[InstanceSummary]:
        """Instances matching every filter given, by Instance Number (missing last) then UID.

        Across several series (a study's instances), series come in :meth:`find_series`
        order.
        """
        stmt = instances_query(
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=study_instance_uid,
        )
        stmt = page(stmt, limit, offset)
        with self._reading("finding instances") as conn:
            return [to_instance(row) for row in conn.execute(stmt).mappings()]

    def search(self, query: DicomQuery) -> SearchResult:
        """Run a DICOM query (QIDO-RS, C-FIND): see :mod:`biobank.catalog.search`.

        Raises
        ------
        InvalidQuery
            If a matching value is malformed (a date that is not a date) or paging is out of
            range.
        """
        with self._reading(f"searching {query.level.value.lower()} level") as conn:
            return run_search(conn, query)

    def instance_header(self, sop_instance_uid: str) -> dict[str, Any]:
        """The full header (DICOM JSON) of an instance.

        Raises
        ------
        NotFound
            If the instance is not catalogued.
        """
        stmt = select(INSTANCE.c.header).where(INSTANCE.c.sop_instance_uid == sop_instance_uid)
        with self._reading(f"reading the header of instance {sop_instance_uid}") as conn:
            header = conn.execute(stmt).scalar_one_or_none()
        if header is None:
            raise NotFound(f"no instance {sop_instance_uid} in the catalogue")
        parsed: dict[str, Any] = json.loads(header)
        return parsed

    def series_metadata(self, series_instance_uid: str) -> list[dict[str, Any]]:
        """The headers (DICOM JSON) of a series' instances, in instance order.

        Served from the series' precomputed, compressed metadata; recomputed (and stored) when
        instances were added since it was computed.

        Raises
        ------
        NotFound
            If the series is not catalogued.
        """
        parsed: list[dict[str, Any]] = json.loads(self.series_metadata_json(series_instance_uid))
        return parsed

    def series_metadata_json(self, series_instance_uid: str) -> bytes:
        """:meth:`series_metadata` as UTF-8 JSON text (a DICOM JSON array), ready to send."""
        series = SERIES.c
        stmt = select(
            series.id, series["metadata"], series.metadata_instances, series.number_of_instances
        ).where(series.series_instance_uid == series_instance_uid)
        what = f"reading the metadata of series {series_instance_uid}"
        with self._reading(what) as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no series {series_instance_uid} in the catalogue")
        series_id, packed, covered, expected = row
        if packed is not None and covered == expected:
            return zlib.decompress(packed)
        with self._writing(what) as conn:
            return self._rebuild_metadata(conn, series_id)

    def _rebuild_metadata(self, conn: Connection, series_id: int) -> bytes:
        """Recompute and store one series' metadata; return it (JSON text)."""
        stmt = (
            select(INSTANCE.c.header)
            .where(INSTANCE.c.series_id == series_id)
            .order_by(*_instance_order(INSTANCE.c))
        )
        headers = [header.encode() for header in conn.execute(stmt).scalars()]
        text = _json_array(headers)
        conn.execute(
            update(SERIES)
            .where(SERIES.c.id == series_id)
            .values({"metadata": zlib.compress(text), "metadata_instances": len(headers)})
        )
        return text

    def refresh_series(self, series_instance_uids: Iterable[str]) -> None:
        """Recompute exactly the counters and metadata of series, their studies and patients.

        Instance counts, the series' metadata, the studies' series and instance counts,
        stored bytes and modalities, the patients' study counts. Runs in transactions of at
        most :data:`REFRESH_CHUNK` series and about :data:`REFRESH_INSTANCES` instances.

        Raises
        ------
        NotFound
            If a series is not catalogued (nothing is changed then).
        """
        uids = list(dict.fromkeys(series_instance_uids))
        found: dict[str, tuple[int, int]] = {}
        with self._reading("refreshing series") as conn:
            for chunk in chunked(uids):
                stmt = select(
                    SERIES.c.series_instance_uid, SERIES.c.id, SERIES.c.number_of_instances
                ).where(SERIES.c.series_instance_uid.in_(chunk))
                found.update({uid: (series_id, n) for uid, series_id, n in conn.execute(stmt)})
        missing = [uid for uid in uids if uid not in found]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NotFound(f"refresh_series: {len(missing)} series not in the catalogue: {shown}")
        chunk_ids: list[int] = []
        instances = 0
        for series_id, count in sorted(found.values()):
            if chunk_ids and (
                len(chunk_ids) >= REFRESH_CHUNK or instances + count > REFRESH_INSTANCES
            ):
                with self._writing("refreshing series") as conn:
                    self._refresh(conn, chunk_ids)
                chunk_ids, instances = [], 0
            chunk_ids.append(series_id)
            instances += count
        if chunk_ids:
            with self._writing("refreshing series") as conn:
                self._refresh(conn, chunk_ids)

    def _refresh(self, conn: Connection, series_ids: list[int]) -> None:
        """Recompute series ``series_ids`` and their studies and patients (set-based SQL)."""
        now = _now()
        headers = (
            select(INSTANCE.c.series_id, INSTANCE.c.header)
            .where(INSTANCE.c.series_id.in_(series_ids))
            .order_by(INSTANCE.c.series_id, *_instance_order(INSTANCE.c))
        )
        packed: dict[int, list[bytes]] = {series_id: [] for series_id in series_ids}
        for series_id, header in conn.execute(headers):
            packed[series_id].append(header.encode())
        conn.execute(
            update(SERIES)
            .where(SERIES.c.id == bindparam("p_id"))
            .values(
                {
                    "number_of_instances": bindparam("p_count"),
                    "metadata_instances": bindparam("p_count"),
                    "metadata": bindparam("p_metadata", type_=SERIES.c["metadata"].type),
                    "updated_at": bindparam("p_now", type_=SERIES.c.updated_at.type),
                }
            ),
            [
                {
                    "p_id": series_id,
                    "p_count": len(parts),
                    "p_metadata": zlib.compress(_json_array(parts)),
                    "p_now": now,
                }
                for series_id, parts in packed.items()
            ],
        )
        in_chunk = SERIES.c.id.in_(series_ids)
        study_ids = sorted(set(conn.execute(select(SERIES.c.study_id).where(in_chunk)).scalars()))
        of_studies = SERIES.c.study_id.in_(study_ids)
        studies: dict[int, dict[str, Any]] = {
            study_id: {
                "p_id": study_id,
                "p_series": 0,
                "p_instances": 0,
                "p_bytes": 0,
                "p_modalities": set(),
                "p_now": now,
            }
            for study_id in study_ids
        }
        for study_id, modality in conn.execute(
            select(SERIES.c.study_id, SERIES.c.modality).where(of_studies)
        ):
            studies[study_id]["p_series"] += 1
            if modality:
                studies[study_id]["p_modalities"].add(modality)
        totals = (
            select(
                SERIES.c.study_id, func.count(), func.coalesce(func.sum(INSTANCE.c.blob_size), 0)
            )
            .join_from(INSTANCE, SERIES, INSTANCE.c.series_id == SERIES.c.id)
            .where(of_studies)
            .group_by(SERIES.c.study_id)
        )
        for study_id, count, size in conn.execute(totals):
            studies[study_id]["p_instances"] = count
            studies[study_id]["p_bytes"] = int(size)
        for values in studies.values():
            values["p_modalities"] = join_modalities(values["p_modalities"])
        conn.execute(
            update(STUDY)
            .where(STUDY.c.id == bindparam("p_id"))
            .values(
                number_of_series=bindparam("p_series"),
                number_of_instances=bindparam("p_instances"),
                stored_bytes=bindparam("p_bytes"),
                modalities_in_study=bindparam("p_modalities"),
                updated_at=bindparam("p_now", type_=STUDY.c.updated_at.type),
            ),
            list(studies.values()),
        )
        patient_ids = sorted(
            set(conn.execute(select(STUDY.c.patient_id).where(STUDY.c.id.in_(study_ids))).scalars())
        )
        counts = conn.execute(
            select(STUDY.c.patient_id, func.count())
            .where(STUDY.c.patient_id.in_(patient_ids))
            .group_by(STUDY.c.patient_id)
        )
        conn.execute(
            update(PATIENT)
            .where(PATIENT.c.id == bindparam("p_id"))
            .values(number_of_studies=bindparam("p_studies")),
            [{"p_id": patient_id, "p_studies": count} for patient_id, count in counts],
        )

    # -- problems and totals -------------------------------------------------------------

    def problems(
        self,
        *,
        outcomes: Collection[ItemOutcome] = PROBLEM_OUTCOMES,
        batch_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ProblemItem]:
        """Ingest items with one of ``outcomes`` (of one batch if given), newest first."""
        stmt = page(problems_query([o.value for o in outcomes], batch_id), limit, offset)
        with self._reading("listing ingest problems") as conn:
            return [to_problem(row) for row in conn.execute(stmt).mappings()]

    def stats(self) -> CatalogStats:
        """Totals: patients, studies, series, instances, stored bytes, problems, batches."""
        problem_values = [o.value for o in PROBLEM_OUTCOMES]
        with self._reading("computing catalogue totals") as conn:

            def count(table: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

            instances, stored_bytes = conn.execute(
                select(
                    func.coalesce(func.sum(STUDY.c.number_of_instances), 0),
                    func.coalesce(func.sum(STUDY.c.stored_bytes), 0),
                )
            ).one()
            problems = dict.fromkeys(problem_values, 0)
            grouped = conn.execute(
                select(INGEST_ITEM.c.outcome, func.count())
                .where(INGEST_ITEM.c.outcome.in_(problem_values))
                .group_by(INGEST_ITEM.c.outcome)
            )
            problems.update({outcome: int(n) for outcome, n in grouped})
            return CatalogStats(
                patients=count(PATIENT),
                studies=count(STUDY),
                series=count(SERIES),
                instances=int(instances),
                stored_bytes=int(stored_bytes),
                problems=problems,
                batches=count(INGEST_BATCH),
            )

    def blob_references(self) -> Iterator[BlobReference]:
        """Every blob the catalogue refers to, streamed: instances, then conflict items.

        A conflict's digest is the content that was *not* catalogued but kept for review;
        a digest may appear more than once (e.g. the same conflicting file ingested twice).
        """
        instances = select(INSTANCE.c.blob_digest, INSTANCE.c.sop_instance_uid).order_by(
            INSTANCE.c.id
        )
        conflicts = (
            select(INGEST_ITEM.c.blob_digest, INGEST_ITEM.c.sop_instance_uid)
            .where(
                INGEST_ITEM.c.outcome == ItemOutcome.CONFLICT.value,
                INGEST_ITEM.c.blob_digest.is_not(None),
            )
            .order_by(INGEST_ITEM.c.id)
        )
        with self._reading("listing blob references") as conn:
            streaming = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS)
            for kind, stmt in (("instance", instances), ("conflict", conflicts)):
                for digest, uid in streaming.execute(stmt):
                    yield BlobReference(digest=digest, kind=kind, sop_instance_uid=uid)


__all__ = ["ANALYZE_AFTER", "REFRESH_CHUNK", "REFRESH_INSTANCES", "STREAM_ROWS", "Catalog"]
