"""Curation records: each series' label, quality measures and decision, with its history.

A series gets a ``series_curation`` row the first time it is classified or measured; the
*rules* decide (``decision_source="rules"``) until a curator decides — a curator's decision
(``"curator"``) is never overwritten by a later automatic measurement, which is still kept
and shown. Every step is a ``curation_event`` (who, when, what, why): classification, QC,
cohort judgement, approve, quarantine, exclude, relabel.

Cohort judgements (:meth:`CurationRecords.record_cohort`) are kept in the ``qc`` JSON under
``"cohort"``; their reasons start with ``cohort_`` and replace the previous cohort reasons,
so that re-judging a grown cohort can lift a cohort quarantine that no other rule supports.

A **study**'s state (:func:`study_state_of`) summarises its series' decisions: ``quarantine``
when any series is quarantined, ``approve`` when all are approved, ``exclude`` when all are
excluded, ``pending`` when any is still undecided, else ``mixed`` (some approved, some
excluded: the approved ones are released). :meth:`CurationRecords.decide_study` applies a
curator's decision to every series of a study, each with its own history entry.

Search facets: label, decision, manufacturer and needs-review filter the records
(:class:`CurationFilter`) and are counted (:meth:`CurationRecords.facets`). The manufacturer
is compared normalised (trimmed, upper case, ``UNKNOWN`` when absent), as it is grouped.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, select, true, update
from sqlalchemy.sql.elements import ColumnElement

from biobank.catalog import cohort_series
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import CURATION_EVENT, SERIES, SERIES_CURATION, STUDY
from biobank.errors import InvalidInput, NotFound


class Decision(enum.StrEnum):
    """What is done with a series."""

    PENDING = "pending"
    APPROVE = "approve"
    QUARANTINE = "quarantine"
    EXCLUDE = "exclude"


RULES = "rules"
CURATOR = "curator"
COHORT_REASON = "cohort_"
"""The prefix of the reasons a cohort judgement gives (``cohort_low_snr_dietrich: …``)."""
UNKNOWN_MANUFACTURER = "UNKNOWN"
"""The manufacturer facet of series whose header names none."""

_STRICTNESS = [Decision.PENDING, Decision.APPROVE, Decision.QUARANTINE, Decision.EXCLUDE]


class StudyState(enum.StrEnum):
    """What its series' decisions make of a study (see the module docstring)."""

    PENDING = "pending"
    APPROVE = "approve"
    QUARANTINE = "quarantine"
    EXCLUDE = "exclude"
    MIXED = "mixed"


def study_state_of(decisions: Sequence[Decision]) -> StudyState:
    """The state of a study whose series have ``decisions`` (undecided ones as pending).

    ``quarantine`` if any series is quarantined; ``approve`` if all are approved; ``exclude``
    if all are excluded; ``pending`` if any is pending (or there are none); else ``mixed``.
    """
    found = set(decisions)
    if not found:
        return StudyState.PENDING
    if Decision.QUARANTINE in found:
        return StudyState.QUARANTINE
    if found == {Decision.APPROVE}:
        return StudyState.APPROVE
    if found == {Decision.EXCLUDE}:
        return StudyState.EXCLUDE
    if Decision.PENDING in found:
        return StudyState.PENDING
    return StudyState.MIXED


@dataclass(frozen=True)
class CurationFilter:
    """Facet filters of curation records; ``None`` leaves a facet open.

    ``label`` and ``manufacturer`` are compared case-insensitively (the manufacturer
    trimmed, ``UNKNOWN`` for none); ``study_instance_uid`` limits to one study.
    """

    label: str | None = None
    decision: Decision | None = None
    manufacturer: str | None = None
    needs_review: bool | None = None
    study_instance_uid: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The filters that are set."""
        values = {
            "label": self.label,
            "decision": self.decision.value if self.decision else None,
            "manufacturer": self.manufacturer,
            "needs_review": self.needs_review,
            "study_instance_uid": self.study_instance_uid,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class SeriesCurationRecord:
    """A series' curation state."""

    series_instance_uid: str
    study_instance_uid: str
    label: str | None
    orientation: str | None
    is3d: bool | None
    derived: bool | None
    contrast: bool | None
    confidence: float | None
    needs_review: bool
    classification: dict[str, Any] | None
    qc: dict[str, Any] | None
    conformance: list[dict[str, Any]] | None
    decision: Decision
    decision_source: str
    decision_reasons: list[str]
    decided_by: str | None
    decided_at: datetime.datetime
    modality: str | None = None
    manufacturer: str = UNKNOWN_MANUFACTURER

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "manufacturer": self.manufacturer,
            "label": self.label,
            "orientation": self.orientation,
            "is3d": self.is3d,
            "derived": self.derived,
            "contrast": self.contrast,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "classification": self.classification,
            "qc": self.qc,
            "conformance": self.conformance,
            "decision": self.decision.value,
            "decision_source": self.decision_source,
            "decision_reasons": self.decision_reasons,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class CohortRow:
    """A measured series as its cohort sees it: its group and its metrics.

    ``group_label`` is the curation label for MR series (``MR`` when unlabelled) and the
    modality for the others; ``manufacturer`` is normalised (:data:`UNKNOWN_MANUFACTURER`
    when absent). ``metrics`` holds the finite numbers of the stored QC by name.
    """

    series_instance_uid: str
    group_label: str
    manufacturer: str
    decision: Decision
    decision_source: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class StudyCuration:
    """A study's curation: its state, its series' decisions counted, and the series."""

    study_instance_uid: str
    state: StudyState
    counts: dict[str, int]
    series: list[SeriesCurationRecord]
    uncurated: list[str]
    """Series of the study without a curation record yet (counted as pending)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "state": self.state.value,
            "counts": self.counts,
            "series": [record.to_json() for record in self.series],
            "uncurated": self.uncurated,
        }


@dataclass(frozen=True)
class CurationEventRecord:
    """One step of a series' history."""

    at: datetime.datetime
    actor: str
    action: str
    detail: dict[str, Any]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_CLASSIFICATION_FIELDS = ("label", "orientation", "is3d", "derived", "contrast", "confidence")

MANUFACTURER: ColumnElement[str] = func.coalesce(
    func.nullif(func.upper(func.trim(SERIES.c.manufacturer)), ""), UNKNOWN_MANUFACTURER
)
"""The series' manufacturer as faceted and grouped: trimmed, upper case, or UNKNOWN."""
GROUP_LABEL: ColumnElement[str] = case(
    (SERIES.c.modality == "MR", func.coalesce(SERIES_CURATION.c.label, "MR")),
    else_=func.coalesce(SERIES.c.modality, "?"),
)
"""The label a series is grouped by in its cohort: the MR label, else the modality."""


def _where(where: CurationFilter | None) -> ColumnElement[bool]:
    if where is None:
        return true()
    conditions: list[ColumnElement[bool]] = []
    if where.label is not None:
        conditions.append(func.upper(SERIES_CURATION.c.label) == where.label.strip().upper())
    if where.decision is not None:
        conditions.append(SERIES_CURATION.c.decision == where.decision.value)
    if where.manufacturer is not None:
        wanted = where.manufacturer.strip().upper() or UNKNOWN_MANUFACTURER
        conditions.append(MANUFACTURER.is_not_distinct_from(wanted))
    if where.needs_review is not None:
        conditions.append(SERIES_CURATION.c.needs_review == where.needs_review)
    if where.study_instance_uid is not None:
        conditions.append(STUDY.c.study_instance_uid == where.study_instance_uid)
    return and_(true(), *conditions)


def _metrics_of(qc: str | None) -> dict[str, float]:
    data = json.loads(qc) if qc else {}
    if not isinstance(data, dict):
        return {}
    return {
        name: float(value)
        for name, value in data.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


class CurationRecords:
    """The curation tables of a catalogue (see the module docstring)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- automatic results ---------------------------------------------------------------

    def record_classification(self, series_instance_uid: str, result: dict[str, Any]) -> None:
        """Store a classification (its fields as columns, the whole result as evidence).

        ``label``, ``orientation``, ``is3d``, ``derived``, ``contrast``, ``confidence`` and
        ``needs_review`` become columns (search facets). A series needing review is
        quarantined by the rules unless a curator decided.
        """
        now = _now()
        values = {name: result.get(name) for name in _CLASSIFICATION_FIELDS}
        values["needs_review"] = bool(result.get("needs_review", False))
        values["classification"] = _dumps(result)
        values["classified_at"] = now
        reasons = ["classification needs review: physics and text disagree"]
        decision = Decision.QUARANTINE if values["needs_review"] else None
        with self.catalog._writing(f"recording the label of {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            self._upsert(conn, series_id, values, decision, reasons if decision else [], now)
            self._event(conn, series_id, RULES, "classify", {"label": values["label"]}, now)

    def record_qc(
        self,
        series_instance_uid: str,
        qc: dict[str, Any],
        decision: Decision,
        reasons: Sequence[str],
    ) -> None:
        """Store quality measures and the rules' decision (kept unless a curator decided)."""
        if decision is Decision.PENDING:
            raise InvalidInput("a QC decision is approve, quarantine or exclude")
        now = _now()
        with self.catalog._writing(f"recording the QC of {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            values = {"qc": _dumps(qc), "qc_at": now}
            self._upsert(conn, series_id, values, decision, list(reasons), now)
            detail = {"decision": decision.value, "reasons": list(reasons)}
            self._event(conn, series_id, RULES, "qc", detail, now)

    def record_conformance(
        self,
        series_instance_uid: str,
        findings: list[dict[str, Any]],
        decision: Decision,
        reasons: Sequence[str],
    ) -> None:
        """Store DICOM conformance findings and the rules' decision.

        Findings come from dciodvfy, geometry, slice and duplicate checks; the decision is
        kept unless a curator decided, and the stricter automatic one stands.
        """
        if decision is Decision.PENDING:
            raise InvalidInput("a conformance decision is approve, quarantine or exclude")
        now = _now()
        with self.catalog._writing(f"recording the conformance of {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            values = {"conformance": _dumps(findings), "conformance_at": now}
            self._upsert(conn, series_id, values, decision, list(reasons), now)
            detail = {"decision": decision.value, "findings": len(findings)}
            self._event(conn, series_id, RULES, "conformance", detail, now)

    def record_cohort(
        self,
        series_instance_uid: str,
        judgement: dict[str, Any],
        decision: Decision,
        reasons: Sequence[str],
    ) -> bool:
        """Store a cohort judgement (in the ``qc`` JSON, key ``cohort``) and its decision.

        ``reasons`` must each start with :data:`COHORT_REASON`. They replace the previous
        cohort reasons; the other rules' reasons stay. The automatic decision becomes the
        stricter of ``decision`` and what the other reasons support (a decision whose only
        reasons were cohort ones counts as approve), so a re-judged series leaves the
        quarantine when its cohort no longer flags it. A curator's decision is kept. An
        event ``cohort`` is recorded when the decision or the reasons change.

        Returns
        -------
        bool
            Whether the decision or its reasons changed.
        """
        if decision not in (Decision.APPROVE, Decision.QUARANTINE):
            raise InvalidInput("a cohort decision is approve or quarantine")
        if any(not reason.startswith(COHORT_REASON) for reason in reasons):
            raise InvalidInput(f"cohort reasons start with {COHORT_REASON!r}")
        now = _now()
        with self.catalog._writing(f"recording the cohort of {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            self._ensure(conn, series_id, now)
            row = conn.execute(
                select(SERIES_CURATION).where(SERIES_CURATION.c.series_id == series_id)
            ).one()
            qc = json.loads(row.qc) if row.qc else {}
            qc["cohort"] = judgement
            values: dict[str, Any] = {"qc": _dumps(qc)}
            current = Decision(row.decision)
            old_reasons: list[str] = json.loads(row.decision_reasons or "[]")
            changed = False
            if row.decision_source != CURATOR:
                others = [r for r in old_reasons if not r.startswith(COHORT_REASON)]
                base = current if others or current is Decision.EXCLUDE else Decision.APPROVE
                new = max(base, decision, key=_STRICTNESS.index)
                new_reasons = others + list(reasons)
                changed = new is not current or new_reasons != old_reasons
                if changed:
                    values |= {
                        "decision": new.value,
                        "decision_reasons": _dumps(new_reasons),
                        "decided_by": None,
                        "decided_at": now,
                    }
            conn.execute(
                update(SERIES_CURATION)
                .where(SERIES_CURATION.c.series_id == series_id)
                .values(values)
            )
            cohort_series.refresh_series(conn, [series_id])  # the decision, for cohorts
            if changed:
                detail = {"decision": decision.value, "reasons": list(reasons)}
                self._event(conn, series_id, RULES, "cohort", detail, now)
            return changed

    def cohort_metrics(
        self, label: str | None = None, manufacturer: str | None = None
    ) -> list[CohortRow]:
        """Measured series with their cohort group and metrics, in series order.

        ``label`` (the group label: MR label or modality) and ``manufacturer`` (normalised)
        select one group, compared case-insensitively; ``None`` returns every group.
        """
        stmt = (
            select(
                SERIES.c.series_instance_uid,
                GROUP_LABEL.label("group_label"),
                MANUFACTURER.label("manufacturer"),
                SERIES_CURATION.c.decision,
                SERIES_CURATION.c.decision_source,
                SERIES_CURATION.c.qc,
            )
            .join_from(SERIES_CURATION, SERIES, SERIES_CURATION.c.series_id == SERIES.c.id)
            .where(SERIES_CURATION.c.qc.is_not(None))
            .order_by(SERIES.c.id)
        )
        if label is not None:
            stmt = stmt.where(func.upper(GROUP_LABEL) == label.strip().upper())
        if manufacturer is not None:
            wanted = manufacturer.strip().upper() or UNKNOWN_MANUFACTURER
            stmt = stmt.where(MANUFACTURER.is_not_distinct_from(wanted))
        with self.catalog._reading("reading the cohort's quality measures") as conn:
            return [
                CohortRow(
                    series_instance_uid=row.series_instance_uid,
                    group_label=str(row.group_label),
                    manufacturer=str(row.manufacturer),
                    decision=Decision(row.decision),
                    decision_source=row.decision_source,
                    metrics=_metrics_of(row.qc),
                )
                for row in conn.execute(stmt)
            ]

    # -- curators ------------------------------------------------------------------------

    def decide(
        self, series_instance_uid: str, decision: Decision, *, actor: str, comment: str
    ) -> None:
        """A curator's decision, with the reason: it stands until another curator's."""
        if decision is Decision.PENDING:
            raise InvalidInput("decide approve, quarantine or exclude")
        if not comment.strip():
            raise InvalidInput("say why: a curator's decision needs a comment")
        now = _now()
        with self.catalog._writing(f"deciding on {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            self._ensure(conn, series_id, now)
            conn.execute(
                update(SERIES_CURATION)
                .where(SERIES_CURATION.c.series_id == series_id)
                .values(
                    decision=decision.value,
                    decision_source=CURATOR,
                    decision_reasons=_dumps([comment]),
                    decided_by=actor,
                    decided_at=now,
                    needs_review=False,
                )
            )
            cohort_series.refresh_series(conn, [series_id])  # the decision, for cohorts
            self._event(conn, series_id, actor, decision.value, {"comment": comment}, now)

    def decide_study(
        self, study_instance_uid: str, decision: Decision, *, actor: str, comment: str
    ) -> int:
        """A curator's decision on every series of a study, each with a history entry.

        The entries carry ``{"comment": …, "study": <Study Instance UID>}``. Returns the
        number of series decided.

        Raises
        ------
        NotFound
            If the study is not catalogued.
        InvalidInput
            For ``pending`` or an empty comment.
        """
        if decision is Decision.PENDING:
            raise InvalidInput("decide approve, quarantine or exclude")
        if not comment.strip():
            raise InvalidInput("say why: a curator's decision needs a comment")
        now = _now()
        with self.catalog._writing(f"deciding on study {study_instance_uid}") as conn:
            series_ids = self._study_series(conn, study_instance_uid)
            for series_id in series_ids:
                self._ensure(conn, series_id, now)
                conn.execute(
                    update(SERIES_CURATION)
                    .where(SERIES_CURATION.c.series_id == series_id)
                    .values(
                        decision=decision.value,
                        decision_source=CURATOR,
                        decision_reasons=_dumps([comment]),
                        decided_by=actor,
                        decided_at=now,
                        needs_review=False,
                    )
                )
                detail = {"comment": comment, "study": study_instance_uid}
                self._event(conn, series_id, actor, decision.value, detail, now)
            cohort_series.refresh_series(conn, series_ids)  # the decisions, for cohorts
        return len(series_ids)

    def relabel(self, series_instance_uid: str, label: str, *, actor: str, comment: str) -> None:
        """A curator's label for the series (the classifier's stays in the history)."""
        if not label or len(label) > 16:
            raise InvalidInput(f"label {label!r}: give 1 to 16 characters")
        now = _now()
        with self.catalog._writing(f"relabelling {series_instance_uid}") as conn:
            series_id = self._series_id(conn, series_instance_uid)
            self._ensure(conn, series_id, now)
            old = conn.execute(
                select(SERIES_CURATION.c.label).where(SERIES_CURATION.c.series_id == series_id)
            ).scalar_one()
            conn.execute(
                update(SERIES_CURATION)
                .where(SERIES_CURATION.c.series_id == series_id)
                .values(label=label, needs_review=False)
            )
            cohort_series.refresh_series(conn, [series_id])  # the label, for cohorts
            detail = {"from": old, "to": label, "comment": comment}
            self._event(conn, series_id, actor, "relabel", detail, now)

    # -- reading -------------------------------------------------------------------------

    def get(self, series_instance_uid: str) -> SeriesCurationRecord:
        """A series' curation state (NotFound when never classified, measured or decided)."""
        found = self._select(SERIES.c.series_instance_uid == series_instance_uid, 1, 0)
        if not found:
            raise NotFound(f"series {series_instance_uid} has no curation record yet")
        return found[0]

    def queue(
        self,
        decision: Decision = Decision.QUARANTINE,
        *,
        limit: int = 100,
        offset: int = 0,
        where: CurationFilter | None = None,
    ) -> list[SeriesCurationRecord]:
        """Series with this decision (the review queue: quarantined ones), oldest first.

        ``where`` narrows by the other facets (its ``decision`` is replaced by this one).
        """
        return self.find(replace(where or CurationFilter(), decision=decision), limit, offset)

    def every(self, *, limit: int = 1000, offset: int = 0) -> list[SeriesCurationRecord]:
        """Every curated series, oldest decision first."""
        return self._select(true(), limit, offset)

    def find(
        self, where: CurationFilter | None = None, limit: int = 1000, offset: int = 0
    ) -> list[SeriesCurationRecord]:
        """Curated series matching the facet filters, oldest decision first."""
        return self._select(_where(where), limit, offset)

    def count(self, where: CurationFilter | None = None) -> int:
        """How many curated series match the facet filters."""
        stmt = (
            select(func.count())
            .select_from(SERIES_CURATION)
            .join(SERIES, SERIES_CURATION.c.series_id == SERIES.c.id)
            .join(STUDY, SERIES.c.study_id == STUDY.c.id)
            .where(_where(where))
        )
        with self.catalog._reading("counting curation records") as conn:
            return int(conn.execute(stmt).scalar_one())

    def study_state(self, study_instance_uid: str) -> StudyCuration:
        """A study's state from its series' decisions (see :func:`study_state_of`).

        Raises
        ------
        NotFound
            If the study is not catalogued.
        """
        with self.catalog._reading(f"reading study {study_instance_uid}") as conn:
            series_ids = self._study_series(conn, study_instance_uid)
            uncurated = conn.execute(
                select(SERIES.c.series_instance_uid)
                .where(SERIES.c.id.in_(series_ids))
                .where(SERIES.c.id.not_in(select(SERIES_CURATION.c.series_id).scalar_subquery()))
                .order_by(SERIES.c.id)
            ).scalars()
            missing = [str(uid) for uid in uncurated]
        records = self._select(
            STUDY.c.study_instance_uid == study_instance_uid, len(series_ids) + 1, 0
        )
        decisions = [record.decision for record in records] + [Decision.PENDING] * len(missing)
        counts = {d.value: 0 for d in Decision}
        for found in decisions:
            counts[found.value] += 1
        return StudyCuration(
            study_instance_uid=study_instance_uid,
            state=study_state_of(decisions),
            counts=counts,
            series=records,
            uncurated=missing,
        )

    def history(self, series_instance_uid: str) -> list[CurationEventRecord]:
        """Every step of a series' curation, oldest first."""
        stmt = (
            select(CURATION_EVENT)
            .join_from(CURATION_EVENT, SERIES, CURATION_EVENT.c.series_id == SERIES.c.id)
            .where(SERIES.c.series_instance_uid == series_instance_uid)
            .order_by(CURATION_EVENT.c.id)
        )
        with self.catalog._reading(f"reading the history of {series_instance_uid}") as conn:
            return [
                CurationEventRecord(row.at, row.actor, row.action, json.loads(row.detail))
                for row in conn.execute(stmt)
            ]

    def facets(self, where: CurationFilter | None = None) -> dict[str, dict[str, int]]:
        """Counts of series by decision, label and manufacturer (search facets).

        ``where`` counts only the matching series (drill-down). Unlabelled series are not
        counted under ``label``.
        """
        out: dict[str, dict[str, int]] = {}
        columns: dict[str, ColumnElement[Any]] = {
            "decision": SERIES_CURATION.c.decision,
            "label": SERIES_CURATION.c.label,
            "manufacturer": MANUFACTURER,
        }
        with self.catalog._reading("counting curation facets") as conn:
            for name, column in columns.items():
                stmt = (
                    select(column.label("value"), func.count())
                    .select_from(SERIES_CURATION)
                    .join(SERIES, SERIES_CURATION.c.series_id == SERIES.c.id)
                    .join(STUDY, SERIES.c.study_id == STUDY.c.id)
                    .where(_where(where))
                    .group_by(column)
                )
                rows = conn.execute(stmt)
                out[name] = {str(value): int(n) for value, n in rows if value is not None}
        return out

    # -- helpers -------------------------------------------------------------------------

    def _select(self, condition: Any, limit: int, offset: int) -> list[SeriesCurationRecord]:
        stmt = (
            select(
                SERIES_CURATION,
                SERIES.c.series_instance_uid,
                SERIES.c.modality,
                MANUFACTURER.label("manufacturer"),
                STUDY.c.study_instance_uid,
            )
            .join_from(SERIES_CURATION, SERIES, SERIES_CURATION.c.series_id == SERIES.c.id)
            .join_from(SERIES, STUDY, SERIES.c.study_id == STUDY.c.id)
            .where(condition)
            .order_by(SERIES_CURATION.c.decided_at, SERIES_CURATION.c.series_id)
            .limit(limit)
            .offset(offset)
        )
        with self.catalog._reading("reading curation records") as conn:
            return [_record(row) for row in conn.execute(stmt).mappings()]

    @staticmethod
    def _series_id(conn: Connection, series_instance_uid: str) -> int:
        found = conn.execute(
            select(SERIES.c.id).where(SERIES.c.series_instance_uid == series_instance_uid)
        ).scalar_one_or_none()
        if found is None:
            raise NotFound(f"no series {series_instance_uid} in the catalogue")
        return int(found)

    @staticmethod
    def _study_series(conn: Connection, study_instance_uid: str) -> list[int]:
        study_id = conn.execute(
            select(STUDY.c.id).where(STUDY.c.study_instance_uid == study_instance_uid)
        ).scalar_one_or_none()
        if study_id is None:
            raise NotFound(f"no study {study_instance_uid} in the catalogue")
        return [
            int(found)
            for found in conn.execute(
                select(SERIES.c.id).where(SERIES.c.study_id == study_id).order_by(SERIES.c.id)
            ).scalars()
        ]

    @staticmethod
    def _ensure(conn: Connection, series_id: int, now: datetime.datetime) -> None:
        exists = conn.execute(
            select(SERIES_CURATION.c.series_id).where(SERIES_CURATION.c.series_id == series_id)
        ).first()
        if exists is None:
            conn.execute(
                insert(SERIES_CURATION).values(
                    series_id=series_id,
                    decision=Decision.PENDING.value,
                    decision_source=RULES,
                    decision_reasons="[]",
                    decided_at=now,
                )
            )

    def _upsert(
        self,
        conn: Connection,
        series_id: int,
        values: dict[str, Any],
        decision: Decision | None,
        reasons: list[str],
        now: datetime.datetime,
    ) -> None:
        self._ensure(conn, series_id, now)
        source = conn.execute(
            select(SERIES_CURATION.c.decision_source, SERIES_CURATION.c.decision).where(
                SERIES_CURATION.c.series_id == series_id
            )
        ).one()
        if decision is not None and source.decision_source != CURATOR:
            current = Decision(source.decision)
            # The stricter automatic decision stands (exclude > quarantine > approve): a series
            # quarantined by one measure waits for a curator even if another measure is fine.
            if _STRICTNESS.index(decision) >= _STRICTNESS.index(current):
                values |= {
                    "decision": decision.value,
                    "decision_source": RULES,
                    "decision_reasons": _dumps(reasons),
                    "decided_by": None,
                    "decided_at": now,
                }
        conn.execute(
            update(SERIES_CURATION).where(SERIES_CURATION.c.series_id == series_id).values(values)
        )
        # Label, orientation, 3D, contrast, decision: what cohort criteria read.
        cohort_series.refresh_series(conn, [series_id])

    @staticmethod
    def _event(
        conn: Connection,
        series_id: int,
        actor: str,
        action: str,
        detail: dict[str, Any],
        now: datetime.datetime,
    ) -> None:
        conn.execute(
            insert(CURATION_EVENT).values(
                series_id=series_id, at=now, actor=actor[:64], action=action, detail=_dumps(detail)
            )
        )


def _record(row: Any) -> SeriesCurationRecord:
    def parsed(name: str) -> Any:
        value = row[name]
        return json.loads(value) if value else None

    return SeriesCurationRecord(
        series_instance_uid=row["series_instance_uid"],
        study_instance_uid=row["study_instance_uid"],
        label=row["label"],
        orientation=row["orientation"],
        is3d=row["is3d"],
        derived=row["derived"],
        contrast=row["contrast"],
        confidence=row["confidence"],
        needs_review=bool(row["needs_review"]),
        classification=parsed("classification"),
        qc=parsed("qc"),
        conformance=parsed("conformance"),
        decision=Decision(row["decision"]),
        decision_source=row["decision_source"],
        decision_reasons=parsed("decision_reasons") or [],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        modality=row["modality"],
        manufacturer=row["manufacturer"],
    )


__all__ = [
    "COHORT_REASON",
    "CURATOR",
    "GROUP_LABEL",
    "MANUFACTURER",
    "RULES",
    "UNKNOWN_MANUFACTURER",
    "CohortRow",
    "CurationEventRecord",
    "CurationFilter",
    "CurationRecords",
    "Decision",
    "SeriesCurationRecord",
    "StudyCuration",
    "StudyState",
    "study_state_of",
]
