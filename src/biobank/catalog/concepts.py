"""The curated OMOP concept seed: a few hundred verified rows of the OMOP ``concept`` table.

OMOP rows name what they record by *concept id* (``measurement_concept_id = 3013603`` is PSA).
The full OHDSI vocabularies (Athena) are licence-gated and cannot be shipped, so the node
carries a small curated excerpt, ``biobank/catalog/data/omop_concepts.csv``, with the ten
columns of the OHDSI ``concept`` table. Every row was checked against public OHDSI files;
``omop_concepts.SOURCES.md`` says where. What is not in the seed maps to concept ``0`` ("No
matching concept"), and the mapping keeps the submitted code in ``*_source_value``.

Forms and code name concepts by a *key* ``"<vocabulary_id>:<concept_code>"``, with the OMOP
vocabulary ids: ``"LOINC:2857-1"``, ``"SNOMED:399068003"``, ``"UCUM:ng/mL"``,
``"DICOM:00080060"``, ``"Type Concept:OMOP4976882"``. The vocabulary id is matched ignoring
case; DICOM codes (tags) too. Concepts of the OMOP-generated vocabularies (Gender, Visit, Type
Concept, Episode, CDM, None), whose codes are internal, are also found by name:
``"Type Concept:Case Report Form"``, ``"CDM:condition_occurrence.condition_occurrence_id"``.

Example
-------
>>> seed = ConceptSeed.builtin()
>>> seed.concept_id("LOINC:2857-1")
3013603
>>> seed.concept_id("LOINC:0000-0")
0
>>> seed.name(8532)
'FEMALE'
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

from biobank.errors import InvalidInput

CONCEPT_COLUMNS = (
    "concept_id",
    "concept_name",
    "domain_id",
    "vocabulary_id",
    "concept_class_id",
    "standard_concept",
    "concept_code",
    "valid_start_date",
    "valid_end_date",
    "invalid_reason",
)
"""The columns of the OMOP CDM 5.4 ``concept`` table, in DDL order."""

DOMAINS = frozenset(
    {
        "Condition",
        "Device",
        "Drug",
        "Episode",
        "Gender",
        "Measurement",
        "Meas Value",
        "Meas Value Operator",
        "Metadata",
        "Observation",
        "Procedure",
        "Spec Anatomic Site",
        "Specimen",
        "Type Concept",
        "Unit",
        "Visit",
    }
)
"""The OMOP ``domain_id`` values a seed row may carry."""

NAME_KEYED_VOCABULARIES = frozenset({"CDM", "Episode", "Gender", "None", "Type Concept", "Visit"})
"""OMOP-generated vocabularies whose concepts are also found by ``"<vocabulary>:<name>"``."""

NO_MATCHING_CONCEPT = 0
"""The concept id OMOP uses when a source value has no standard concept."""

_SEED_FILE = "data/omop_concepts.csv"


@dataclass(frozen=True)
class Concept:
    """One row of the OMOP ``concept`` table."""

    concept_id: int
    concept_name: str
    domain_id: str
    vocabulary_id: str
    concept_class_id: str
    standard_concept: str | None
    concept_code: str
    valid_start_date: dt.date
    valid_end_date: dt.date
    invalid_reason: str | None = None

    @property
    def key(self) -> str:
        """The concept's key, ``"<vocabulary_id>:<concept_code>"``."""
        return f"{self.vocabulary_id}:{self.concept_code}"

    def row(self) -> dict[str, Any]:
        """The concept as a column → value dict (dates as :class:`datetime.date`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ConceptSeed:
    """A set of OMOP concepts, looked up by key or id.

    Parameters
    ----------
    concepts
        The rows; ids must be unique.

    Raises
    ------
    InvalidInput
        When two rows share a concept id.
    """

    def __init__(self, concepts: Iterable[Concept], *, source: str = "concept seed") -> None:
        self._source = source
        self._by_id: dict[int, Concept] = {}
        self._by_key: dict[tuple[str, str], Concept] = {}
        self._vocabularies: dict[str, str] = {}
        for concept in concepts:
            if concept.concept_id in self._by_id:
                raise InvalidInput(
                    f"{source}: concept_id {concept.concept_id} appears twice; keep one row"
                )
            self._by_id[concept.concept_id] = concept
            vocabulary = concept.vocabulary_id
            self._vocabularies.setdefault(vocabulary.casefold(), vocabulary)
            if concept.concept_code:
                self._by_key.setdefault(
                    (vocabulary, _normal_code(vocabulary, concept.concept_code)), concept
                )
            if vocabulary in NAME_KEYED_VOCABULARIES:
                self._by_key.setdefault((vocabulary, concept.concept_name.casefold()), concept)

    @classmethod
    def builtin(cls) -> ConceptSeed:
        """The seed shipped with the package (read once per process)."""
        return _builtin_seed()

    @classmethod
    def from_csv(cls, text: str, *, source: str = "concept CSV") -> ConceptSeed:
        """Read a seed from CSV text with the :data:`CONCEPT_COLUMNS` header.

        Dates are ISO (``2099-12-31``) or Athena's ``20991231``.

        Raises
        ------
        InvalidInput
            Naming the line and column that is wrong.
        """
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None or tuple(header) != CONCEPT_COLUMNS:
            raise InvalidInput(
                f"{source}: the header must be exactly {','.join(CONCEPT_COLUMNS)} "
                f"(got {','.join(header or [])!r})"
            )
        return cls(
            (_concept_from_cells(cells, source, line) for line, cells in enumerate(reader, 2)),
            source=source,
        )

    def concept(self, key: str) -> Concept | None:
        """The concept named by ``key`` (``"<vocabulary>:<code>"``), or ``None``."""
        vocabulary, sep, code = key.partition(":")
        if not sep or not code:
            return None
        canonical = self._vocabularies.get(vocabulary.strip().casefold())
        if canonical is None:
            return None
        code = code.strip()
        found = self._by_key.get((canonical, _normal_code(canonical, code)))
        if found is None and canonical in NAME_KEYED_VOCABULARIES:
            found = self._by_key.get((canonical, code.casefold()))
        return found

    def concept_id(self, key: str | None) -> int:
        """The concept id named by ``key``; ``0`` (no matching concept) when unknown or absent."""
        if key is None:
            return NO_MATCHING_CONCEPT
        found = self.concept(key)
        return NO_MATCHING_CONCEPT if found is None else found.concept_id

    def name(self, concept_id: int) -> str | None:
        """The name of concept ``concept_id``, or ``None`` when the seed has no such row."""
        found = self._by_id.get(concept_id)
        return None if found is None else found.concept_name

    def by_id(self, concept_id: int) -> Concept | None:
        """The row of concept ``concept_id``, or ``None``."""
        return self._by_id.get(concept_id)

    def unknown_keys(self, keys: Iterable[str]) -> list[str]:
        """The keys among ``keys`` that name no concept of the seed (sorted, unique)."""
        return sorted({key for key in keys if self.concept(key) is None})

    def rows(self) -> list[dict[str, Any]]:
        """Every concept as a column → value dict, ordered by id (for loading the table)."""
        return [self._by_id[i].row() for i in sorted(self._by_id)]

    def __iter__(self) -> Iterator[Concept]:
        """The concepts, ordered by id."""
        return iter(self._by_id[i] for i in sorted(self._by_id))

    def __len__(self) -> int:
        """The number of concepts."""
        return len(self._by_id)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` (a key string or a concept id) names a concept of the seed."""
        if isinstance(key, bool):
            return False
        if isinstance(key, int):
            return key in self._by_id
        return isinstance(key, str) and self.concept(key) is not None


def _normal_code(vocabulary: str, code: str) -> str:
    return code.upper() if vocabulary == "DICOM" else code


def _parse_date(text: str, source: str, line: int, column: str) -> dt.date:
    try:
        if len(text) == 8 and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{source} line {line}: {column} {text!r} is not a date; write YYYY-MM-DD"
        ) from None


def _concept_from_cells(cells: list[str], source: str, line: int) -> Concept:
    if len(cells) != len(CONCEPT_COLUMNS):
        raise InvalidInput(
            f"{source} line {line}: {len(cells)} cells, expected {len(CONCEPT_COLUMNS)} "
            f"({','.join(CONCEPT_COLUMNS)}); quote names that contain commas"
        )
    values = dict(zip(CONCEPT_COLUMNS, cells, strict=True))
    try:
        concept_id = int(values["concept_id"])
    except ValueError:
        raise InvalidInput(
            f"{source} line {line}: concept_id {values['concept_id']!r} is not an integer"
        ) from None
    for column in ("concept_name", "domain_id", "vocabulary_id", "concept_class_id"):
        if not values[column].strip():
            raise InvalidInput(f"{source} line {line}: {column} is empty; every row needs one")
    if values["domain_id"] not in DOMAINS:
        raise InvalidInput(
            f"{source} line {line}: domain_id {values['domain_id']!r} is not an OMOP domain "
            f"we seed; use one of {', '.join(sorted(DOMAINS))}"
        )
    if values["standard_concept"] not in ("", "S", "C"):
        raise InvalidInput(
            f"{source} line {line}: standard_concept must be S, C or empty, "
            f"not {values['standard_concept']!r}"
        )
    if values["invalid_reason"] not in ("", "D", "U"):
        raise InvalidInput(
            f"{source} line {line}: invalid_reason must be D, U or empty, "
            f"not {values['invalid_reason']!r}"
        )
    return Concept(
        concept_id=concept_id,
        concept_name=values["concept_name"],
        domain_id=values["domain_id"],
        vocabulary_id=values["vocabulary_id"],
        concept_class_id=values["concept_class_id"],
        standard_concept=values["standard_concept"] or None,
        concept_code=values["concept_code"],
        valid_start_date=_parse_date(values["valid_start_date"], source, line, "valid_start_date"),
        valid_end_date=_parse_date(values["valid_end_date"], source, line, "valid_end_date"),
        invalid_reason=values["invalid_reason"] or None,
    )


@cache
def _builtin_seed() -> ConceptSeed:
    text = resources.files("biobank.catalog").joinpath(_SEED_FILE).read_text(encoding="utf-8")
    return ConceptSeed.from_csv(text, source=f"biobank/catalog/{_SEED_FILE}")


__all__ = [
    "CONCEPT_COLUMNS",
    "DOMAINS",
    "NAME_KEYED_VOCABULARIES",
    "NO_MATCHING_CONCEPT",
    "Concept",
    "ConceptSeed",
]
