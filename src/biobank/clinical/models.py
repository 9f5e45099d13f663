"""The clinical domain's data types: form definitions, validation issues, OMOP row sets.

A :class:`Form` is parsed from YAML (``biobank/clinical/data/forms/*.yaml``, or a file named
by the node). It lists :class:`Variable` s (type, unit, code list, range, required, conditional
rules, where the value goes in OMOP) and cross-field / cross-form :class:`Rule` s.

Every record of every form carries the patient identity: ``patient_id`` with an optional
``issuer_of_patient_id`` on a site node (pseudonymised with the site key, as in imaging), or
``patient_pseudonym`` on a central node (which holds no key). These are the
:data:`IDENTITY_FIELDS`; a form does not declare them.

Validation runs in two phases so that dates can be shifted in between (imaging dates move
by a per-patient offset; clinical dates must move by the same offset to keep their order
relative to the images, and cross-form rules compare against records stored shifted):

1. *coerce*: types, codes, ranges, patterns, required fields → typed values + issues;
2. *rules*: conditional requirements, cross-field and cross-form comparisons on the
   (shifted) typed values → issues.

:class:`ValidationIssue` names the record, the field, the value as submitted, the rule and
what to do. It goes back to the submitter; it is never logged (the value may be PHI).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

IDENTITY_FIELDS = ("patient_id", "issuer_of_patient_id", "patient_pseudonym")
"""Fields every record may carry to name its patient; not declared by forms."""


class VariableType(enum.StrEnum):
    """The type of a form variable's value."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    CODE = "code"


class Operator(enum.StrEnum):
    """How a :class:`Condition` tests a field."""

    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True)
class Condition:
    """A test on one field of the same record (``value`` unused for present/absent)."""

    field: str
    op: Operator
    value: Any = None


@dataclass(frozen=True)
class Code:
    """One allowed value of a code list, with its OMOP concept (0 when unmapped)."""

    value: str
    label: str = ""
    concept: str | None = None
    """Key into the concept seed (e.g. ``"SNOMED:371473000"``), ``None`` if unmapped."""
    absent: bool = False
    """The code says the event did not happen ("No surgery"): a variable mapped to an event
    table (procedure, drug, condition, specimen, visit) then produces no row."""


class OmopTable(enum.StrEnum):
    """The OMOP CDM tables a form variable can land in."""

    PERSON = "person"
    DEATH = "death"
    OBSERVATION_PERIOD = "observation_period"
    VISIT_OCCURRENCE = "visit_occurrence"
    CONDITION_OCCURRENCE = "condition_occurrence"
    PROCEDURE_OCCURRENCE = "procedure_occurrence"
    MEASUREMENT = "measurement"
    OBSERVATION = "observation"
    DRUG_EXPOSURE = "drug_exposure"
    SPECIMEN = "specimen"
    EPISODE = "episode"
    EPISODE_EVENT = "episode_event"
    """Links an episode to its events; produced by the mapping, not a form target."""


@dataclass(frozen=True)
class OmopTarget:
    """Where a variable's value goes in OMOP CDM 5.4.

    - ``person``: ``column`` is ``gender_concept_id`` (a code variable), ``year_of_birth``
      (a date; month and day are filled too) or ``person_source_value``.
    - ``death``: ``column`` is ``death_date`` or ``cause_concept_id``.
    - event tables: one row per record with a value; ``concept`` names the row's concept
      (the *what*, e.g. PSA); the value goes to ``value_as_number`` (numbers), to
      ``value_as_concept_id`` (codes, through their code's concept) or ``value_as_string``;
      ``date`` names the variable holding the event date (else the form's ``date``).
    - ``event``: for measurements that qualify a diagnosis (stage, grade), the name of the
      variable whose condition row they point at (``measurement_event_id`` with
      ``meas_event_field_concept_id`` 1147127, the OHDSI oncology convention).
    """

    table: OmopTable
    concept: str | None = None
    column: str | None = None
    date: str | None = None
    event: str | None = None
    unit: str | None = None
    """Key into the concept seed for ``unit_concept_id`` (e.g. ``"UCUM:ng/mL"``)."""


@dataclass(frozen=True)
class Variable:
    """One field of a form."""

    name: str
    type: VariableType
    label: str = ""
    description: str = ""
    unit: str | None = None
    codes: tuple[Code, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    required: bool = False
    required_when: tuple[Condition, ...] = ()
    """Required when every condition holds (e.g. cause of death when deceased)."""
    allowed_when: tuple[Condition, ...] = ()
    """Must be empty unless every condition holds."""
    omop: OmopTarget | None = None

    def code(self, value: str) -> Code | None:
        """The code list entry for ``value``, or ``None``."""
        for code in self.codes:
            if code.value == value:
                return code
        return None


class Comparison(enum.StrEnum):
    """How a :class:`Rule` compares two values."""

    LT = "<"
    LE = "<="
    EQ = "="
    GE = ">="
    GT = ">"


@dataclass(frozen=True)
class Rule:
    """A cross-field or cross-form check: ``left op right`` when ``when`` holds.

    ``left`` is a variable of this form. ``right`` is a variable of this form or
    ``<form>.<variable>``: the value in the same patient's stored record(s) of that form
    (every record when the form repeats; a missing value skips the rule). Within the form,
    ``right`` may also be a number or a sum of numeric terms (``gleason_primary +
    gleason_secondary``, ``followup_months - 3``); a cross-form reference stands alone.
    """

    name: str
    left: str
    op: Comparison
    right: str
    when: tuple[Condition, ...] = ()
    message: str = ""
    hint: str = ""
    severity: Severity = field(default_factory=lambda: Severity.ERROR)
    """``warning``: a breach is reported but does not reject the record (e.g. an unusual
    but possible combination)."""


@dataclass(frozen=True)
class Form:
    """A clinical form: its variables, its key and its rules."""

    name: str
    version: int
    title: str
    description: str
    variables: tuple[Variable, ...]
    rules: tuple[Rule, ...] = ()
    key: tuple[str, ...] = ()
    """Variables that, with the patient, identify a record of this form (empty: one record per
    patient). A re-upload with the same key updates the record and keeps its history."""
    date: str | None = None
    """The variable that dates the record (events without their own date use it)."""
    source: str = ""
    """Where the definition was read from (for messages)."""

    def variable(self, name: str) -> Variable | None:
        """The variable called ``name``, or ``None``."""
        for variable in self.variables:
            if variable.name == name:
                return variable
        return None


class Severity(enum.StrEnum):
    """An error rejects the record; a warning is stored with it."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class ValidationIssue:
    """One problem of one record, said so that the submitter can fix it."""

    record: int
    """Position of the record in the submission (0-based)."""
    field: str | None
    rule: str
    """What was checked: ``type``, ``required``, ``code``, ``range``, ``pattern``,
    ``required_when``, ``allowed_when``, ``unknown_field`` or a :class:`Rule` name."""
    message: str
    hint: str
    value: str | None = None
    """The value as submitted (returned to the submitter only; never logged)."""
    severity: Severity = Severity.ERROR
    record_key: str | None = None
    """The record's key fields other than the patient, when the form has any."""

    def to_json(self) -> dict[str, Any]:
        """The issue as a JSON object."""
        return {
            "record": self.record,
            "record_key": self.record_key,
            "field": self.field,
            "value": self.value,
            "rule": self.rule,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
        }


Value = str | int | float | bool | dt.date | None
"""A typed value after coercion."""


@dataclass(frozen=True)
class OmopRef:
    """A reference to another row of the same :class:`OmopRows` (resolved on insert)."""

    name: str


@dataclass
class OmopRows:
    """The OMOP rows one record maps to, before ids are given.

    ``rows[table]`` are column → value dicts. ``person_id`` is left out (the repository
    fills it). A row may carry ``"_name"`` (so that other rows can point at it with
    :class:`OmopRef`, e.g. a stage measurement at its diagnosis); a value that is an
    :class:`OmopRef` is replaced by the named row's id. ``person`` holds at most one
    partial person row (columns this record knows: gender, year of birth, ...).
    """

    rows: dict[OmopTable, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: OmopTable, row: dict[str, Any]) -> None:
        """Append ``row`` to ``table``."""
        self.rows.setdefault(table, []).append(row)


__all__ = [
    "IDENTITY_FIELDS",
    "Code",
    "Comparison",
    "Condition",
    "Form",
    "OmopRef",
    "OmopRows",
    "OmopTable",
    "OmopTarget",
    "Operator",
    "Rule",
    "Severity",
    "ValidationIssue",
    "Value",
    "Variable",
    "VariableType",
]
