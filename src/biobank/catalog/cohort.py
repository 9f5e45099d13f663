"""Cohort counts over OMOP CDM + MI-CDM + the imaging catalogue, one SQL statement per count.

The query model (:class:`Operation` of :class:`Criterion` s, the shape of the Samply Lens /
EUCAIM AST) is declared here because the catalogue compiles it; ``biobank.datasets.cohort``
parses the query languages into it (Lens AST, Beacon v2 filters) and re-exports it.

What a criterion reads (:class:`Field`), by *entity*:

- **person** — ``gender`` (``person.gender_concept_id``), ``year_of_birth``.
- **condition** — ``diagnosis`` (``condition_occurrence.condition_concept_id`` — a concept id,
  or a code looked up in ``concept`` — or ``condition_source_value``) and
  ``age_at_diagnosis`` (``condition_start_date`` − birth).
- **series** — ``modality``, ``body_part``, ``manufacturer`` (catalogue ``series``),
  ``series_label``, ``orientation``, ``is3d``, ``contrast``, ``curation_decision``
  (``series_curation``) and ``age_at_imaging`` (the series date, else the study date, −
  birth: the date ``image_occurrence_date`` is made from). A person's series are their
  catalogued series (``person.person_source_value = patient.patient_pseudonym`` →
  ``study.patient_id`` → ``series.study_id`` → ``series_curation.series_id``), the same set
  as their ``image_occurrence`` rows. They are read from ``cohort_series``
  (:mod:`biobank.catalog.cohort_series`), which holds those values per series (and the age
  at imaging as ``age_span``) in two covering indexes, kept up to date at write time.
  Studies are counted by ``study.id`` (one per Study Instance UID).
- **variable** — a clinical variable ``<form>.<variable>``: the ``measurement`` and
  ``observation`` rows whose ``*_source_value`` is that name; numbers compare
  ``value_as_number``, codes ``value_source_value``.

Semantics. A tree is evaluated per person. Within one AND, the children that read the same
condition row or the same series are compiled into one sub-query, so "a T2W, axial, MR
series" means one series with all three, and "prostate cancer diagnosed at 50–70" one
diagnosis (the children of a Lens AND are ORs over one key each; an OR that mixes entities
is compiled as an OR of sub-queries). An AND's sub-queries that an index answers (a
variable, a diagnosis) are ``IN`` lists and the others ``EXISTS`` checked for the persons
the lists let through; a conjunction with series criteria is counted by joining the
matching series once (see :func:`compile_counts`). Several conditions on the same variable
also share a row (``psa > 4 AND psa < 10``). ``NOT_EQUALS`` means *a row whose value
differs* (a person with an MR and a CT series has a series that is not CT). Ages are whole
years, exact to the day (``month_of_birth``/``day_of_birth`` default to 1 when missing);
dates are shifted per patient by the same offset, so differences are exact.

Counts: ``persons`` satisfy the tree; ``series`` are the selected persons' series for which
the tree holds when its series criteria are read on that series (all their series when the
query has no series criterion; then a study's series are its ``number_of_series``, kept by
ingest); ``studies`` are the distinct studies of those series. Strata (:data:`STRATA`) group
the same three counts; a person is in every stratum of a multi-valued key (diagnosis,
modality, …) they have a row for, so strata may sum to more than the total.

Statements: :func:`count_cohort` first looks up the concepts of diagnosis codes
(:func:`resolve_codes`) and which tables hold each clinical variable
(:func:`variable_tables`) — index probes — then runs **one** statement per count
(:func:`compile_counts`; a stratified count with a multi-valued key runs a second one for
the totals). Every value is a bound parameter; no SQL is built from a value. The same
statements run on SQLite and PostgreSQL; the indexes they need are created by migrations
0005 and 0006 (``cohort_series``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, false, func, literal, or_, select, true

from biobank.catalog.cohort_model import (
    MAX_STRATA_KEYS,
    STRATA,
    CohortCounts,
    ConceptRef,
    Criterion,
    Entity,
    Field,
    Op,
    Operand,
    Operation,
    Stratum,
    StratumCounts,
)
from biobank.catalog.cohort_sql import (
    DateKey,
    age_condition,
    age_span,
    birth_key,
    compare,
)
from biobank.catalog.omop import (
    COHORT_SERIES,
    CONCEPT,
    CONDITION_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    PERSON,
)
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import PATIENT, STUDY
from biobank.errors import InvalidQuery

# -- the compiler ----------------------------------------------------------------------------

GroupKey = tuple[str, str | None]

_CURATION_FIELDS = {
    Field.SERIES_LABEL: "label",
    Field.ORIENTATION: "orientation",
    Field.IS3D: "is3d",
    Field.CONTRAST: "contrast",
    Field.CURATION_DECISION: "decision",
}
_SERIES_FIELDS = {
    Field.MODALITY: "modality",
    Field.BODY_PART: "body_part_examined",
    Field.MANUFACTURER: "manufacturer",
}


def _criteria(node: Operation | Criterion) -> list[Criterion]:
    if isinstance(node, Criterion):
        return [node]
    return [c for child in node.children for c in _criteria(child)]


def _key_of(node: Operation | Criterion) -> GroupKey | None:
    """The row key shared by every criterion of ``node`` (None if they differ or none)."""
    keys = {c.group_key for c in _criteria(node)}
    return keys.pop() if len(keys) == 1 else None


def _drives(key: GroupKey, nodes: Sequence[Operation | Criterion]) -> bool:
    """Whether an index finds this group's persons cheaply: a variable, a diagnosis."""
    if key[0] == Entity.VARIABLE.value:
        return True
    return key[0] == Entity.CONDITION.value and all(
        any(c.field is Field.DIAGNOSIS and c.op in (Op.EQUALS, Op.IN) for c in _criteria(node))
        for node in nodes
    )


@dataclass
class _Scope:
    """The rows criteria are read from: a person and, for series criteria, one series."""

    person: Any = None
    patient: Any = None
    study: Any = None
    image: Any = None
    series: Any = None
    curation: Any = None
    condition: Any = None
    variable: Any = None


def _manufacturer(lowered: Any, c: Criterion) -> Any:
    """``c`` on a lower-cased manufacturer: the name, or a longer one starting with the word.

    The prefix is compared with ``substr`` (an equality) rather than ``LIKE``: several
    times cheaper per row on SQLite, and the same on both backends.
    """
    words = sorted({str(v).lower() for v in c.values})
    matched = or_(
        lowered.in_(words) if len(words) > 1 else lowered == words[0],
        *(func.substr(lowered, 1, len(word) + 1) == f"{word} " for word in words),
    )
    return ~matched if c.op is Op.NOT_EQUALS else matched


SOURCE_ONLY = "<source>"
"""``ConceptRef.vocabulary_id`` of a code already looked up: match the submitted code only."""


def resolve_codes(catalog: Catalog, tree: Operation) -> Operation:
    """``tree`` with the diagnosis codes looked up in ``concept`` (one small query).

    A code then matches its concepts by id (an index on ``condition_concept_id``) or the
    submitted code — the same rows as the look-up inside the count, but PostgreSQL can
    combine two index scans instead of scanning ``condition_occurrence``.
    """
    refs = {
        ref
        for c in _criteria(tree)
        if c.field is Field.DIAGNOSIS and c.op is not Op.CONTAINS
        for ref in c.values
        if ref.code is not None and ref.vocabulary_id != SOURCE_ONLY
    }
    if not refs:
        return tree
    found: dict[tuple[str, str], list[int]] = {}
    with catalog._reading("looking up diagnosis codes") as conn:
        rows = conn.execute(
            select(CONCEPT.c.concept_id, CONCEPT.c.vocabulary_id, CONCEPT.c.concept_code).where(
                CONCEPT.c.concept_code.in_(sorted({r.code for r in refs if r.code})),
                CONCEPT.c.concept_id != 0,
            )
        ).all()
    for concept_id, vocabulary, code in rows:
        found.setdefault((vocabulary, code), []).append(concept_id)
        found.setdefault(("", code), []).append(concept_id)

    def resolved(ref: ConceptRef) -> list[ConceptRef]:
        if ref.code is None or ref.vocabulary_id == SOURCE_ONLY:
            return [ref]
        ids = found.get((ref.vocabulary_id or "", ref.code), [])
        return [ConceptRef(code=ref.code, vocabulary_id=SOURCE_ONLY)] + [
            ConceptRef(concept_id=i) for i in sorted(set(ids))
        ]

    def walk(node: Operation | Criterion) -> Operation | Criterion:
        if isinstance(node, Operation):
            return Operation(node.operand, tuple(walk(child) for child in node.children))
        if node.field is not Field.DIAGNOSIS or node.op is Op.CONTAINS:
            return node
        values = tuple(dict.fromkeys(r for ref in node.values for r in resolved(ref)))
        return Criterion(node.field, node.op, values, node.variable)

    walked = walk(tree)
    return walked if isinstance(walked, Operation) else Operation(Operand.AND, (walked,))


def variable_tables(catalog: Catalog, tree: Operation) -> dict[str, tuple[str, ...]]:
    """Which of ``measurement`` and ``observation`` hold each clinical variable of ``tree``.

    One index probe per variable and table; the count then reads only those tables (and
    PostgreSQL estimates a single table's rows far better than a UNION's).
    """
    names = sorted({str(c.variable) for c in _criteria(tree) if c.field is Field.VARIABLE})
    found: dict[str, tuple[str, ...]] = {}
    if not names:
        return found
    with catalog._reading("finding clinical variables") as conn:
        for name in names:
            found[name] = tuple(
                table.name
                for table, column in (
                    (MEASUREMENT, MEASUREMENT.c.measurement_source_value),
                    (OBSERVATION, OBSERVATION.c.observation_source_value),
                )
                if conn.execute(select(literal(1)).where(column == name).limit(1)).first()
            )
    return found


def _diagnosis(co: Any, c: Criterion) -> Any:
    refs: list[ConceptRef] = list(c.values)
    if c.op is Op.CONTAINS:
        return compare(co.c.condition_source_value, Op.CONTAINS, (refs[0].code or "",))
    ids = sorted({r.concept_id for r in refs if r.concept_id is not None})
    by_vocabulary: dict[str, set[str]] = {}
    for r in refs:
        if r.code is not None:
            by_vocabulary.setdefault(r.vocabulary_id or "", set()).add(r.code)
    parts: list[Any] = []
    if ids:
        parts.append(co.c.condition_concept_id.in_(ids))
    codes = sorted(set().union(*by_vocabulary.values())) if by_vocabulary else []
    if codes:
        parts.append(co.c.condition_source_value.in_(codes))
    by_vocabulary.pop(SOURCE_ONLY, None)
    if by_vocabulary:
        lookups = [
            and_(
                CONCEPT.c.concept_code.in_(sorted(found)),
                *([CONCEPT.c.vocabulary_id == vocabulary] if vocabulary else []),
            )
            for vocabulary, found in sorted(by_vocabulary.items())
        ]
        parts.append(
            co.c.condition_concept_id.in_(
                select(CONCEPT.c.concept_id).where(or_(*lookups), CONCEPT.c.concept_id != 0)
            )
        )
    matched = or_(false(), *parts)
    return ~matched if c.op is Op.NOT_EQUALS else matched


def _variable_column(row: Any, c: Criterion) -> Any:
    numeric = c.op in (Op.LOWER_THAN, Op.GREATER_THAN, Op.BETWEEN) or any(
        isinstance(v, int | float) and not isinstance(v, bool) for v in c.values
    )
    return row.c.value_as_number if numeric else row.c.value_source_value


def _row_condition(node: Operation | Criterion, scope: _Scope) -> Any:
    """``node`` on one row of its entity (every criterion of ``node`` reads that row)."""
    if isinstance(node, Operation):
        parts = [_row_condition(child, scope) for child in node.children]
        return and_(true(), *parts) if node.operand is Operand.AND else or_(false(), *parts)
    c = node
    if c.field is Field.GENDER:
        return compare(scope.person.c.gender_concept_id, c.op, c.values)
    if c.field is Field.YEAR_OF_BIRTH:
        return compare(scope.person.c.year_of_birth, c.op, c.values)
    if c.field is Field.DIAGNOSIS:
        return _diagnosis(scope.condition, c)
    if c.field is Field.AGE_AT_DIAGNOSIS:
        span = age_span(scope.condition.c.condition_start_date, scope.person)
        return age_condition(span, c.op, c.values)
    if c.field is Field.AGE_AT_IMAGING:  # precomputed in cohort_series
        return age_condition(scope.series.c.age_span, c.op, c.values)
    if c.field is Field.VARIABLE:
        return compare(_variable_column(scope.variable, c), c.op, c.values)
    if c.field is Field.MANUFACTURER:
        lowered = scope.series.c.manufacturer_lower
        if c.op in (Op.EQUALS, Op.IN, Op.NOT_EQUALS):
            return _manufacturer(lowered, c)
        return compare(lowered, c.op, c.values, nocase=True)
    if c.field in _SERIES_FIELDS:
        return compare(scope.series.c[_SERIES_FIELDS[c.field]], c.op, c.values)
    return compare(scope.curation.c[_CURATION_FIELDS[c.field]], c.op, c.values)


class _Compiler:
    """Compile an :class:`Operation` on a person (and, when bound, on one series)."""

    def __init__(self, variable_tables: dict[str, tuple[str, ...]] | None = None) -> None:
        self._n = 0
        self.variable_tables = variable_tables
        """Which tables hold each variable (None: look in both)."""

    def _alias(self, table: Any, stem: str) -> Any:
        self._n += 1
        return table.alias(f"{stem}{self._n}")

    def predicate(self, node: Operation | Criterion, person: Any, bound: _Scope | None) -> Any:
        """The condition on ``person`` (and on the ``bound`` series row, if any)."""
        key = _key_of(node)
        if key is not None:
            return self._group(key, [node], person, bound)
        if not isinstance(node, Operation):  # pragma: no cover - a criterion has a key
            raise InvalidQuery("a criterion without a key")
        if node.operand is Operand.OR:
            parts = [self.predicate(child, person, bound) for child in node.children]
            return or_(false(), *parts)
        groups: dict[GroupKey, list[Operation | Criterion]] = {}
        parts = []
        for child in node.children:
            child_key = _key_of(child)
            if child_key is None:
                parts.append(self.predicate(child, person, bound))
            else:
                groups.setdefault(child_key, []).append(child)
        # Person columns first, then the sub-queries that an index answers (a variable, a
        # diagnosis) as IN lists; when there is one, the other sub-queries (an age alone,
        # series) are EXISTS checked only for the persons the lists let through — SQLite
        # materialises every IN list in full, and a list of series can be most of them.
        order = {"person": 0, "variable": 1, "condition": 2, "series": 3}
        ordered = sorted(groups.items(), key=lambda item: order[item[0][0]])
        drivers = [key for key, nodes in ordered if _drives(key, nodes)]
        compiled = [
            self._group(key, nodes, person, bound, correlated=bool(drivers) and key not in drivers)
            for key, nodes in ordered
        ]
        return and_(true(), *compiled, *parts)

    def _group(
        self,
        key: GroupKey,
        nodes: list[Operation | Criterion],
        person: Any,
        bound: _Scope | None,
        *,
        correlated: bool = False,
    ) -> Any:
        """``nodes`` on one row of their entity, for ``person``.

        ``correlated``: an ``EXISTS`` on the outer person rather than an ``IN`` list.
        """
        entity = Entity(key[0])
        criteria = [c for node in nodes for c in _criteria(node)]
        person_id = person.c.person_id if bound is None else bound.person.c.person_id
        if entity is Entity.PERSON:
            scope = _Scope(person=person)
            return and_(*(_row_condition(node, scope) for node in nodes))
        if entity is Entity.SERIES and bound is not None:
            return and_(*(_row_condition(node, bound) for node in nodes))
        if entity is Entity.CONDITION:
            scope = _Scope(condition=self._alias(CONDITION_OCCURRENCE, "co"))
            stmt = select(scope.condition.c.person_id)
            if correlated:
                scope.person = person
            elif any(c.field is Field.AGE_AT_DIAGNOSIS for c in criteria):
                scope.person = self._alias(PERSON, "pb")
                stmt = stmt.join(
                    scope.person, scope.person.c.person_id == scope.condition.c.person_id
                )
            stmt = stmt.where(*(_row_condition(node, scope) for node in nodes))
            if correlated:
                return stmt.where(scope.condition.c.person_id == person_id).exists()
            return person_id.in_(stmt)
        if entity is Entity.SERIES:
            scope, stmt = self._series_rows(criteria, person if correlated else None)
            stmt = stmt.where(*(_row_condition(node, scope) for node in nodes))
            if correlated:
                return stmt.exists()
            return person_id.in_(stmt)
        selects = []
        for table, source in (
            (MEASUREMENT, "measurement_source_value"),
            (OBSERVATION, "observation_source_value"),
        ):
            if self.variable_tables is not None and table.name not in self.variable_tables.get(
                str(key[1]), ()
            ):
                continue
            row = self._alias(table, "v")
            scope = _Scope(variable=row)
            selects.append(
                select(row.c.person_id).where(
                    row.c[source] == key[1], *(_row_condition(node, scope) for node in nodes)
                )
            )
        if not selects:  # recorded in neither table: no person has it
            return false()
        if len(selects) == 1:
            return person_id.in_(selects[0])
        return person_id.in_(selects[0].union_all(selects[1]))

    def _series_rows(
        self, criteria: Sequence[Criterion], person: Any = None
    ) -> tuple[_Scope, Select[Any]]:
        """The series of a person: their rows of ``cohort_series``.

        ``person``: the outer person of a correlated sub-query; otherwise the statement
        selects the ``person_id`` of every series that matches (``criteria`` are read from
        the one table, the age at imaging included).
        """
        rows = self._alias(COHORT_SERIES, "cs")
        scope = _Scope(series=rows, curation=rows)
        if person is not None:
            stmt = (
                select(literal(1)).select_from(rows).where(rows.c.person_id == person.c.person_id)
            )
        else:
            stmt = select(rows.c.person_id)
        return scope, stmt


def _series_part(tree: Operation | Criterion) -> Operation | Criterion:
    """``tree`` for a series of a selected person: a top-level AND's other parts hold already.

    A selected person satisfies the whole tree; when the tree is a conjunction, its parts
    that do not read series are true for every series of that person and are dropped (the
    series query then only reads series columns). Other trees are kept whole.
    """
    node = tree
    while isinstance(node, Operation) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, Criterion) or node.operand is Operand.OR:
        return node
    kept = tuple(
        child
        for child in node.children
        if any(c.field.entity is Entity.SERIES for c in _criteria(child))
    )
    return Operation(Operand.AND, kept)


# -- strata ----------------------------------------------------------------------------------

_GENDER_LABELS = {8507: "male", 8532: "female"}
_PERSON_STRATA = frozenset({Stratum.GENDER, Stratum.AGE_DECADE, Stratum.DIAGNOSIS})
_SINGLE_VALUED = frozenset({Stratum.GENDER, Stratum.AGE_DECADE})
"""Strata with one value per person."""
_SERIES_STRATA = frozenset({Stratum.MODALITY, Stratum.BODY_PART, Stratum.MANUFACTURER})
_CURATION_STRATA = frozenset({Stratum.SERIES_LABEL, Stratum.ORIENTATION, Stratum.CURATION_DECISION})


def _label(stratum: Stratum, value: Any) -> str:
    """The printed value of a stratum."""
    if value is None or value == "":
        return "unknown"
    if stratum is Stratum.GENDER:
        return _GENDER_LABELS.get(int(value), "unknown")
    if stratum is Stratum.AGE_DECADE:
        start = int(value) * 10
        return f"{start}-{start + 9}"
    return str(value)


def _stratum_column(stratum: Stratum, scope: _Scope) -> Any:
    person = scope.person
    if stratum is Stratum.GENDER:
        return person.c.gender_concept_id
    if stratum is Stratum.AGE_DECADE:
        first = CONDITION_OCCURRENCE.alias("cofirst")
        earliest = (
            select(func.min(first.c.condition_start_date))
            .where(first.c.person_id == person.c.person_id)
            .scalar_subquery()
        )
        return (DateKey(earliest) - birth_key(person)) // 100000
    if stratum is Stratum.DIAGNOSIS:
        return func.coalesce(
            scope.variable.c.concept_name, scope.condition.c.condition_source_value
        )
    if stratum in _SERIES_STRATA:
        return scope.series.c[_SERIES_FIELDS[Field(stratum.value)]]
    return scope.curation.c[_CURATION_FIELDS[Field(stratum.value)]]


# -- the statement ---------------------------------------------------------------------------

ALL_LEVEL = "all"
PERSONS_LEVEL = "persons"
SERIES_LEVEL = "series"


def _conjunctive(tree: Operation | Criterion) -> bool:
    """Whether ``tree`` is an AND whose every part reads series only or no series at all.

    Then a person matches when the other parts hold and one of their series matches the
    series parts, so the matching series can be joined (single-child operations unwrap).
    """
    node = tree
    while isinstance(node, Operation) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, Criterion):
        return True
    if node.operand is not Operand.AND:
        return False
    for child in node.children:
        kinds = {c.field.entity is Entity.SERIES for c in _criteria(child)}
        if len(kinds) > 1:
            return False
    return True


def compile_counts(
    tree: Operation,
    strata: Sequence[Stratum] = (),
    variable_tables: dict[str, tuple[str, ...]] | None = None,
    *,
    per_study: bool = False,
) -> Select[Any]:
    """The one statement counting ``tree`` (see the module docstring for what is counted).

    ``per_study``: count a query with series criteria only by grouping its series per study
    first (faster on PostgreSQL; same counts).

    Unstratified: one row ``(persons, studies, series)``. Stratified: rows ``(level,
    <stratum values...>, persons, studies, series)``; ``level`` says whether the persons of
    the row count (:data:`PERSONS_LEVEL`) or only its studies and series.

    Most queries are counted in a single pass: a query without series criteria joins every
    study of the persons (``LEFT JOIN``: persons without images count; a study's series are
    ``study.number_of_series``, kept by ingest), a conjunction with series criteria joins
    the matching rows of ``cohort_series`` only (a person counts when one of their series
    matches and the other criteria hold; with series criteria only, ``person`` is not read).
    Other trees (an OR across a series criterion and something else) select the persons
    first (a CTE), then their matching series.
    """
    series_criteria = [c for c in _criteria(tree) if c.field.entity is Entity.SERIES]
    wanted = set(strata)
    with_series = bool(series_criteria) or bool(wanted & (_SERIES_STRATA | _CURATION_STRATA))
    with_series = with_series or Stratum.DIAGNOSIS in wanted
    only_series = bool(series_criteria) and len(series_criteria) == len(_criteria(tree))
    single_pass = not series_criteria or only_series or _conjunctive(tree)

    compiler = _Compiler(variable_tables)
    bound = _Scope(person=PERSON.alias("p"))
    person = bound.person
    # Series-level queries read cohort_series (one row per series of a person, the series
    # criteria and the age at imaging in covering indexes); the others join the studies.
    # LEFT JOINs when persons without images count (no series criteria).
    outer = not series_criteria
    source: Any
    if with_series:
        bound.series = bound.curation = COHORT_SERIES.alias("cs")
        # Only series criteria and no person-level strata: the person is not read at all.
        person_free = only_series and single_pass and not wanted & _PERSON_STRATA
        source = (
            bound.series
            if person_free
            else person.join(
                bound.series, bound.series.c.person_id == person.c.person_id, isouter=outer
            )
        )
        person_key = bound.series.c.person_id if person_free else person.c.person_id
        study_key = bound.series.c.study_id
    else:
        person_free = False
        # Joined flat (no parenthesised join, which SQLite would materialise whole).
        bound.patient = PATIENT.alias("pa")
        bound.study = STUDY.alias("st")
        source = person.outerjoin(
            bound.patient, bound.patient.c.patient_pseudonym == person.c.person_source_value
        ).outerjoin(bound.study, bound.study.c.patient_id == bound.patient.c.id)
        person_key = person.c.person_id
        study_key = bound.study.c.id
    if Stratum.DIAGNOSIS in wanted:
        bound.condition = CONDITION_OCCURRENCE.alias("cod")
        bound.variable = CONCEPT.alias("cnd")  # the diagnosis' concept, for its name
        source = source.outerjoin(
            bound.condition, bound.condition.c.person_id == person.c.person_id
        ).outerjoin(
            bound.variable,
            and_(
                bound.variable.c.concept_id == bound.condition.c.condition_concept_id,
                bound.variable.c.concept_id != 0,  # "No matching concept": use the code
            ),
        )
    if single_pass:
        where = [compiler.predicate(tree, person, bound if series_criteria else None)]
        person_level = True
    else:
        unbound = PERSON.alias("ps")
        selected = (
            select(unbound.c.person_id)
            .where(compiler.predicate(tree, unbound, None))
            .cte("selected_persons")
            .prefix_with("MATERIALIZED")
        )
        where = [
            person.c.person_id.in_(select(selected.c.person_id)),
            compiler.predicate(_series_part(tree), person, bound),
        ]
        person_level = False
    persons = func.count(func.distinct(person_key))
    studies = func.count(func.distinct(study_key))
    if with_series and Stratum.DIAGNOSIS in wanted:
        series: Any = func.count(func.distinct(bound.series.c.series_id))
    elif with_series:
        # One row per series: count() is exact and saves a sort or B-tree of series ids.
        series = func.count(bound.series.c.series_id)
    else:
        series = func.coalesce(func.sum(bound.study.c.number_of_series), 0)

    if not strata:
        counted = select(persons.label("persons"), studies.label("studies"), series.label("series"))
        counted = counted.select_from(source).where(*where)
        if person_level and per_study and with_series and person_free:
            # Series criteria only, on PostgreSQL: group the matching series by study (a
            # hash aggregate) and count persons over the studies, instead of sorting every
            # matching series twice for two count(DISTINCT) (~25 % faster; not on SQLite).
            grouped = (
                select(person_key.label("person_id"), series.label("series"))
                .select_from(source)
                .where(*where)
                .group_by(person_key, study_key)
                .subquery("per_study")
            )
            return select(
                func.count(func.distinct(grouped.c.person_id)).label("persons"),
                func.count().label("studies"),
                func.coalesce(func.sum(grouped.c.series), 0).label("series"),
            )
        if person_level:
            return counted
        # An OR with series criteria: persons from the CTE (some may have no series).
        everyone = select(func.count().label("persons")).select_from(selected).subquery("np")
        imaged = counted.with_only_columns(studies.label("studies"), series.label("series"))
        imaged_rows = imaged.subquery("ns")
        return select(everyone.c.persons, imaged_rows.c.studies, imaged_rows.c.series).select_from(
            everyone.join(imaged_rows, true())
        )

    keys = [_stratum_column(s, bound).label(s.value) for s in strata]
    if person_level and wanted <= _SINGLE_VALUED:
        # Strata with one value per person (gender, age decade): count each person's studies
        # and series first, then group the persons, so a stratum (the age decade's look-up
        # of the first diagnosis) is computed once per person rather than once per study
        # or series row, and no count(DISTINCT) runs over every row.
        per_person = (
            select(*keys, studies.label("studies"), series.label("series"))
            .select_from(source)
            .where(*where)
            .group_by(person.c.person_id)  # the keys are functions of the person
            .subquery("per_person")
        )
        outer_keys = [per_person.c[s.value] for s in strata]
        return select(
            literal(ALL_LEVEL).label("level"),
            *outer_keys,
            func.count().label("persons"),
            func.coalesce(func.sum(per_person.c.studies), 0).label("studies"),
            func.coalesce(func.sum(per_person.c.series), 0).label("series"),
        ).group_by(*outer_keys)
    level = ALL_LEVEL if person_level else SERIES_LEVEL
    stratified = (
        select(
            literal(level).label("level"),
            *keys,
            persons.label("persons"),
            studies.label("studies"),
            series.label("series"),
        )
        .select_from(source)
        .where(*where)
        .group_by(*(column.element for column in keys))
    )
    if person_level or not wanted <= _PERSON_STRATA:
        return stratified
    # Person-level strata of an OR with series criteria: the persons from the CTE.
    people = _Scope(person=PERSON.alias("pp"))
    psource: Any = people.person
    if Stratum.DIAGNOSIS in wanted:
        people.condition = CONDITION_OCCURRENCE.alias("cop")
        people.variable = CONCEPT.alias("cnp")
        psource = psource.outerjoin(
            people.condition, people.condition.c.person_id == people.person.c.person_id
        ).outerjoin(
            people.variable,
            and_(
                people.variable.c.concept_id == people.condition.c.condition_concept_id,
                people.variable.c.concept_id != 0,
            ),
        )
    person_keys = [_stratum_column(s, people).label(s.value) for s in strata]
    person_stmt = (
        select(
            literal(PERSONS_LEVEL).label("level"),
            *person_keys,
            func.count(func.distinct(people.person.c.person_id)).label("persons"),
            literal(0).label("studies"),
            literal(0).label("series"),
        )
        .select_from(psource)
        .where(people.person.c.person_id.in_(select(selected.c.person_id)))
        .group_by(*(column.element for column in person_keys))
    )
    stratified = stratified.with_only_columns(
        literal(SERIES_LEVEL).label("level"),
        *keys,
        literal(0).label("persons"),
        studies.label("studies"),
        series.label("series"),
    )
    return person_stmt.union_all(stratified)  # type: ignore[return-value]


def count_cohort(catalog: Catalog, tree: Operation, strata: Sequence[Stratum] = ()) -> CohortCounts:
    """Exact counts of the cohort ``tree``, stratified by ``strata`` (one statement).

    Raises
    ------
    InvalidQuery
        If more than :data:`MAX_STRATA_KEYS` strata or one twice are asked for.
    StorageError
        If the catalogue cannot be read.
    """
    strata = tuple(strata)
    if len(strata) > MAX_STRATA_KEYS or len(set(strata)) != len(strata):
        raise InvalidQuery(
            f"stratify: at most {MAX_STRATA_KEYS} different keys, e.g. "
            '["gender", "age_decade"]; valid keys: ' + ", ".join(STRATA)
        )
    tree = resolve_codes(catalog, tree)
    tables = variable_tables(catalog, tree)
    with catalog._reading("counting a cohort") as conn:
        per_study = conn.dialect.name == "postgresql"
        stmt = compile_counts(tree, strata, tables, per_study=per_study)
        rows = conn.execute(stmt).all()
        if not strata:
            persons, studies, series = rows[0]
            return CohortCounts(int(persons), int(studies or 0), int(series or 0))
        if set(strata) <= _SINGLE_VALUED and all(row[0] == ALL_LEVEL for row in rows):
            # Every person (and so every study and series) is in exactly one stratum.
            total: Sequence[Any] = [sum(int(row[i] or 0) for row in rows) for i in (-3, -2, -1)]
        else:
            total = conn.execute(compile_counts(tree, (), tables, per_study=per_study)).one()
    by_values: dict[tuple[str, ...], dict[str, int]] = {}
    # Persons come from the rows of level "all" or "persons"; from "series" rows only when
    # there are no "persons" rows (an OR with series criteria, stratified by series).
    person_rows = any(row[0] == PERSONS_LEVEL for row in rows)
    for row in rows:
        level = row[0]
        labels = tuple(_label(s, value) for s, value in zip(strata, row[1:-3], strict=True))
        counts = by_values.setdefault(labels, {"persons": 0, "studies": 0, "series": 0})
        if level != SERIES_LEVEL or not person_rows:
            counts["persons"] += int(row[-3])
        if level != PERSONS_LEVEL:
            counts["studies"] += int(row[-2])
            counts["series"] += int(row[-1] or 0)
    found = tuple(
        StratumCounts(
            dict(zip((s.value for s in strata), labels, strict=True)),
            counts["persons"],
            counts["studies"],
            counts["series"],
        )
        for labels, counts in sorted(by_values.items())
    )
    return CohortCounts(int(total[0]), int(total[1] or 0), int(total[2] or 0), found)


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
    "SOURCE_ONLY",
    "compile_counts",
    "count_cohort",
    "resolve_codes",
    "variable_tables",
]
