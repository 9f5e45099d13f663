"""The cohort query language: the Lens/EUCAIM AST, Beacon v2 filters, and their keys.

A cohort query is a tree of conditions, the shape Samply Lens builds and Samply Focus
forwards to EUCAIM nodes (``samply/focus`` ``src/ast.rs``)::

    {"id": "<uuid>", "ast": {"operand": "OR", "children": [{"operand": "AND", "children": [
      {"operand": "OR", "children": [{"key": "SNOMEDCT263495000", "type": "EQUALS",
                                      "system": "", "value": "SNOMEDCT248153007"}]},
      {"operand": "OR", "children": [{"key": "age_at_diagnosis", "type": "BETWEEN",
                                      "value": {"min": 50, "max": 70}}]}]}]},
     "stratify": ["gender", "age_decade"]}

The envelope (``id``) is optional, ``stratify`` is ours (``biobank query FILE.json``). A
Beacon v2 request body (``{"query": {"filters": [...], "requestedGranularity": "count"}}``)
is the second input: its filters are AND-ed; ontology filters (``{"id": "NCIT:C20197"}``)
resolve to sex, modality, body part or diagnosis; alphanumeric filters (``{"id": "prostate.psa",
"operator": ">", "value": "10"}``) name a key of :data:`KEYS`.

Keys (:data:`KEYS`, case-insensitive): the EUCAIM categories (gender ``SNOMEDCT263495000``,
diagnosis ``SNOMEDCT439401001``, modality ``RID10311``, body part ``SNOMEDCT123037004``,
manufacturer ``C25392``), our names for them and for the other criteria (``age_at_diagnosis``,
``series_label``, …), and any clinical variable ``<form>.<variable>`` (``prostate.psa``).
Values may be EUCAIM/SNOMED/RadLex terms or plain words (``male``, ``MR``, ``PROSTATE``).

Every problem raises :class:`~biobank.errors.InvalidQuery` naming where it is
(``ast.children[0].children[1]``), what is wrong and what to send instead. The parsed query
(:class:`CohortQuery`) holds the model the catalogue compiles
(:mod:`biobank.catalog.cohort`); its :meth:`CohortQuery.normalised` text is the same for
equivalent queries (it seeds the count noise).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from biobank.catalog.cohort import (
    MAX_STRATA_KEYS,
    STRATA,
    ConceptRef,
    Criterion,
    Field,
    Op,
    Operand,
    Operation,
    Stratum,
)
from biobank.catalog.curation import Decision
from biobank.curation.models import Orientation, SeriesLabel
from biobank.errors import InvalidQuery

MAX_DEPTH = 16
"""The deepest tree accepted."""
MAX_CONDITIONS = 256
"""The most conditions in one query."""


class Granularity(enum.StrEnum):
    """Beacon's ``requestedGranularity`` (``record`` is never served)."""

    BOOLEAN = "boolean"
    COUNT = "count"
    AGGREGATED = "aggregated"


class QueryFormat(enum.StrEnum):
    """Which language a query arrived in (the API answers in kind)."""

    LENS = "lens"
    BEACON = "beacon"


@dataclass(frozen=True)
class CohortQuery:
    """A parsed cohort query: the tree, the strata, and how to answer."""

    tree: Operation
    stratify: tuple[Stratum, ...] = ()
    granularity: Granularity = Granularity.COUNT
    format: QueryFormat = QueryFormat.LENS
    query_id: str | None = None
    filters: tuple[str, ...] = ()
    """Beacon input: the filter ids as received (echoed in ``receivedRequestSummary``)."""

    def normalised(self) -> str:
        """Canonical JSON of the tree and strata (equal for equal queries; no query id)."""
        return json.dumps(
            {"tree": _tree_json(self.tree), "stratify": [s.value for s in self.stratify]},
            sort_keys=True,
            separators=(",", ":"),
        )


def _tree_json(node: Operation | Criterion) -> Any:
    if isinstance(node, Criterion):
        values = [
            [v.concept_id, v.code, v.vocabulary_id] if isinstance(v, ConceptRef) else v
            for v in node.values
        ]
        return [node.field.value, node.variable, node.op.value, values]
    children = sorted((_tree_json(child) for child in node.children), key=json.dumps)
    return {node.operand.value: children}


# -- value vocabularies ----------------------------------------------------------------------


class Kind(enum.StrEnum):
    """The type of a key's values."""

    CODE = "code"
    NUMBER = "number"
    BOOLEAN = "boolean"
    VARIABLE = "variable"


_OPS = {
    Kind.CODE: (Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.CONTAINS),
    Kind.NUMBER: (Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.BETWEEN, Op.LOWER_THAN, Op.GREATER_THAN),
    Kind.BOOLEAN: (Op.EQUALS, Op.NOT_EQUALS),
    Kind.VARIABLE: tuple(Op),
}


def _strip_prefix(text: str) -> str:
    """``SNOMEDCT248153007``, ``SNOMED:248153007``, ``sct:248153007`` → ``248153007``."""
    found = re.fullmatch(r"(?i)(?:snomed(?:ct|-ct)?|sct)[:_ ]?(\d+)", text.strip())
    return found.group(1) if found else text.strip()


GENDERS: dict[str, int] = {
    "male": 8507,
    "m": 8507,
    "man": 8507,
    "8507": 8507,
    "248153007": 8507,  # SNOMED CT Male
    "ncit:c20197": 8507,
    "female": 8532,
    "f": 8532,
    "woman": 8532,
    "8532": 8532,
    "248152002": 8532,  # SNOMED CT Female
    "ncit:c16576": 8532,
    "eucaim:com1001370": 8532,  # EUCAIM Female (EUCAIM-Schema)
    "unknown": 0,
    "u": 0,
    "other": 0,
    "o": 0,
    "0": 0,
    "261665006": 0,  # SNOMED CT Unknown
    "74964007": 0,  # SNOMED CT Other
}
"""Words and terms for sex → OMOP gender concept id."""

MODALITIES: dict[str, str] = {
    "rid10312": "MR",  # RadLex magnetic resonance imaging
    "mri": "MR",
    "rid10321": "CT",  # RadLex computed tomography
    "rid10337": "PT",  # RadLex positron emission tomography
    "pet": "PT",
    "rid10326": "US",  # RadLex ultrasound
    "ultrasound": "US",
    "mammography": "MG",
}
"""RadLex terms and words → DICOM Modality; any DICOM code (``MR``, ``CT``) is accepted."""

BODY_PARTS: dict[str, str] = {
    "41216001": "PROSTATE",
    "76752008": "BREAST",
    "39607008": "LUNG",
    "51185008": "CHEST",
    "12738006": "BRAIN",
    "69536005": "HEAD",
    "818983003": "ABDOMEN",
    "113345001": "ABDOMEN",
    "816092008": "PELVIS",
    "12921003": "PELVIS",
    "10200004": "LIVER",
    "71854001": "COLON",
    "34402009": "RECTUM",
}
"""SNOMED CT body structures (DICOM CID 4031) → DICOM Body Part Examined."""

_DICOM_CODE = re.compile(r"[A-Z0-9_ ]{1,16}")


def _as_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected {what}, got {json.dumps(value)[:40]}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"expected {what}, got an empty string")
    return text


def _gender(value: Any) -> int:
    text = _strip_prefix(_as_text(value, "a sex")).lower()
    if text not in GENDERS:
        raise ValueError(
            f"{json.dumps(value)[:40]} is not a sex; send male, female or unknown (or "
            "SNOMEDCT248153007, SNOMEDCT248152002, 8507, 8532)"
        )
    return GENDERS[text]


def _modality(value: Any) -> str:
    text = _as_text(value, "a modality")
    mapped = MODALITIES.get(text.lower())
    if mapped:
        return mapped
    if not _DICOM_CODE.fullmatch(text.upper()):
        raise ValueError(
            f"{json.dumps(value)[:40]} is not a modality; send a DICOM code (MR, CT, PT, US) "
            "or a RadLex term (RID10312 for MR)"
        )
    return text.upper()


def _body_part(value: Any) -> str:
    text = _as_text(value, "a body part")
    code = _strip_prefix(text)
    if code in BODY_PARTS:
        return BODY_PARTS[code]
    if code.isdigit():
        raise ValueError(
            f"SNOMED CT {code} is not a body part we map; send a DICOM Body Part Examined "
            f"(PROSTATE, BREAST, ...) or one of SNOMEDCT{', SNOMEDCT'.join(BODY_PARTS)}"
        )
    return text.upper().replace(" ", "")


def _manufacturer(value: Any) -> str:
    return _as_text(value, "a manufacturer name")


def _choice(options: Mapping[str, str], what: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _as_text(value, what).lower()
        if text not in options:
            raise ValueError(
                f"{json.dumps(value)[:40]} is not a {what}; send one of "
                + ", ".join(sorted(set(options.values())))
            )
        return options[text]

    return parse


_LABELS = {label.value.lower(): label.value for label in SeriesLabel}
_ORIENTATIONS = {o.value: o.value for o in Orientation}
_DECISIONS = {d.value: d.value for d in Decision} | {
    "approved": "approve",
    "quarantined": "quarantine",
    "excluded": "exclude",
}


def _diagnosis(value: Any) -> ConceptRef:
    if isinstance(value, int) and not isinstance(value, bool):
        return ConceptRef(concept_id=value)
    text = _as_text(value, "a diagnosis code")
    snomed = _strip_prefix(text)
    if snomed != text.strip() or text.lower().startswith("snomed"):
        return ConceptRef(code=snomed, vocabulary_id="SNOMED")
    found = re.fullmatch(r"(?i)omop:(\d+)", text)
    if found:
        return ConceptRef(concept_id=int(found.group(1)))
    found = re.fullmatch(r"(?i)(icd10(?:cm)?|icd-?o-?3|ncit):(.+)", text)
    if found:
        vocabulary = {"icd10": "ICD10", "icd10cm": "ICD10CM", "ncit": "NCIt"}.get(
            found.group(1).lower().replace("-", ""), "ICDO3"
        )
        return ConceptRef(code=found.group(2), vocabulary_id=vocabulary)
    return ConceptRef(code=text)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0"):
        return False
    raise ValueError(f"{json.dumps(value)[:40]} is not true or false")


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{json.dumps(value)} is not a number")
    if isinstance(value, int | float):
        number: float | int = value
    elif isinstance(value, str):
        text = value.strip()
        duration = re.fullmatch(r"(?i)P(\d+)Y", text)  # Beacon ages: P70Y
        try:
            number = int(duration.group(1)) if duration else float(text)
        except ValueError:
            raise ValueError(f"{json.dumps(value)[:40]} is not a number") from None
    else:
        raise ValueError(f"{json.dumps(value)[:40]} is not a number")
    if isinstance(number, float):
        if not math.isfinite(number):
            raise ValueError(f"{json.dumps(value)[:40]} is not a finite number")
        if number.is_integer():
            number = int(number)
    return number


def _variable_value(value: Any) -> float | int | str:
    if isinstance(value, bool):
        raise ValueError("a clinical variable compares numbers or codes, not true/false")
    if isinstance(value, int | float):
        return _number(value)
    return _as_text(value, "a number or a code")


# -- the key registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySpec:
    """A query key: what it reads, its names, and how its values are read."""

    name: str
    field: Field
    kind: Kind
    parse: Callable[[Any], Any]
    aliases: tuple[str, ...] = ()
    send: str = ""
    """What to send, for messages."""


_SPECS = (
    KeySpec(
        "gender",
        Field.GENDER,
        Kind.CODE,
        _gender,
        ("sex", "SNOMEDCT263495000"),
        "male, female or unknown (or SNOMED CT / OMOP terms)",
    ),
    KeySpec("year_of_birth", Field.YEAR_OF_BIRTH, Kind.NUMBER, _number, (), "a year"),
    KeySpec(
        "diagnosis",
        Field.DIAGNOSIS,
        Kind.CODE,
        _diagnosis,
        ("SNOMEDCT439401001", "condition"),
        "an OMOP concept id (number), SNOMEDCT<code>, ICD10:<code> or the code as submitted",
    ),
    KeySpec(
        "age_at_diagnosis",
        Field.AGE_AT_DIAGNOSIS,
        Kind.NUMBER,
        _number,
        ("age",),
        "years, e.g. BETWEEN {min: 50, max: 70}",
    ),
    KeySpec("age_at_imaging", Field.AGE_AT_IMAGING, Kind.NUMBER, _number, (), "years"),
    KeySpec(
        "modality",
        Field.MODALITY,
        Kind.CODE,
        _modality,
        ("RID10311",),
        "a DICOM modality (MR, CT, PT) or RadLex term (RID10312)",
    ),
    KeySpec(
        "body_part",
        Field.BODY_PART,
        Kind.CODE,
        _body_part,
        ("bodyPart", "SNOMEDCT123037004", "body_part_examined"),
        "a DICOM Body Part Examined (PROSTATE) or SNOMED CT body structure",
    ),
    KeySpec(
        "manufacturer",
        Field.MANUFACTURER,
        Kind.CODE,
        _manufacturer,
        ("C25392",),
        "a manufacturer name (Siemens, GE, Philips)",
    ),
    KeySpec(
        "series_label",
        Field.SERIES_LABEL,
        Kind.CODE,
        _choice(_LABELS, "series label"),
        ("label", "sequence"),
        ", ".join(label.value for label in SeriesLabel),
    ),
    KeySpec(
        "orientation",
        Field.ORIENTATION,
        Kind.CODE,
        _choice(_ORIENTATIONS, "orientation"),
        ("plane",),
        "axial, coronal, sagittal or oblique",
    ),
    KeySpec("is3d", Field.IS3D, Kind.BOOLEAN, _boolean, ("3d",), "true or false"),
    KeySpec("contrast", Field.CONTRAST, Kind.BOOLEAN, _boolean, (), "true or false"),
    KeySpec(
        "curation_decision",
        Field.CURATION_DECISION,
        Kind.CODE,
        _choice(_DECISIONS, "curation decision"),
        ("decision",),
        "approve, quarantine, exclude or pending",
    ),
)

KEYS: dict[str, KeySpec] = {
    name.lower(): spec for spec in _SPECS for name in (spec.name, *spec.aliases)
}
"""Every key and alias (lower case) → its spec. ``<form>.<variable>`` keys are extra."""

_VARIABLE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}\.[A-Za-z][A-Za-z0-9_]{0,31}")


def valid_keys() -> str:
    """The keys to list in messages."""
    return ", ".join(spec.name for spec in _SPECS) + ", or a clinical <form>.<variable>"


def _spec(key: Any, where: str) -> KeySpec:
    if not isinstance(key, str) or not key.strip():
        raise InvalidQuery(f'{where}: a condition needs a "key"; valid keys: {valid_keys()}')
    found = KEYS.get(key.strip().lower())
    if found is not None:
        return found
    if _VARIABLE_KEY.fullmatch(key.strip()):
        name = key.strip().lower()
        return KeySpec(name, Field.VARIABLE, Kind.VARIABLE, _variable_value, (), "a number or code")
    raise InvalidQuery(f"{where}: unknown key {key[:64]!r}; valid keys: {valid_keys()}")


def _values(spec: KeySpec, op: Op, value: Any, where: str) -> tuple[Any, ...]:
    """The normalised values of a condition (see :class:`Criterion`)."""
    about = f"{where}: key {spec.name!r} with {op.value}"
    if op not in _OPS[spec.kind]:
        allowed = ", ".join(o.value for o in _OPS[spec.kind])
        raise InvalidQuery(f"{about}: not applicable to this key; use {allowed}")
    try:
        if op is Op.BETWEEN:
            if not isinstance(value, Mapping) or not ({"min", "max"} & set(value)):
                raise ValueError('send {"min": <number>, "max": <number>} (either may be left out)')
            low, high = value.get("min"), value.get("max")
            if isinstance(low, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", low):
                raise ValueError(
                    "date ranges are not supported (dates are shifted per patient); "
                    "use ages (age_at_diagnosis, age_at_imaging)"
                )
            pair = (
                None if low is None else _number(low),
                None if high is None else _number(high),
            )
            if pair[0] is not None and pair[1] is not None and pair[0] > pair[1]:
                raise ValueError(f"min {pair[0]} is above max {pair[1]}")
            return pair
        if op in (Op.LOWER_THAN, Op.GREATER_THAN):
            return (_number(value),)
        items = list(value) if isinstance(value, list) else [value]
        if not items:
            raise ValueError("an empty list matches nothing; send at least one value")
        if op is Op.CONTAINS:
            if len(items) != 1 or not isinstance(items[0], str):
                raise ValueError("CONTAINS takes one string")
            return (
                items[0].strip()
                if spec.field is not Field.DIAGNOSIS
                else ConceptRef(code=items[0].strip()),
            )
        parsed = [spec.parse(item) for item in items]
        if spec.kind is Kind.VARIABLE and len({isinstance(p, str) for p in parsed}) > 1:
            raise ValueError("mix of numbers and codes; send one kind")
        return tuple(dict.fromkeys(parsed))
    except ValueError as exc:
        raise InvalidQuery(f"{about}: {exc}; expected {spec.send}") from None


def criterion(key: Any, op: Any, value: Any, where: str = "condition") -> Criterion:
    """One condition from its parts (raises :class:`InvalidQuery` naming ``where``)."""
    spec = _spec(key, where)
    try:
        condition_type = Op(str(op).upper())
    except ValueError:
        raise InvalidQuery(
            f"{where}: unknown condition type {str(op)[:32]!r}; use one of "
            + ", ".join(o.value for o in Op)
        ) from None
    values = _values(spec, condition_type, value, where)
    variable = spec.name if spec.field is Field.VARIABLE else None
    return Criterion(spec.field, condition_type, values, variable)


# -- Lens / EUCAIM AST -----------------------------------------------------------------------


class _Budget:
    def __init__(self) -> None:
        self.conditions = 0


def _lens_node(data: Any, where: str, depth: int, budget: _Budget) -> Operation | Criterion:
    if depth > MAX_DEPTH:
        raise InvalidQuery(f"{where}: the tree is deeper than {MAX_DEPTH} levels; flatten it")
    if not isinstance(data, Mapping):
        raise InvalidQuery(
            f"{where}: expected an object, either an operation "
            '{"operand": "AND"|"OR", "children": [...]} or a condition '
            '{"key": ..., "type": ..., "value": ...}'
        )
    if "operand" in data:
        operand = str(data.get("operand", "")).upper()
        if operand not in ("AND", "OR"):
            raise InvalidQuery(
                f"{where}.operand: must be AND or OR, not {str(data['operand'])[:16]!r}"
            )
        children = data.get("children")
        if not isinstance(children, list):
            raise InvalidQuery(f"{where}.children: expected a list of operations or conditions")
        return Operation(
            Operand(operand),
            tuple(
                _lens_node(child, f"{where}.children[{i}]", depth + 1, budget)
                for i, child in enumerate(children)
            ),
        )
    if "key" in data:
        budget.conditions += 1
        if budget.conditions > MAX_CONDITIONS:
            raise InvalidQuery(f"{where}: more than {MAX_CONDITIONS} conditions; split the query")
        if "type" not in data or "value" not in data:
            raise InvalidQuery(f'{where}: a condition needs "key", "type" and "value"')
        return criterion(data["key"], data["type"], data["value"], where)
    raise InvalidQuery(
        f'{where}: neither an operation (with "operand") nor a condition (with "key")'
    )


def _stratify(value: Any, where: str) -> tuple[Stratum, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidQuery(f'{where}: expected a list of keys, e.g. ["gender", "age_decade"]')
    aliases = {"sex": "gender", "label": "series_label", "bodypart": "body_part"}
    found = []
    for item in value:
        name = aliases.get(item.strip().lower(), item.strip().lower())
        if name not in STRATA:
            raise InvalidQuery(
                f"{where}: cannot stratify by {item[:32]!r}; use {', '.join(STRATA)}"
            )
        found.append(Stratum(name))
    if len(set(found)) != len(found) or len(found) > MAX_STRATA_KEYS:
        raise InvalidQuery(f"{where}: at most {MAX_STRATA_KEYS} different keys")
    return tuple(found)


def parse_lens(data: Any) -> CohortQuery:
    """A Lens/EUCAIM AST, with or without its ``{"id", "ast"}`` envelope, + ``stratify``."""
    if not isinstance(data, Mapping):
        raise InvalidQuery(
            'query: expected a JSON object {"ast": {"operand": ..., "children": [...]}}'
        )
    unknown = set(data) - {"id", "ast", "stratify", "operand", "children", "granularity"}
    if unknown:
        raise InvalidQuery(
            f"query: unknown field {sorted(unknown)[0]!r}; a query has ast (or operand and "
            "children), an optional id and stratify"
        )
    budget = _Budget()
    if "ast" in data:
        root = _lens_node(data["ast"], "ast", 0, budget)
    elif "operand" in data:
        root = _lens_node(
            {"operand": data["operand"], "children": data.get("children")}, "query", 0, budget
        )
    else:
        raise InvalidQuery('query: no "ast"; send {"ast": {"operand": "AND", "children": [...]}}')
    tree = root if isinstance(root, Operation) else Operation(Operand.AND, (root,))
    query_id = data.get("id")
    granularity = _granularity(data.get("granularity", "count"), "granularity")
    return CohortQuery(
        tree=tree,
        stratify=_stratify(data.get("stratify"), "stratify"),
        granularity=granularity,
        format=QueryFormat.LENS,
        query_id=str(query_id)[:64] if query_id is not None else None,
    )


# -- Beacon v2 -------------------------------------------------------------------------------

_BEACON_OPERATORS = {"=": Op.EQUALS, "!": Op.NOT_EQUALS, "<": Op.LOWER_THAN, ">": Op.GREATER_THAN}


def _granularity(value: Any, where: str) -> Granularity:
    text = str(value).strip().lower()
    if text == "record":
        raise InvalidQuery(
            f"{where}: record-level answers are never given by a node; ask for count or boolean"
        )
    try:
        return Granularity(text)
    except ValueError:
        raise InvalidQuery(f"{where}: must be boolean, count or aggregated") from None


def _ontology_filter(term: str, where: str) -> Criterion:
    """An ontology term: sex, modality, body part if we know it, else a diagnosis."""
    lowered = term.strip().lower()
    code = _strip_prefix(term)
    if lowered in GENDERS or code in GENDERS:
        return criterion("gender", "EQUALS", term, where)
    if lowered.removeprefix("radlex:") in MODALITIES:
        return criterion("modality", "EQUALS", lowered.removeprefix("radlex:"), where)
    if code in BODY_PARTS and code != term.strip():
        return criterion("body_part", "EQUALS", term, where)
    return criterion("diagnosis", "EQUALS", term, where)


def _beacon_filter(item: Any, where: str) -> Criterion:
    if isinstance(item, str):
        item = {"id": item}
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise InvalidQuery(f'{where}: a filter is an object with an "id" (a term or a key)')
    term = item["id"]
    if "operator" in item or "value" in item:
        operator = str(item.get("operator", "="))
        value = item.get("value")
        if value is None:
            raise InvalidQuery(f'{where}: an alphanumeric filter needs a "value"')
        if operator in ("<=", ">="):
            bound = {"max": value} if operator == "<=" else {"min": value}
            return criterion(term, "BETWEEN", bound, where)
        if operator not in _BEACON_OPERATORS:
            raise InvalidQuery(f"{where}.operator: use one of =, !, <, >, <=, >=")
        if (
            isinstance(value, str)
            and value.startswith("%")
            and value.endswith("%")
            and len(value) > 2
        ):
            return criterion(term, "CONTAINS", value.strip("%"), where)
        return criterion(term, _BEACON_OPERATORS[operator].value, value, where)
    if ":" in term and term.split(":", 1)[0].lower() in KEYS:  # custom filter key:value
        key, value = term.split(":", 1)
        return criterion(key, "EQUALS", value, where)
    return _ontology_filter(term, where)


def parse_beacon(data: Any) -> CohortQuery:
    """A Beacon v2 request body: ``query.filters`` (AND-ed) and ``requestedGranularity``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("query", {}), Mapping):
        raise InvalidQuery('request: expected {"query": {"filters": [...], ...}}')
    query = data.get("query", {})
    filters = query.get("filters", [])
    if not isinstance(filters, list):
        raise InvalidQuery("query.filters: expected a list of filters")
    if len(filters) > MAX_CONDITIONS:
        raise InvalidQuery(f"query.filters: more than {MAX_CONDITIONS} filters")
    criteria = tuple(_beacon_filter(item, f"query.filters[{i}]") for i, item in enumerate(filters))
    ids = tuple(str(item.get("id")) if isinstance(item, Mapping) else str(item) for item in filters)
    return CohortQuery(
        tree=Operation(Operand.AND, criteria),
        granularity=_granularity(
            query.get("requestedGranularity", "count"), "query.requestedGranularity"
        ),
        format=QueryFormat.BEACON,
        filters=ids,
    )


def parse_query(data: Any) -> CohortQuery:
    """A Lens AST (``ast`` or ``operand``) or a Beacon body (``query``/``meta``), by shape."""
    if isinstance(data, Mapping) and ("query" in data or "meta" in data) and "ast" not in data:
        return parse_beacon(data)
    return parse_lens(data)


__all__ = [
    "BODY_PARTS",
    "GENDERS",
    "KEYS",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MODALITIES",
    "CohortQuery",
    "Granularity",
    "KeySpec",
    "Kind",
    "QueryFormat",
    "criterion",
    "parse_beacon",
    "parse_lens",
    "parse_query",
    "valid_keys",
]
