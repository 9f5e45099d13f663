"""Clinical form definitions: YAML files parsed strictly into :class:`~.models.Form` objects.

A form file (format documented in ``data/forms/README.md``) names its variables (type, unit,
code list, range, pattern, required, conditional rules, OMOP target) and its cross-field and
cross-form :class:`~.models.Rule` s. Parsing is strict: an unknown key, a value of the wrong
type, a reference to a variable that does not exist, a code list on a variable that is not a
code, a duplicate name, ``minimum > maximum``... raise :class:`~biobank.errors.InvalidInput`
naming the file, the variable and what to fix — a data manager reads these messages, not a
stack trace.

Built-in forms ship as package data (``biobank/clinical/data/forms/*.yaml``); a node may add
its own files or folders through a :class:`FormRegistry`, which also checks that every
``<form>.<variable>`` a rule refers to exists.

A rule's right-hand side is a small expression (see :func:`parse_operands`): a variable of
the form, a number, a sum/difference of those (``gleason_primary + gleason_secondary``), or a
single ``<form>.<variable>`` reference to the same patient's stored records of another form.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

from biobank.clinical.models import (
    IDENTITY_FIELDS,
    Code,
    Comparison,
    Condition,
    Form,
    OmopTable,
    OmopTarget,
    Operator,
    Rule,
    Severity,
    Variable,
    VariableType,
)
from biobank.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

_FORM_KEYS = ("name", "version", "title", "description", "key", "date", "variables", "rules")
_VARIABLE_KEYS = (
    "name",
    "type",
    "label",
    "description",
    "unit",
    "codes",
    "minimum",
    "maximum",
    "pattern",
    "required",
    "required_when",
    "allowed_when",
    "omop",
)
_CODE_KEYS = ("value", "label", "concept", "absent")
_OMOP_KEYS = ("table", "concept", "column", "date", "event", "unit")
_RULE_KEYS = ("name", "left", "op", "right", "when", "message", "hint", "severity")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_CONCEPT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9 _-]*:\S.*\Z")
_TERM = re.compile(
    r"\s*(?:(?P<sign>[+-])\s*)?"
    r"(?P<term>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?|\d+(?:\.\d+)?)\s*"
)

_NUMERIC = (VariableType.INTEGER, VariableType.NUMBER)
_PERSON_COLUMNS = {
    "gender_concept_id": VariableType.CODE,
    "year_of_birth": VariableType.DATE,
    "person_source_value": VariableType.STRING,
}
_DEATH_COLUMNS = {"death_date": VariableType.DATE, "cause_concept_id": VariableType.CODE}

_YAML_BOOL_HINT = (
    "YAML reads unquoted yes/no/on/off/true/false as booleans: put the code in quotes, e.g. 'no'"
)


@dataclass(frozen=True)
class Operand:
    """One term of a rule's right-hand side: ``sign`` times a variable or a number."""

    sign: int
    variable: str | None = None
    """A variable of the form itself (``form`` is ``None``) or of ``form``."""
    form: str | None = None
    number: float | int | None = None

    def __str__(self) -> str:
        """The term as written (without its sign)."""
        if self.variable is None:
            return f"{self.number}"
        return f"{self.form}.{self.variable}" if self.form else self.variable


@cache
def parse_operands(text: str) -> tuple[Operand, ...]:
    """Split a rule's ``right`` into signed terms.

    Raises
    ------
    InvalidInput
        When ``text`` is not ``term (+|- term)*`` with terms ``variable``,
        ``form.variable`` or a non-negative number.
    """
    operands: list[Operand] = []
    position = 0
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None or match.end() == position or (operands and not match["sign"]):
            raise InvalidInput(
                f"cannot read {text!r}: write a variable, <form>.<variable>, a number, "
                "or terms joined by + and -"
            )
        sign = -1 if match["sign"] == "-" else 1
        term = match["term"]
        if term[0].isdigit():
            number: float | int = float(term) if "." in term else int(term)
            operands.append(Operand(sign=sign, number=number))
        elif "." in term:
            form, variable = term.split(".", 1)
            operands.append(Operand(sign=sign, variable=variable, form=form))
        else:
            operands.append(Operand(sign=sign, variable=term))
        position = match.end()
    if not operands:
        raise InvalidInput("the right-hand side is empty: name a variable or a number")
    return tuple(operands)


class _Where:
    """Raises :class:`InvalidInput` prefixed with the file and the place in it."""

    def __init__(self, source: str, place: str = "") -> None:
        self.source = source
        self.place = place

    def at(self, place: str) -> _Where:
        return _Where(self.source, f"{self.place}: {place}" if self.place else place)

    def fail(self, message: str) -> NoReturn:
        where = f"{self.source}: {self.place}" if self.place else self.source
        raise InvalidInput(f"{where}: {message}")


def _check_keys(where: _Where, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, allowed, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        where.fail(f"unknown key {key!r}{guess}; allowed keys: {', '.join(allowed)}")


def _mapping(where: _Where, data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        where.fail(f"{what} must be a mapping (key: value), not {_kind(data)}")
    return data


def _list(where: _Where, data: Any, what: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        where.fail(f"{what} must be a list, not {_kind(data)}")
    return data


def _text(where: _Where, data: Any, what: str, *, required: bool = False) -> str:
    if data is None and not required:
        return ""
    if not isinstance(data, str) or (required and not data.strip()):
        what_kind = "a non-empty text" if required else "text"
        where.fail(f"{what} must be {what_kind}, not {_kind(data)}")
    return data.strip()


def _kind(data: Any) -> str:
    if data is None:
        return "empty"
    if isinstance(data, bool):
        return f"the boolean {data}"
    if isinstance(data, Mapping):
        return "a mapping"
    if isinstance(data, list):
        return "a list"
    return f"{type(data).__name__} {data!r}"


def _number(where: _Where, data: Any, what: str) -> float | None:
    if data is None:
        return None
    if isinstance(data, bool) or not isinstance(data, int | float) or not math.isfinite(data):
        where.fail(f"{what} must be a number, not {_kind(data)}")
    return data


def _concept_key(where: _Where, data: Any, what: str) -> str | None:
    if data is None:
        return None
    if not isinstance(data, str) or not _CONCEPT_KEY.match(data):
        where.fail(
            f"{what} must be a concept key '<VOCABULARY>:<code>' such as 'LOINC:2857-1' "
            f"or 'SNOMED:399068003', not {_kind(data)}; leave it out when unsure"
        )
    return data


def _parse_codes(where: _Where, data: Any) -> tuple[Code, ...]:
    codes: list[Code] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(_list(where, data, "codes")):
        here = where.at(f"code #{i + 1}")
        entry: Mapping[str, Any] = item if isinstance(item, Mapping) else {"value": item}
        _check_keys(here, entry, _CODE_KEYS)
        raw = entry.get("value")
        if isinstance(raw, bool):
            here.fail(f"value is the boolean {raw}; {_YAML_BOOL_HINT}")
        if isinstance(raw, int):
            raw = str(raw)
        value = _text(here, raw, "value", required=True)
        if value.lower() in seen:
            here.fail(
                f"code {value!r} is listed twice (codes match case-insensitively, "
                f"see {seen[value.lower()]!r}); remove one"
            )
        seen[value.lower()] = value
        codes.append(
            Code(
                value=value,
                label=_text(here, entry.get("label"), "label"),
                concept=_concept_key(here, entry.get("concept"), "concept"),
                absent=_absent(here, entry.get("absent", False)),
            )
        )
    return tuple(codes)


def _absent(where: _Where, raw: Any) -> bool:
    if not isinstance(raw, bool):
        where.fail(
            f"absent is {raw!r}; write absent: true (the code says the event did not happen)"
        )
    return raw


def _condition_value(where: _Where, variable: Variable, raw: Any) -> Any:
    """Type a condition's value as the field's values will be typed."""
    kind = variable.type
    if kind is VariableType.CODE:
        if isinstance(raw, bool):
            where.fail(f"the value is the boolean {raw}; {_YAML_BOOL_HINT}")
        text = str(raw) if isinstance(raw, int | str) else None
        code = variable.code(text) if text is not None else None
        if code is None:
            allowed = ", ".join(c.value for c in variable.codes)
            where.fail(f"{raw!r} is not a code of {variable.name}; its codes are {allowed}")
        return code.value
    if kind is VariableType.BOOLEAN:
        if not isinstance(raw, bool):
            where.fail(f"{variable.name} is a boolean: compare it with true or false")
        return raw
    if kind in _NUMERIC:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            where.fail(f"{variable.name} is a number: compare it with a number, not {raw!r}")
        return raw
    if kind is VariableType.DATE:
        if isinstance(raw, dt.date):  # YAML reads unquoted 2020-01-01 as a date
            return raw
        try:
            return dt.date.fromisoformat(str(raw))
        except ValueError:
            where.fail(f"{variable.name} is a date: compare it with YYYY-MM-DD, not {raw!r}")
    return str(raw)


def _parse_conditions(
    where: _Where, data: Any, variables: Mapping[str, Variable], owner: str | None
) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for i, item in enumerate(_list(where, data, "the conditions")):
        here = where.at(f"condition #{i + 1}")
        entry = _mapping(here, item, "a condition")
        operators = [k for k in entry if k != "field"]
        allowed = ("field", *(o.value for o in Operator))
        _check_keys(here, entry, allowed)
        if len(operators) != 1:
            here.fail(
                "a condition is {field: <variable>, <test>: <value>} with exactly one test "
                f"among {', '.join(o.value for o in Operator)}"
            )
        name = _text(here, entry.get("field"), "field", required=True)
        if name == owner:
            here.fail(f"{name} cannot depend on itself; name another variable in 'field'")
        variable = variables.get(name)
        if variable is None:
            _unknown_variable(here, name, variables)
        op = Operator(operators[0])
        raw = entry[operators[0]]
        value: Any
        if op in (Operator.PRESENT, Operator.ABSENT):
            if raw is not True:
                here.fail(f"write '{op.value}: true' (the test takes no other value)")
            value = None
        elif op in (Operator.IN, Operator.NOT_IN):
            if not isinstance(raw, list) or not raw:
                here.fail(f"'{op.value}' takes a non-empty list of values")
            value = tuple(_condition_value(here, variable, v) for v in raw)
        else:
            if isinstance(raw, list | Mapping) or raw is None:
                here.fail(f"'{op.value}' takes one value; use 'in' for a list")
            value = _condition_value(here, variable, raw)
        conditions.append(Condition(field=name, op=op, value=value))
    return tuple(conditions)


def _unknown_variable(where: _Where, name: str, variables: Iterable[str]) -> NoReturn:
    names = list(variables)
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    where.fail(f"there is no variable {name!r} in this form; {guess}known: {', '.join(names)}")


def _parse_omop(
    where: _Where, data: Any, variable: Variable, variables: Mapping[str, Variable]
) -> OmopTarget:
    here = where.at("omop")
    entry = _mapping(here, data, "omop")
    _check_keys(here, entry, _OMOP_KEYS)
    raw_table: Any = entry.get("table")
    try:
        table = OmopTable(raw_table)
    except ValueError:
        here.fail(
            f"table {raw_table!r} is not an OMOP table we fill; use one of "
            f"{', '.join(t.value for t in OmopTable)}"
        )
    column = _text(here, entry.get("column"), "column") or None
    columns = {OmopTable.PERSON: _PERSON_COLUMNS, OmopTable.DEATH: _DEATH_COLUMNS}.get(table)
    if columns is not None:
        if column not in columns:
            here.fail(
                f"a {table.value} target needs 'column', one of {', '.join(columns)} "
                f"(got {column!r})"
            )
        if variable.type is not columns[column]:
            here.fail(
                f"{table.value}.{column} takes a {columns[column].value} variable; "
                f"{variable.name} is a {variable.type.value}"
            )
    elif column is not None:
        here.fail(
            "'column' is only used for person and death targets; event tables take the value "
            "from the variable's type (leave 'column' out)"
        )
    date = _text(here, entry.get("date"), "date") or None
    if date is not None:
        target = variables.get(date)
        if target is None:
            _unknown_variable(here.at("date"), date, variables)
        if target.type is not VariableType.DATE:
            here.fail(f"date must name a date variable; {date} is a {target.type.value}")
    event = _text(here, entry.get("event"), "event") or None
    if event is not None and event not in variables:
        _unknown_variable(here.at("event"), event, variables)
    return OmopTarget(
        table=table,
        concept=_concept_key(here, entry.get("concept"), "concept"),
        column=column,
        date=date,
        event=event,
        unit=_concept_key(here, entry.get("unit"), "unit"),
    )


def _parse_variable_shape(where: _Where, entry: Mapping[str, Any]) -> Variable:
    """Everything that does not refer to other variables."""
    name = _text(where, entry.get("name"), "name", required=True)
    if name in IDENTITY_FIELDS:
        where.fail(
            f"{name} is an identity field every record carries; forms do not declare it "
            "(remove the variable)"
        )
    if not _NAME.match(name):
        where.fail(
            f"name {name!r} must be lower-case letters, digits and _, starting with a letter"
        )
    raw_type: Any = entry.get("type")
    try:
        kind = VariableType(raw_type)
    except ValueError:
        where.fail(
            f"type {raw_type!r} is not a variable type; use one of "
            f"{', '.join(t.value for t in VariableType)}"
        )
    codes = _parse_codes(where, entry.get("codes"))
    if kind is VariableType.CODE and not codes:
        where.fail("a code variable needs a non-empty 'codes' list")
    if codes and kind is not VariableType.CODE:
        where.fail(f"'codes' is only for code variables; this one is a {kind.value}")
    minimum = _number(where, entry.get("minimum"), "minimum")
    maximum = _number(where, entry.get("maximum"), "maximum")
    if (minimum is not None or maximum is not None) and kind not in _NUMERIC:
        where.fail(f"minimum/maximum are only for integer and number variables, not {kind.value}")
    if minimum is not None and maximum is not None and minimum > maximum:
        where.fail(f"minimum ({minimum}) is greater than maximum ({maximum}); swap or fix them")
    unit = _text(where, entry.get("unit"), "unit") or None
    if unit is not None and kind not in _NUMERIC:
        where.fail(f"'unit' is only for integer and number variables, not {kind.value}")
    pattern = entry.get("pattern")
    if pattern is not None:
        if kind is not VariableType.STRING:
            where.fail(f"'pattern' is only for string variables, not {kind.value}")
        pattern = _text(where, pattern, "pattern", required=True)
        try:
            re.compile(pattern)
        except re.error as exc:
            where.fail(f"pattern is not a valid regular expression ({exc})")
    required = entry.get("required", False)
    if not isinstance(required, bool):
        where.fail(f"required must be true or false, not {_kind(required)}")
    return Variable(
        name=name,
        type=kind,
        label=_text(where, entry.get("label"), "label"),
        description=_text(where, entry.get("description"), "description"),
        unit=unit,
        codes=codes,
        minimum=minimum,
        maximum=maximum,
        pattern=pattern,
        required=required,
    )


def _parse_rule(
    where: _Where, data: Any, variables: Mapping[str, Variable], form_name: str
) -> Rule:
    entry = _mapping(where, data, "a rule")
    _check_keys(where, entry, _RULE_KEYS)
    name = _text(where, entry.get("name"), "name", required=True)
    if not _RULE_NAME.match(name):
        where.fail(f"rule name {name!r} must be lower-case letters, digits, '-', '_' or '.'")
    here = where.at(f"rule {name!r}")
    left_name = _text(here, entry.get("left"), "left", required=True)
    left = variables.get(left_name)
    if left is None:
        _unknown_variable(here.at("left"), left_name, variables)
    raw_op: Any = entry.get("op")
    try:
        op = Comparison(raw_op)
    except ValueError:
        here.fail(f"op {raw_op!r} is not a comparison; use one of <, <=, =, >=, >")
    raw_right = entry.get("right")
    if isinstance(raw_right, int | float) and not isinstance(raw_right, bool):
        raw_right = str(raw_right)
    right = _text(here, raw_right, "right", required=True)
    try:
        operands = parse_operands(right)
    except InvalidInput as exc:
        here.fail(f"right: {exc}")
    if op is not Comparison.EQ and left.type not in (*_NUMERIC, VariableType.DATE):
        here.fail(f"{op.value} compares numbers or dates; {left_name} is a {left.type.value}")
    for operand in operands:
        if operand.form is not None and operand.form != form_name:
            if len(operands) > 1:
                here.fail(
                    f"{operand} refers to another form: such a reference must stand alone "
                    "on the right (no + or -)"
                )
            continue
        if operand.variable is not None and operand.variable not in variables:
            _unknown_variable(here.at("right"), operand.variable, variables)
        other = variables[operand.variable] if operand.variable else None
        _check_operand_type(here, left, other, operands)
    severity_raw = entry.get("severity", Severity.ERROR.value)
    try:
        severity = Severity(severity_raw)
    except ValueError:
        here.fail(f"severity {severity_raw!r} must be 'error' or 'warning'")
    return Rule(
        name=name,
        left=left_name,
        op=op,
        right=right,
        when=_parse_conditions(here.at("when"), entry.get("when"), variables, None),
        message=_text(here, entry.get("message"), "message"),
        hint=_text(here, entry.get("hint"), "hint"),
        severity=severity,
    )


def _check_operand_type(
    where: _Where, left: Variable, other: Variable | None, operands: tuple[Operand, ...]
) -> None:
    """``other`` is the operand's variable (``None`` for a number)."""
    if len(operands) > 1 or other is None:
        if left.type not in _NUMERIC or (other is not None and other.type not in _NUMERIC):
            what = "numbers and + or -" if len(operands) > 1 else "a number"
            where.fail(
                f"{left.name} is a {left.type.value}: it cannot be compared with {what}; "
                "only integer and number variables can"
            )
        return
    if not compatible(left.type, other.type):
        where.fail(
            f"{left.name} is a {left.type.value} and {other.name} a {other.type.value}: "
            "they cannot be compared"
        )


def compatible(left: VariableType, right: VariableType) -> bool:
    """Whether values of these two types can be compared by a rule."""
    return left == right or (left in _NUMERIC and right in _NUMERIC)


def parse_form(data: dict[str, Any], source: str) -> Form:
    """Build a :class:`Form` from a loaded YAML mapping; ``source`` names it in messages.

    Raises
    ------
    InvalidInput
        Naming ``source``, the variable or rule, and what to fix.
    """
    where = _Where(source)
    top = _mapping(where, data, "a form definition")
    _check_keys(where, top, _FORM_KEYS)
    name = _text(where, top.get("name"), "name", required=True)
    if not _NAME.match(name):
        where.fail(
            f"form name {name!r} must be lower-case letters, digits and _, starting with a letter"
        )
    version = top.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        where.fail(f"version must be a positive integer, not {_kind(version)}")
    raw_variables = _list(where, top.get("variables"), "variables")
    if not raw_variables:
        where.fail("'variables' must list at least one variable")

    # First pass: the variables themselves; second pass: what refers to other variables.
    shapes: dict[str, Variable] = {}
    entries: list[tuple[_Where, Mapping[str, Any]]] = []
    for i, item in enumerate(raw_variables):
        here = where.at(f"variable #{i + 1}")
        entry = _mapping(here, item, "a variable")
        if isinstance(entry.get("name"), str):
            here = where.at(f"variable {entry['name']!r}")
        _check_keys(here, entry, _VARIABLE_KEYS)
        variable = _parse_variable_shape(here, entry)
        if variable.name in shapes:
            here.fail(f"variable {variable.name!r} is defined twice; rename or remove one")
        shapes[variable.name] = variable
        entries.append((here, entry))
    variables: list[Variable] = []
    for (here, entry), variable in zip(entries, shapes.values(), strict=True):
        required_when = _parse_conditions(
            here.at("required_when"), entry.get("required_when"), shapes, variable.name
        )
        allowed_when = _parse_conditions(
            here.at("allowed_when"), entry.get("allowed_when"), shapes, variable.name
        )
        if variable.required and required_when:
            here.fail("required is true, so required_when never applies; remove one of them")
        if variable.required and allowed_when:
            here.fail("a required variable cannot be allowed only sometimes; drop allowed_when")
        omop = entry.get("omop")
        variables.append(
            Variable(
                name=variable.name,
                type=variable.type,
                label=variable.label,
                description=variable.description,
                unit=variable.unit,
                codes=variable.codes,
                minimum=variable.minimum,
                maximum=variable.maximum,
                pattern=variable.pattern,
                required=variable.required,
                required_when=required_when,
                allowed_when=allowed_when,
                omop=None if omop is None else _parse_omop(here, omop, variable, shapes),
            )
        )

    key = tuple(
        _text(where, k, "a key entry", required=True) for k in _list(where, top.get("key"), "key")
    )
    for k in key:
        if k not in shapes:
            _unknown_variable(where.at("key"), k, shapes)
        if not shapes[k].required:
            where.fail(f"key variable {k!r} must be required: true (it identifies the record)")
    if len(set(key)) != len(key):
        where.fail("key lists a variable twice")
    date = _text(where, top.get("date"), "date") or None
    if date is not None:
        if date not in shapes:
            _unknown_variable(where.at("date"), date, shapes)
        if shapes[date].type is not VariableType.DATE:
            where.fail(f"date must name a date variable; {date} is a {shapes[date].type.value}")

    rules: list[Rule] = []
    for i, item in enumerate(_list(where, top.get("rules"), "rules")):
        rule = _parse_rule(where.at(f"rule #{i + 1}"), item, shapes, name)
        if any(r.name == rule.name for r in rules):
            where.fail(f"rule name {rule.name!r} is used twice; rule names must be unique")
        rules.append(rule)
    return Form(
        name=name,
        version=version,
        title=_text(where, top.get("title"), "title") or name,
        description=_text(where, top.get("description"), "description"),
        variables=tuple(variables),
        rules=tuple(rules),
        key=key,
        date=date,
        source=source,
    )


def parse_form_text(text: str, source: str) -> Form:
    """Parse the YAML text of a form definition (see :func:`parse_form`)."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise InvalidInput(
            f"{source}: not valid YAML{line} ({problem}); check indentation and quoting"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping with name, version and variables")
    return parse_form(data, source)


def load_form(path: Path) -> Form:
    """Read and parse the form definition at ``path``.

    Raises
    ------
    InvalidInput
        When the file cannot be read or is not a valid form definition.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{path}: cannot read the form definition ({exc.__class__.__name__}); "
            "check the path and that it is a UTF-8 YAML file"
        ) from exc
    return parse_form_text(text, str(path))


def _builtin_folder() -> Any:
    return resources.files("biobank.clinical").joinpath("data/forms")


def builtin_form_names() -> list[str]:
    """Names of the forms shipped with the package."""
    return sorted(
        p.name.removesuffix(".yaml")
        for p in _builtin_folder().iterdir()
        if p.name.endswith(".yaml")
    )


@cache
def builtin_form(name: str) -> Form:
    """Return the packaged form ``name``.

    Raises
    ------
    NotFound
        Listing the packaged forms.
    """
    names = builtin_form_names()
    if name not in names:
        raise NotFound(f"no built-in clinical form {name!r}; built-in forms are {', '.join(names)}")
    text = _builtin_folder().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    form = parse_form_text(text, f"built-in form {name}.yaml")
    if form.name != name:
        raise InvalidInput(f"built-in form {name}.yaml declares name {form.name!r}")
    return form


def check_references(forms: Mapping[str, Form]) -> None:
    """Check every ``<form>.<variable>`` a rule names exists with a comparable type.

    Raises
    ------
    InvalidInput
        Naming the form, the rule and the missing form or variable.
    """
    for form in forms.values():
        for rule in form.rules:
            left = form.variable(rule.left)
            for operand in parse_operands(rule.right):
                if operand.form is None or operand.variable is None:
                    continue
                where = _Where(form.source or form.name, f"rule {rule.name!r}")
                other = forms.get(operand.form)
                if other is None:
                    where.fail(
                        f"{operand} refers to form {operand.form!r}, which is not loaded; "
                        f"known forms: {', '.join(sorted(forms))}"
                    )
                target = other.variable(operand.variable)
                if target is None:
                    where.fail(
                        f"form {operand.form!r} has no variable {operand.variable!r}; "
                        f"its variables: {', '.join(v.name for v in other.variables)}"
                    )
                if left is not None and not compatible(left.type, target.type):
                    where.fail(
                        f"{left.name} is a {left.type.value} and {operand} a "
                        f"{target.type.value}: they cannot be compared"
                    )


class FormRegistry:
    """The forms a node knows: the built-in ones plus YAML files or folders it configures.

    Parameters
    ----------
    extra
        Files (``*.yaml``/``*.yml``) or folders of them, read in order.
    builtin
        Whether to include the packaged forms.

    Raises
    ------
    InvalidInput
        When a file is malformed, two definitions share a name, or a rule refers to a
        form or variable that is not loaded.
    """

    def __init__(self, extra: Iterable[Path] = (), *, builtin: bool = True) -> None:
        self._forms: dict[str, Form] = {}
        if builtin:
            for name in builtin_form_names():
                self._add(builtin_form(name))
        for path in extra:
            path = Path(path)
            if path.is_dir():
                files = sorted(
                    p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                )
                if not files:
                    logger.warning("form folder %s holds no .yaml file", path)
                for file in files:
                    self._add(load_form(file))
            else:
                self._add(load_form(path))
        check_references(self._forms)

    def _add(self, form: Form) -> None:
        existing = self._forms.get(form.name)
        if existing is not None:
            raise InvalidInput(
                f"form {form.name!r} is defined twice ({existing.source} and {form.source}); "
                "give one of them another name"
            )
        self._forms[form.name] = form

    def get(self, name: str) -> Form:
        """The form called ``name``.

        Raises
        ------
        NotFound
            Listing the known forms.
        """
        form = self._forms.get(name)
        if form is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"no clinical form {name!r}; known forms: {known}")
        return form

    def names(self) -> list[str]:
        """The known form names, sorted."""
        return sorted(self._forms)

    def __contains__(self, name: object) -> bool:
        return name in self._forms

    def __iter__(self) -> Iterator[Form]:
        return iter(self._forms[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._forms)


__all__ = [
    "FormRegistry",
    "Operand",
    "builtin_form",
    "builtin_form_names",
    "check_references",
    "compatible",
    "load_form",
    "parse_form",
    "parse_form_text",
    "parse_operands",
]
