"""The cohort query model: an OR of ANDs of ORs of conditions, as Samply Lens builds it.

:class:`Operation` s of :class:`Criterion` s (``field op values``), what each field reads
(:class:`Entity`), the strata counts can be grouped by, and the counts. Declared in the
catalogue because :mod:`biobank.catalog.cohort` compiles them; ``biobank.datasets.cohort``
parses the query languages (Lens AST, Beacon v2) into them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Op(enum.StrEnum):
    """A condition type of the Lens AST (``samply/focus`` ``ConditionType``)."""

    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"
    IN = "IN"
    BETWEEN = "BETWEEN"
    LOWER_THAN = "LOWER_THAN"
    GREATER_THAN = "GREATER_THAN"
    CONTAINS = "CONTAINS"


class Operand(enum.StrEnum):
    """How the children of an :class:`Operation` combine."""

    AND = "AND"
    OR = "OR"


class Entity(enum.StrEnum):
    """The row a criterion reads (see the module docstring)."""

    PERSON = "person"
    CONDITION = "condition"
    SERIES = "series"
    VARIABLE = "variable"


class Field(enum.StrEnum):
    """What a criterion compares; values are already normalised by the parser."""

    GENDER = "gender"
    """Values: OMOP gender concept ids (8507 male, 8532 female, 0 unknown)."""
    YEAR_OF_BIRTH = "year_of_birth"
    DIAGNOSIS = "diagnosis"
    """Values: :class:`ConceptRef`."""
    AGE_AT_DIAGNOSIS = "age_at_diagnosis"
    AGE_AT_IMAGING = "age_at_imaging"
    MODALITY = "modality"
    """Values: DICOM modality codes, upper case (``MR``, ``CT``)."""
    BODY_PART = "body_part"
    """Values: DICOM Body Part Examined, upper case (``PROSTATE``)."""
    MANUFACTURER = "manufacturer"
    """Compared without case; EQUALS also matches a longer name starting with the word."""
    SERIES_LABEL = "series_label"
    ORIENTATION = "orientation"
    IS3D = "is3d"
    CONTRAST = "contrast"
    CURATION_DECISION = "curation_decision"
    VARIABLE = "variable"
    """A clinical variable: :attr:`Criterion.variable` names it; numbers or codes."""

    @property
    def entity(self) -> Entity:
        """The row this field is read from."""
        return _ENTITY[self]

    @property
    def numeric(self) -> bool:
        """Whether the field holds numbers (ages, year of birth)."""
        return self in _NUMERIC


_ENTITY = {
    Field.GENDER: Entity.PERSON,
    Field.YEAR_OF_BIRTH: Entity.PERSON,
    Field.DIAGNOSIS: Entity.CONDITION,
    Field.AGE_AT_DIAGNOSIS: Entity.CONDITION,
    Field.AGE_AT_IMAGING: Entity.SERIES,
    Field.MODALITY: Entity.SERIES,
    Field.BODY_PART: Entity.SERIES,
    Field.MANUFACTURER: Entity.SERIES,
    Field.SERIES_LABEL: Entity.SERIES,
    Field.ORIENTATION: Entity.SERIES,
    Field.IS3D: Entity.SERIES,
    Field.CONTRAST: Entity.SERIES,
    Field.CURATION_DECISION: Entity.SERIES,
    Field.VARIABLE: Entity.VARIABLE,
}
_NUMERIC = frozenset({Field.YEAR_OF_BIRTH, Field.AGE_AT_DIAGNOSIS, Field.AGE_AT_IMAGING})


@dataclass(frozen=True)
class ConceptRef:
    """A diagnosis as a concept id, or a code (of a vocabulary, or as submitted).

    ``concept_id`` matches ``condition_concept_id``; ``code`` matches the submitted code
    (``condition_source_value``) and, through ``concept`` (``concept_code``, restricted to
    ``vocabulary_id`` when given), the standard concept.
    """

    concept_id: int | None = None
    code: str | None = None
    vocabulary_id: str | None = None


@dataclass(frozen=True)
class Criterion:
    """One condition: ``field`` ``op`` ``values``.

    ``values``: EQUALS, NOT_EQUALS and IN — one or more values; CONTAINS — one string;
    LOWER_THAN and GREATER_THAN — one number; BETWEEN — ``(min, max)``, either may be None.
    """

    field: Field
    op: Op
    values: tuple[Any, ...]
    variable: str | None = None

    @property
    def group_key(self) -> tuple[str, str | None]:
        """Criteria with the same key in one AND read the same row."""
        return (self.field.entity.value, self.variable if self.field is Field.VARIABLE else None)


@dataclass(frozen=True)
class Operation:
    """AND / OR of criteria and operations (an empty AND is true, an empty OR false)."""

    operand: Operand
    children: tuple[Operation | Criterion, ...]


class Stratum(enum.StrEnum):
    """What counts can be grouped by."""

    GENDER = "gender"
    AGE_DECADE = "age_decade"
    """Age at the person's first diagnosis, by decade (``"50-59"``)."""
    DIAGNOSIS = "diagnosis"
    MODALITY = "modality"
    BODY_PART = "body_part"
    MANUFACTURER = "manufacturer"
    SERIES_LABEL = "series_label"
    ORIENTATION = "orientation"
    CURATION_DECISION = "curation_decision"


STRATA = tuple(stratum.value for stratum in Stratum)
"""The names accepted by ``stratify``."""

MAX_STRATA_KEYS = 3
"""At most this many keys in one stratified count."""


@dataclass(frozen=True)
class StratumCounts:
    """The counts of one stratum: its value per key (``{"gender": "male"}``)."""

    values: dict[str, str]
    persons: int
    studies: int
    series: int


@dataclass(frozen=True)
class CohortCounts:
    """Exact counts of a cohort, and per stratum when stratified."""

    persons: int
    studies: int
    series: int
    strata: tuple[StratumCounts, ...] = field(default=())


__all__ = [
    "MAX_STRATA_KEYS",
    "STRATA",
    "CohortCounts",
    "ConceptRef",
    "Criterion",
    "Entity",
    "Field",
    "Op",
    "Operand",
    "Operation",
    "Stratum",
    "StratumCounts",
]
