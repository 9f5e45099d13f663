"""Curation records: each series' label, quality measures and decision, with its history.

A series gets a ``series_curation`` row the first time it is classified or measured; the
*rules* decide (``decision_source="rules"``) until a curator decides — a curator's decision
(``"curator"``) is never overwritten by a later automatic measurement, which is still kept
and shown. Every step is a ``curation_event`` (who, when, what, why): classification, QC,
approve, quarantine, exclude, relabel.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, true, update

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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
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
            self._event(conn, series_id, actor, decision.value, {"comment": comment}, now)

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
        self, decision: Decision = Decision.QUARANTINE, *, limit: int = 100, offset: int = 0
    ) -> list[SeriesCurationRecord]:
        """Series with this decision (the review queue: quarantined ones), oldest first."""
        return self._select(SERIES_CURATION.c.decision == decision.value, limit, offset)

    def every(self, *, limit: int = 1000, offset: int = 0) -> list[SeriesCurationRecord]:
        """Every curated series, oldest decision first."""
        return self._select(true(), limit, offset)

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

    def facets(self) -> dict[str, dict[str, int]]:
        """Counts of series by decision and by label (search facets)."""
        out: dict[str, dict[str, int]] = {}
        with self.catalog._reading("counting curation facets") as conn:
            for name in ("decision", "label"):
                column = SERIES_CURATION.c[name]
                rows = conn.execute(select(column, func.count()).group_by(column))
                out[name] = {str(value): int(n) for value, n in rows if value is not None}
        return out

    # -- helpers -------------------------------------------------------------------------

    def _select(self, condition: Any, limit: int, offset: int) -> list[SeriesCurationRecord]:
        stmt = (
            select(SERIES_CURATION, SERIES.c.series_instance_uid, STUDY.c.study_instance_uid)
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
            order = [Decision.PENDING, Decision.APPROVE, Decision.QUARANTINE, Decision.EXCLUDE]
            if order.index(decision) >= order.index(current):
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
    )


__all__ = [
    "CURATOR",
    "RULES",
    "CurationEventRecord",
    "CurationRecords",
    "Decision",
    "SeriesCurationRecord",
]
