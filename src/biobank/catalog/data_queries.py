"""Data queries: a curator's question about a clinical record, and its answer.

Curating clinical data means asking the site that sent it: "PSA 4,100 ng/mL on 12 March —
a typo?". A **data query** names a record and one of its form's fields (or the whole
record, ``field=None``); the data provider answers it in words or corrects the record by
uploading it again; the curator closes it, or reopens it if the answer does not settle it.
Queries are listed per site (the site that sent the record), by state and by form.

State machine::

    open ──answer / corrected record──► answered ──close──► closed
      │                                    ▲                  │
      └────────────────close───────────────┼──────────────────┤
                                           │     reopen       │
    open ◄─────────────────────────────────┴──────────────────┘

- ``answer`` (text, by the data provider): open or answered → answered.
- ``correct`` (a re-upload of the record with a new version, reported by the import
  service through :meth:`DataQueries.on_record_corrected`): open or answered → answered,
  the event carrying the new record version.
- ``close`` (by the curator, with an optional comment): open or answered → closed.
- ``reopen`` (by the curator, with a reason): closed → open.

Answering or closing a closed query, or reopening one that is not closed, is a
:class:`~biobank.errors.Conflict` that says what to do instead. Every step is a
``data_query_event`` row (action, actor, time, text, the record's version at that moment):
the query's history.

Which fields a query may name is the form's business, which the catalogue does not know:
:class:`DataQueries` takes a ``variables(form) -> names`` function (the clinical service
passes its form registry's); without one, any field the record holds is accepted. Message
and answer texts are free text for the people involved: they are stored, returned to
authorised callers, and never logged.
"""

from __future__ import annotations

import builtins
import datetime
import enum
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from biobank.catalog.omop import CLINICAL_RECORD, DATA_QUERY, DATA_QUERY_EVENT
from biobank.catalog.repository import Catalog
from biobank.errors import Conflict, InvalidInput, NotFound

MAX_TEXT = 4000
"""The longest message, answer or comment (characters)."""


class QueryState(enum.StrEnum):
    """Where a data query stands."""

    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class QueryAction(enum.StrEnum):
    """A step of a data query's history."""

    RAISE = "raise"
    ANSWER = "answer"
    CORRECT = "correct"
    CLOSE = "close"
    REOPEN = "reopen"


@dataclass(frozen=True)
class QueryEvent:
    """One step of a query's history."""

    at: datetime.datetime
    actor: str
    action: QueryAction
    text: str | None
    record_version: int | None

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object."""
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action.value,
            "text": self.text,
            "record_version": self.record_version,
        }


@dataclass(frozen=True)
class DataQuery:
    """A data query with its record's identity (and its history when read one by one)."""

    id: int
    record_id: int
    form: str
    patient_pseudonym: str
    record_key: str
    field: str | None
    site: str
    state: QueryState
    raised_by: str
    message: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    record_version: int
    """The record's current version."""
    history: tuple[QueryEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The query as a JSON object (``history`` only when it was read)."""
        out: dict[str, Any] = {
            "id": self.id,
            "record_id": self.record_id,
            "form": self.form,
            "patient_pseudonym": self.patient_pseudonym,
            "record_key": self.record_key,
            "field": self.field,
            "site": self.site,
            "state": self.state.value,
            "raised_by": self.raised_by,
            "message": self.message,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "updated_at": self.updated_at.isoformat(timespec="seconds"),
            "record_version": self.record_version,
        }
        if self.history:
            out["history"] = [event.to_json() for event in self.history]
        return out


Variables = Callable[[str], Collection[str]]
"""``variables(form)``: the names a query on a record of that form may name."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _text(value: str | None, what: str, *, required: bool) -> str | None:
    text = value.strip() if value is not None else ""
    if not text:
        if required:
            raise InvalidInput(f"the {what} is empty: say what it is about")
        return None
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"the {what} has {len(text)} characters; keep it under {MAX_TEXT}")
    return text


def _actor(actor: str) -> str:
    name = actor.strip()
    if not name:
        raise InvalidInput("say who acts: the actor (a user name) is empty")
    return name[:128]


_COLUMNS = (
    DATA_QUERY,
    CLINICAL_RECORD.c.form,
    CLINICAL_RECORD.c.patient_pseudonym,
    CLINICAL_RECORD.c.record_key,
    CLINICAL_RECORD.c.version.label("record_version"),
)


def _query(row: Any, history: tuple[QueryEvent, ...] = ()) -> DataQuery:
    return DataQuery(
        id=int(row.id),
        record_id=int(row.record_id),
        form=row.form,
        patient_pseudonym=row.patient_pseudonym,
        record_key=row.record_key,
        field=row.field,
        site=row.site,
        state=QueryState(row.state),
        raised_by=row.raised_by,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        record_version=int(row.record_version),
        history=history,
    )


def _event(
    conn: Connection,
    query_id: int,
    actor: str,
    action: QueryAction,
    text: str | None,
    version: int | None,
    now: datetime.datetime,
) -> None:
    conn.execute(
        insert(DATA_QUERY_EVENT).values(
            query_id=query_id,
            at=now,
            actor=actor,
            action=action.value,
            text=text,
            record_version=version,
        )
    )


def mark_corrected(
    conn: Connection,
    record_id: int,
    version: int,
    actor: str,
    *,
    changed_fields: Collection[str] | None = None,
    now: datetime.datetime | None = None,
) -> list[int]:
    """Inside a transaction: the record's open and answered queries become answered.

    Each gets a ``correct`` event with the record's new ``version``. With
    ``changed_fields``, only queries on one of those fields or on the whole record are
    touched (a corrected PSA does not answer a question about the Gleason score). Returns
    the ids of the queries touched.
    """
    now = now or _now()
    actor = _actor(actor)
    stmt = (
        select(DATA_QUERY.c.id, DATA_QUERY.c.field)
        .where(DATA_QUERY.c.record_id == record_id)
        .where(DATA_QUERY.c.state != QueryState.CLOSED.value)
        .order_by(DATA_QUERY.c.id)
        .with_for_update()
    )
    touched = [
        int(row.id)
        for row in conn.execute(stmt)
        if changed_fields is None or row.field is None or row.field in changed_fields
    ]
    if not touched:
        return []
    conn.execute(
        update(DATA_QUERY)
        .where(DATA_QUERY.c.id.in_(touched))
        .values(state=QueryState.ANSWERED.value, updated_at=now)
    )
    for query_id in touched:
        _event(conn, query_id, actor, QueryAction.CORRECT, None, version, now)
    return touched


class DataQueries:
    """The data queries of a catalogue (see the module docstring)."""

    def __init__(self, catalog: Catalog, *, variables: Variables | None = None) -> None:
        self.catalog = catalog
        self.variables = variables

    # -- steps ---------------------------------------------------------------------------

    def raise_query(self, record_id: int, field: str | None, message: str, actor: str) -> DataQuery:
        """Ask about ``field`` of a record (``None``: the whole record); the new open query.

        Raises
        ------
        NotFound
            If there is no such record.
        InvalidInput
            If ``field`` is not a variable of the record's form, or the message is empty.
        """
        text = _text(message, "message", required=True) or ""
        actor = _actor(actor)
        field = field.strip() if field is not None and field.strip() else None
        now = _now()
        with self.catalog._writing(f"raising a query on clinical record {record_id}") as conn:
            record = conn.execute(
                select(
                    CLINICAL_RECORD.c.form,
                    CLINICAL_RECORD.c.site,
                    CLINICAL_RECORD.c.version,
                    CLINICAL_RECORD.c.record_values,
                ).where(CLINICAL_RECORD.c.id == record_id)
            ).one_or_none()
            if record is None:
                raise NotFound(
                    f"no clinical record {record_id}; list them with "
                    "'biobank clinical records' or GET /api/v1/clinical/records"
                )
            if field is not None:
                self._check_field(record.form, field, record.record_values)
            query_id = conn.execute(
                insert(DATA_QUERY)
                .values(
                    record_id=record_id,
                    field=field,
                    site=record.site,
                    state=QueryState.OPEN.value,
                    raised_by=actor,
                    message=text,
                    created_at=now,
                    updated_at=now,
                )
                .returning(DATA_QUERY.c.id)
            ).scalar_one()
            _event(conn, int(query_id), actor, QueryAction.RAISE, text, record.version, now)
        return self.get(int(query_id))

    def answer(self, query_id: int, text: str, actor: str) -> DataQuery:
        """The data provider's answer: open or answered → answered.

        Raises
        ------
        Conflict
            If the query is closed (reopen it first).
        """
        answer = _text(text, "answer", required=True)
        return self._step(
            query_id,
            actor,
            QueryAction.ANSWER,
            answer,
            allowed=(QueryState.OPEN, QueryState.ANSWERED),
            to=QueryState.ANSWERED,
            refusal="query {id} is closed: it takes no answer; a curator may reopen it "
            "('biobank clinical query reopen {id}') if the matter is not settled",
        )

    def close(self, query_id: int, actor: str, text: str | None = None) -> DataQuery:
        """The curator settles the query (open or answered → closed), with a comment or not.

        Raises
        ------
        Conflict
            If the query is already closed.
        """
        comment = _text(text, "comment", required=False)
        return self._step(
            query_id,
            actor,
            QueryAction.CLOSE,
            comment,
            allowed=(QueryState.OPEN, QueryState.ANSWERED),
            to=QueryState.CLOSED,
            refusal="query {id} is already closed; reopen it to ask again",
        )

    def reopen(self, query_id: int, actor: str, text: str) -> DataQuery:
        """The curator asks again about a closed query (closed → open); say why.

        Raises
        ------
        Conflict
            If the query is not closed.
        """
        reason = _text(text, "reason for reopening", required=True)
        return self._step(
            query_id,
            actor,
            QueryAction.REOPEN,
            reason,
            allowed=(QueryState.CLOSED,),
            to=QueryState.OPEN,
            refusal="query {id} is {state}, not closed: only a closed query can be reopened",
        )

    def on_record_corrected(
        self,
        record_id: int,
        version: int,
        actor: str,
        *,
        changed_fields: Collection[str] | None = None,
    ) -> list[int]:
        """A corrected record was stored: its open queries become answered.

        Call it after a re-upload stored a new ``version`` of the record (see
        :func:`mark_corrected`, which does the same inside a caller's transaction). Returns
        the ids of the queries moved.
        """
        with self.catalog._writing(f"marking the queries of record {record_id}") as conn:
            return mark_corrected(conn, record_id, version, actor, changed_fields=changed_fields)

    # -- reading -------------------------------------------------------------------------

    def get(self, query_id: int) -> DataQuery:
        """A query with its history, oldest step first.

        Raises
        ------
        NotFound
            If there is no such query.
        """
        stmt = (
            select(*_COLUMNS)
            .join_from(DATA_QUERY, CLINICAL_RECORD, DATA_QUERY.c.record_id == CLINICAL_RECORD.c.id)
            .where(DATA_QUERY.c.id == query_id)
        )
        events = (
            select(DATA_QUERY_EVENT)
            .where(DATA_QUERY_EVENT.c.query_id == query_id)
            .order_by(DATA_QUERY_EVENT.c.id)
        )
        with self.catalog._reading(f"reading data query {query_id}") as conn:
            row = conn.execute(stmt).one_or_none()
            if row is None:
                raise NotFound(
                    f"no data query {query_id}; list them with 'biobank clinical queries'"
                )
            history = tuple(
                QueryEvent(e.at, e.actor, QueryAction(e.action), e.text, e.record_version)
                for e in conn.execute(events)
            )
        return _query(row, history)

    def list(
        self,
        *,
        site: str | None = None,
        state: QueryState | None = None,
        form: str | None = None,
        record_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[DataQuery]:
        """Queries matching the filters (``None`` leaves one open), oldest first, paged."""
        stmt = (
            select(*_COLUMNS)
            .join_from(DATA_QUERY, CLINICAL_RECORD, DATA_QUERY.c.record_id == CLINICAL_RECORD.c.id)
            .where(*self._filters(site, state, form, record_id))
            .order_by(DATA_QUERY.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.catalog._reading("listing data queries") as conn:
            return [_query(row) for row in conn.execute(stmt)]

    def counts(
        self, *, site: str | None = None, form: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Queries counted per site and state: ``{"site-a": {"open": 2, "answered": 0, …}}``."""
        stmt = (
            select(DATA_QUERY.c.site, DATA_QUERY.c.state, func.count())
            .join_from(DATA_QUERY, CLINICAL_RECORD, DATA_QUERY.c.record_id == CLINICAL_RECORD.c.id)
            .where(*self._filters(site, None, form, None))
            .group_by(DATA_QUERY.c.site, DATA_QUERY.c.state)
        )
        out: dict[str, dict[str, int]] = {}
        with self.catalog._reading("counting data queries") as conn:
            for found_site, found_state, n in conn.execute(stmt):
                states = out.setdefault(found_site, {s.value: 0 for s in QueryState})
                states[found_state] = int(n)
        return dict(sorted(out.items()))

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _filters(
        site: str | None, state: QueryState | None, form: str | None, record_id: int | None
    ) -> builtins.list[Any]:
        where: builtins.list[Any] = []
        if site is not None:
            where.append(DATA_QUERY.c.site == site)
        if state is not None:
            where.append(DATA_QUERY.c.state == QueryState(state).value)
        if form is not None:
            where.append(CLINICAL_RECORD.c.form == form)
        if record_id is not None:
            where.append(DATA_QUERY.c.record_id == record_id)
        return where

    def _check_field(self, form: str, field: str, record_values: str) -> None:
        if self.variables is not None:
            known = set(self.variables(form))
        else:
            known = set(json.loads(record_values or "{}"))
        if field not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise InvalidInput(
                f"{field!r} is not a variable of form {form}; name one of {listed}, or none "
                "for a question about the whole record"
            )

    def _step(
        self,
        query_id: int,
        actor: str,
        action: QueryAction,
        text: str | None,
        *,
        allowed: tuple[QueryState, ...],
        to: QueryState,
        refusal: str,
    ) -> DataQuery:
        actor = _actor(actor)
        now = _now()
        with self.catalog._writing(f"updating data query {query_id}") as conn:
            row = conn.execute(
                select(DATA_QUERY.c.state, CLINICAL_RECORD.c.version)
                .join_from(
                    DATA_QUERY, CLINICAL_RECORD, DATA_QUERY.c.record_id == CLINICAL_RECORD.c.id
                )
                .where(DATA_QUERY.c.id == query_id)
                .with_for_update(of=DATA_QUERY)
            ).one_or_none()
            if row is None:
                raise NotFound(
                    f"no data query {query_id}; list them with 'biobank clinical queries'"
                )
            state = QueryState(row.state)
            if state not in allowed:
                raise Conflict(refusal.format(id=query_id, state=state.value))
            conn.execute(
                update(DATA_QUERY)
                .where(DATA_QUERY.c.id == query_id)
                .values(state=to.value, updated_at=now)
            )
            _event(conn, query_id, actor, action, text, row.version, now)
        return self.get(query_id)


__all__ = [
    "MAX_TEXT",
    "DataQueries",
    "DataQuery",
    "QueryAction",
    "QueryEvent",
    "QueryState",
    "Variables",
    "mark_corrected",
]
