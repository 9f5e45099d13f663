"""Map one validated clinical record to the OMOP CDM 5.4 rows it stands for.

A form variable with an ``omop:`` target (:class:`~biobank.clinical.models.OmopTarget`) lands
in one OMOP table; a variable without one is not mapped. :func:`map_record` takes the record's
*typed* values — after validation, pseudonymisation (``patient_pseudonym`` replaces the
identity fields) and date shifting — and returns :class:`~biobank.clinical.models.OmopRows`
without ids: the repository gives ids, fills ``person_id``, resolves
:class:`~biobank.clinical.models.OmopRef` and computes ``observation_period`` from all the
person's dates (not emitted here).

Conventions (OHDSI CDM 5.4 and the Oncology working group):

- **Concepts** come from the :class:`~biobank.catalog.concepts.ConceptSeed` by key
  (``"LOINC:2857-1"``); a key the seed does not know maps to ``0`` — never an error — and the
  submitted value is kept as text in ``*_source_value`` (truncated to OMOP's 50 characters).
- **person**: one partial row — ``person_source_value`` = the pseudonym, race and ethnicity
  ``0``, and what the record knows (gender with its source value; year, month and day of
  birth and ``birth_datetime``).
- **condition_occurrence** (the diagnosis): ``condition_concept_id`` from the submitted code's
  concept, else the target's; ``condition_source_value`` = the submitted code. Each diagnosis
  opens a *Disease First Occurrence* episode (``episode_object_concept_id`` = the condition's
  concept) linked to it by ``episode_event``.
- **measurement** / **observation**: the concept of the target (the *what*), the value as
  number (with unit and operator ``=``), as concept (codes, through their code's concept) or
  as text; ``*_source_value`` = ``"<form>.<variable>"`` (the cohort search matches on it) and
  ``value_source_value`` = the submitted value as text. A target with ``event:`` points at the
  row of that variable (a stage or grade at its diagnosis): ``measurement_event_id`` /
  ``observation_event_id`` = :class:`OmopRef` and ``meas_event_field_concept_id`` /
  ``obs_event_field_concept_id`` = the concept of that row's id field (1147127 for
  ``condition_occurrence.condition_occurrence_id``).
- **procedure_occurrence**, **drug_exposure**: the submitted code as source value. A drug, or a
  procedure on a record that yields no specimen (surgery, radiotherapy — a biopsy yields a
  specimen), opens a *Treatment Regimen* episode linked to it.
- **specimen**, **visit_occurrence**, **death** (``death_date``, ``cause_concept_id`` and
  ``cause_source_value``), **episode** (a follow-up disease status: the code's concept, e.g.
  Disease Recurrence; ``episode_object_concept_id`` = the target's concept).
- Every event row's type is *Case Report Form*. Its date is the variable named by the
  target's ``date``, else the variable's own value when it is a date, else the form's
  ``date``; an event without any date is skipped (and logged, without values).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from biobank.catalog.concepts import NO_MATCHING_CONCEPT, ConceptSeed
from biobank.clinical.models import (
    Form,
    OmopRef,
    OmopRows,
    OmopTable,
    OmopTarget,
    Value,
    Variable,
    VariableType,
)
from biobank.errors import InvalidClinicalRecord

logger = logging.getLogger(__name__)

_EVENT_TABLES = (
    OmopTable.CONDITION_OCCURRENCE,
    OmopTable.PROCEDURE_OCCURRENCE,
    OmopTable.DRUG_EXPOSURE,
    OmopTable.SPECIMEN,
    OmopTable.VISIT_OCCURRENCE,
)
"""Tables whose rows say that something happened: "no" or an ``absent`` code writes none."""

SOURCE_VALUE_LENGTH = 50
"""OMOP's ``varchar(50)`` limit of ``*_source_value`` columns."""
VALUE_AS_STRING_LENGTH = 60
"""OMOP's ``varchar(60)`` limit of ``observation.value_as_string``."""

CASE_REPORT_FORM = "Type Concept:Case Report Form"
EQUALS_OPERATOR = "SNOMED:276136004"
DISEASE_FIRST_OCCURRENCE = "Episode:Disease First Occurrence"
TREATMENT_REGIMEN = "Episode:Treatment Regimen"

_ID_FIELDS = {
    OmopTable.CONDITION_OCCURRENCE: "CDM:condition_occurrence.condition_occurrence_id",
    OmopTable.PROCEDURE_OCCURRENCE: "CDM:procedure_occurrence.procedure_occurrence_id",
    OmopTable.DRUG_EXPOSURE: "CDM:drug_exposure.drug_exposure_id",
    OmopTable.MEASUREMENT: "CDM:measurement.measurement_id",
    OmopTable.OBSERVATION: "CDM:observation.observation_id",
}
"""The CDM field concepts of the id columns an episode or a modifier can point at."""

_NAMED_TABLES = frozenset(_ID_FIELDS)
"""Tables whose rows carry ``_name`` (so that others can point at them)."""


def map_record(
    form: Form, values: Mapping[str, Value], *, seed: ConceptSeed, site: str
) -> OmopRows:
    """Map one validated record of ``form`` to OMOP rows.

    Parameters
    ----------
    form
        The record's form.
    values
        Typed values (dates are :class:`datetime.date`, already shifted) with
        ``patient_pseudonym`` in place of the identity fields; absent and ``None`` values are
        not mapped.
    seed
        The concept seed keys are looked up in; unknown keys give concept ``0``.
    site
        The submitting site (named in the log line).

    Returns
    -------
    OmopRows
        The rows, without ids or ``person_id``.

    Raises
    ------
    InvalidClinicalRecord
        When the record carries no ``patient_pseudonym`` (map after pseudonymisation).
    """
    pseudonym = values.get("patient_pseudonym")
    if not isinstance(pseudonym, str) or not pseudonym:
        raise InvalidClinicalRecord(
            f"a record of form {form.name!r} reached the OMOP mapping without a "
            "patient_pseudonym; pseudonymise the record (replace patient_id) before mapping it"
        )
    mapper = _Mapper(form, values, seed)
    mapper.person["person_source_value"] = _truncate(pseudonym)
    for variable in form.variables:
        value = values.get(variable.name)
        if variable.omop is None or value is None:
            continue
        mapper.map_variable(variable, variable.omop, value)
    rows = mapper.finish()
    logger.debug(
        "mapped a %s record of site %s to %d OMOP rows",
        form.name,
        site,
        sum(len(table_rows) for table_rows in rows.rows.values()),
    )
    return rows


@dataclass
class _Mapper:
    form: Form
    values: Mapping[str, Value]
    seed: ConceptSeed
    person: dict[str, Any] = field(default_factory=dict)
    death: dict[str, Any] = field(default_factory=dict)
    rows: OmopRows = field(default_factory=OmopRows)
    named: dict[str, OmopTable] = field(default_factory=dict)
    """Variable name → the table of the row it produced (for ``event:`` references)."""
    pending_events: list[tuple[dict[str, Any], str, str, str]] = field(default_factory=list)
    """(row, event variable, id column, field-concept column) to resolve at the end."""
    treatments: list[tuple[str, OmopTable, int, dt.date]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.person.update({"race_concept_id": 0, "ethnicity_concept_id": 0})
        self.crf = self.seed.concept_id(CASE_REPORT_FORM)

    # -- one variable ---------------------------------------------------------------------

    def map_variable(self, variable: Variable, target: OmopTarget, value: Value) -> None:
        table = target.table
        if table is OmopTable.PERSON:
            self._person(variable, target, value)
        elif table is OmopTable.DEATH:
            self._death(variable, target, value)
        elif table in (OmopTable.OBSERVATION_PERIOD, OmopTable.EPISODE_EVENT):
            return  # computed by the repository / produced by this mapping, not targets
        elif table is OmopTable.EPISODE:
            self._episode(variable, target, value)
        else:
            self._event(variable, target, value)

    def _person(self, variable: Variable, target: OmopTarget, value: Value) -> None:
        if target.column == "gender_concept_id":
            self.person["gender_concept_id"] = self._code_concept(variable, value)
            self.person["gender_source_value"] = _truncate(_as_text(value))
        elif target.column == "year_of_birth" and isinstance(value, dt.date):
            self.person.update(
                {
                    "year_of_birth": value.year,
                    "month_of_birth": value.month,
                    "day_of_birth": value.day,
                    "birth_datetime": dt.datetime(value.year, value.month, value.day),
                }
            )
        elif target.column == "person_source_value":
            return  # the pseudonym is the person's source value; nothing else may replace it

    def _death(self, variable: Variable, target: OmopTarget, value: Value) -> None:
        if target.column == "death_date" and isinstance(value, dt.date):
            self.death["death_date"] = value
        elif target.column == "cause_concept_id":
            self.death["cause_concept_id"] = self._code_concept(variable, value)
            self.death["cause_source_value"] = _truncate(_as_text(value))

    def _episode(self, variable: Variable, target: OmopTarget, value: Value) -> None:
        if variable.type is VariableType.BOOLEAN and value is False:
            return
        if variable.type is VariableType.CODE:
            # a disease status: the code names the episode (e.g. Disease Recurrence) and the
            # target the disease; a status without a concept key is no episode (e.g. stable)
            code = variable.code(str(value))
            if code is None or code.concept is None:
                return
            concept = self.seed.concept_id(code.concept)
            disease = self.seed.concept_id(target.concept)
        else:
            concept, disease = self.seed.concept_id(target.concept), NO_MATCHING_CONCEPT
        date = self._date(variable, target, value)
        if date is None:
            return
        self.rows.add(
            OmopTable.EPISODE,
            {
                "_name": variable.name,
                "episode_concept_id": concept,
                "episode_start_date": date,
                "episode_object_concept_id": disease,
                "episode_type_concept_id": self.crf,
                "episode_source_value": self._source(variable),
            },
        )

    def _event(self, variable: Variable, target: OmopTarget, value: Value) -> None:
        if (
            variable.type is VariableType.BOOLEAN
            and value is False
            and target.table in _EVENT_TABLES
        ):
            return  # "no" to an event means the event did not happen
        if target.table in _EVENT_TABLES and variable.type is VariableType.CODE:
            code = variable.code(str(value))
            if code is not None and code.absent:
                return  # "No surgery": no procedure row
        date = self._date(variable, target, value)
        if date is None:
            logger.warning(
                "%s.%s has no date (no 'date' in its omop target, none in the form): "
                "its %s row is skipped",
                self.form.name,
                variable.name,
                target.table.value,
            )
            return
        builder = {
            OmopTable.CONDITION_OCCURRENCE: self._condition,
            OmopTable.MEASUREMENT: self._measurement,
            OmopTable.OBSERVATION: self._observation,
            OmopTable.PROCEDURE_OCCURRENCE: self._procedure,
            OmopTable.DRUG_EXPOSURE: self._drug,
            OmopTable.SPECIMEN: self._specimen,
            OmopTable.VISIT_OCCURRENCE: self._visit,
        }[target.table]
        row = builder(variable, target, value, date)
        if target.table in _NAMED_TABLES:
            row["_name"] = variable.name
            self.named[variable.name] = target.table
        self.rows.add(target.table, row)

    # -- tables -------------------------------------------------------------------------------

    def _condition(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        concept = self._what(variable, target, value)
        self._episode_for(variable.name, OmopTable.CONDITION_OCCURRENCE, concept, date)
        return {
            "condition_concept_id": concept,
            "condition_start_date": date,
            "condition_type_concept_id": self.crf,
            "condition_source_value": self._submitted_or_source(variable, value),
            "condition_source_concept_id": NO_MATCHING_CONCEPT,
        }

    def _measurement(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        return self._fact(
            "measurement", variable, target, value, date, "meas_event_field_concept_id"
        )

    def _observation(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        return self._fact(
            "observation", variable, target, value, date, "obs_event_field_concept_id"
        )

    def _fact(
        self,
        table: str,
        variable: Variable,
        target: OmopTarget,
        value: Value,
        date: dt.date,
        event_field: str,
    ) -> dict[str, Any]:
        """A ``measurement`` or ``observation`` row: the two tables share their shape."""
        row: dict[str, Any] = {
            f"{table}_concept_id": self.seed.concept_id(target.concept),
            f"{table}_date": date,
            f"{table}_type_concept_id": self.crf,
            f"{table}_source_value": self._source(variable),
            f"{table}_source_concept_id": NO_MATCHING_CONCEPT,
            "value_source_value": _truncate(_as_text(value)),
        }
        row.update(self._value(variable, target, value, as_string=table == "observation"))
        if target.event is not None:
            self.pending_events.append((row, target.event, f"{table}_event_id", event_field))
        return row

    def _procedure(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        concept = self._what(variable, target, value)
        self.treatments.append((variable.name, OmopTable.PROCEDURE_OCCURRENCE, concept, date))
        return {
            "procedure_concept_id": concept,
            "procedure_date": date,
            "procedure_type_concept_id": self.crf,
            "procedure_source_value": self._submitted_or_source(variable, value),
            "procedure_source_concept_id": NO_MATCHING_CONCEPT,
        }

    def _drug(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        concept = self._what(variable, target, value)
        self.treatments.append((variable.name, OmopTable.DRUG_EXPOSURE, concept, date))
        return {
            "drug_concept_id": concept,
            "drug_exposure_start_date": date,
            "drug_exposure_end_date": date,
            "drug_type_concept_id": self.crf,
            "drug_source_value": self._submitted_or_source(variable, value),
            "drug_source_concept_id": NO_MATCHING_CONCEPT,
        }

    def _specimen(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        return {
            "specimen_concept_id": self._what(variable, target, value),
            "specimen_type_concept_id": self.crf,
            "specimen_date": date,
            "specimen_source_value": self._submitted_or_source(variable, value),
        }

    def _visit(
        self, variable: Variable, target: OmopTarget, value: Value, date: dt.date
    ) -> dict[str, Any]:
        return {
            "visit_concept_id": self._what(variable, target, value),
            "visit_start_date": date,
            "visit_end_date": date,
            "visit_type_concept_id": self.crf,
            "visit_source_value": self._submitted_or_source(variable, value),
        }

    # -- episodes and links ---------------------------------------------------------------

    def _episode_for(self, name: str, table: OmopTable, concept: int, date: dt.date) -> None:
        if table is OmopTable.CONDITION_OCCURRENCE:
            kind = DISEASE_FIRST_OCCURRENCE
        else:
            kind = TREATMENT_REGIMEN
        episode_name = f"{name}:episode"
        self.rows.add(
            OmopTable.EPISODE,
            {
                "_name": episode_name,
                "episode_concept_id": self.seed.concept_id(kind),
                "episode_start_date": date,
                "episode_object_concept_id": concept,
                "episode_type_concept_id": self.crf,
                "episode_source_value": _truncate(f"{self.form.name}.{name}"),
            },
        )
        self.rows.add(
            OmopTable.EPISODE_EVENT,
            {
                "episode_id": OmopRef(episode_name),
                "event_id": OmopRef(name),
                "episode_event_field_concept_id": self.seed.concept_id(_ID_FIELDS[table]),
            },
        )

    def finish(self) -> OmopRows:
        diagnostic = bool(self.rows.rows.get(OmopTable.SPECIMEN))  # a biopsy, not a treatment
        for name, table, concept, date in self.treatments:
            if table is OmopTable.DRUG_EXPOSURE or not diagnostic:
                self._episode_for(name, table, concept, date)
        for row, event, id_column, field_column in self.pending_events:
            pointed = self.named.get(event)
            if pointed is None:
                continue  # the event variable produced no row (absent): no dangling link
            row[id_column] = OmopRef(event)
            row[field_column] = self.seed.concept_id(_ID_FIELDS[pointed])
        if self.death.get("death_date") is not None:
            self.death["death_type_concept_id"] = self.crf
            self.rows.add(OmopTable.DEATH, dict(self.death))
        result = OmopRows()
        result.add(OmopTable.PERSON, dict(self.person))
        for table, table_rows in self.rows.rows.items():
            for row in table_rows:
                result.add(table, row)
        return result

    # -- values ---------------------------------------------------------------------------

    def _date(self, variable: Variable, target: OmopTarget, value: Value) -> dt.date | None:
        if target.date is not None:
            named = self.values.get(target.date)
            if isinstance(named, dt.date):
                return named
            # The event's own date is empty where the form allows it (no start date for "no
            # neoadjuvant chemotherapy"): the fact is dated by the record, as OMOP needs.
        if isinstance(value, dt.date):
            return value
        if self.form.date is not None:
            named = self.values.get(self.form.date)
            return named if isinstance(named, dt.date) else None
        return None

    def _code_concept(self, variable: Variable, value: Value) -> int:
        code = variable.code(str(value)) if variable.type is VariableType.CODE else None
        return self.seed.concept_id(code.concept if code is not None else None)

    def _what(self, variable: Variable, target: OmopTarget, value: Value) -> int:
        """The row's concept: the submitted code's concept, else the target's."""
        concept = self._code_concept(variable, value)
        return concept if concept != NO_MATCHING_CONCEPT else self.seed.concept_id(target.concept)

    def _source(self, variable: Variable) -> str:
        return _truncate(f"{self.form.name}.{variable.name}")

    def _submitted_or_source(self, variable: Variable, value: Value) -> str:
        """A code or text as submitted; for a date or yes/no, ``<form>.<variable>``."""
        if variable.type in (VariableType.CODE, VariableType.STRING):
            return _truncate(_as_text(value))
        return self._source(variable)

    def _value(
        self, variable: Variable, target: OmopTarget, value: Value, *, as_string: bool
    ) -> dict[str, Any]:
        if variable.type is VariableType.CODE:
            return {"value_as_concept_id": self._code_concept(variable, value)}
        if isinstance(value, bool):
            return {"value_as_number": 1.0 if value else 0.0}
        if isinstance(value, int | float):
            row: dict[str, Any] = {"value_as_number": float(value)}
            if not as_string:  # observation has no operator column
                row["operator_concept_id"] = self.seed.concept_id(EQUALS_OPERATOR)
            if target.unit is not None or variable.unit is not None:
                row["unit_concept_id"] = self.seed.concept_id(target.unit)
                row["unit_source_value"] = _truncate(variable.unit or _code_of(target.unit))
            return row
        if isinstance(value, dt.date):
            if not as_string:  # measurement has no datetime value: value_source_value has it
                return {}
            return {"value_as_datetime": dt.datetime(value.year, value.month, value.day)}
        if as_string:
            return {"value_as_string": str(value)[:VALUE_AS_STRING_LENGTH]}
        return {}


def _code_of(key: str | None) -> str:
    return "" if key is None else key.partition(":")[2]


def _as_text(value: Value) -> str:
    """A typed value as text: ``true``/``false``, ISO dates, shortest round-trip numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _truncate(text: str) -> str:
    return text[:SOURCE_VALUE_LENGTH]


__all__ = [
    "CASE_REPORT_FORM",
    "DISEASE_FIRST_OCCURRENCE",
    "EQUALS_OPERATOR",
    "SOURCE_VALUE_LENGTH",
    "TREATMENT_REGIMEN",
    "map_record",
]
