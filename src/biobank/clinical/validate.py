"""Validation of clinical records against their form, with errors a data manager can act on.

Two phases (see :mod:`biobank.clinical.models` for why they are separate):

1. :func:`coerce_record` turns raw values — typed JSON values, or CSV strings where ``""``
   means missing — into typed :data:`~.models.Value` s, checking types, codes, ranges,
   patterns, required fields, unknown fields and the patient identity;
2. :func:`check_rules` checks the typed values: ``required_when``, ``allowed_when`` and the
   form's :class:`~.models.Rule` s, including rules against the same patient's stored
   records of other forms (looked up through ``others``).

:func:`validate_record` runs both. Nothing here raises on bad data: every problem of the
record becomes a :class:`~.models.ValidationIssue` naming the record, the field, the value as
submitted, the rule and what to do, so one bad field never hides another. Issues go back to
the submitter and are never logged (values may be PHI).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from biobank.clinical.forms import Operand, parse_operands
from biobank.clinical.models import (
    IDENTITY_FIELDS,
    Comparison,
    Condition,
    Form,
    Operator,
    Rule,
    Severity,
    ValidationIssue,
    Value,
    Variable,
    VariableType,
)

Others = Callable[[str], Sequence[Mapping[str, Value]]]
"""``others(form_name)``: the same patient's stored records of that form, typed."""

_MAX_LISTED_CODES = 12
_INTEGER = re.compile(r"[+-]?\d+\Z")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+\Z")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\Z")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}
_DATE_WORDS = {
    Comparison.LT: "before",
    Comparison.LE: "on or before",
    Comparison.EQ: "the same as",
    Comparison.GE: "on or after",
    Comparison.GT: "after",
}
_NUMBER_WORDS = {
    Comparison.LT: "less than",
    Comparison.LE: "at most",
    Comparison.EQ: "equal to",
    Comparison.GE: "at least",
    Comparison.GT: "greater than",
}


class _Invalid(Exception):
    """A value cannot be coerced: the message and hint of the issue."""

    def __init__(self, message: str, hint: str, rule: str = "type") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.rule = rule


def _submitted(raw: Any) -> str | None:
    """The submitted value as text, for the issue (never logged)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dt.date):
        return raw.isoformat()
    return str(raw)


def _missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _show(value: Any) -> str:
    """A typed value as written in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _coerce_integer(variable: Variable, raw: Any) -> int:
    if isinstance(raw, bool):
        raise _Invalid(
            f"{variable.name} must be a whole number, not a true/false value",
            f"give {variable.name} as a whole number such as 12",
        )
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if math.isfinite(raw) and raw.is_integer():
            return int(raw)
        raise _Invalid(
            f"{variable.name} must be a whole number; {_submitted(raw)} is not",
            f"give {variable.name} as a whole number such as 12 (no decimals)",
        )
    if isinstance(raw, str):
        text = raw.strip()
        if _INTEGER.match(text):
            return int(text)
        if _DECIMAL.match(text) and float(text).is_integer():
            return int(float(text))
        hint = f"give {variable.name} as a whole number such as 12"
        if _DECIMAL.match(text) or _COMMA_DECIMAL.match(text):
            hint += " (no decimals)"
        raise _Invalid(f"{variable.name} must be a whole number; {text!r} is not", hint)
    raise _Invalid(
        f"{variable.name} must be a whole number, not {type(raw).__name__}",
        f"give {variable.name} as a whole number such as 12",
    )


def _coerce_number(variable: Variable, raw: Any) -> float | int:
    hint = f"give {variable.name} as a number with a dot for decimals, e.g. 4.5"
    if isinstance(raw, bool):
        raise _Invalid(f"{variable.name} must be a number, not a true/false value", hint)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _Invalid(f"{variable.name} must be a finite number", hint)
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if _INTEGER.match(text):
            return int(text)
        if _DECIMAL.match(text):
            number = float(text)
            if not math.isfinite(number):
                raise _Invalid(f"{variable.name} must be a finite number; {text!r} is not", hint)
            return number
        if _COMMA_DECIMAL.match(text):
            raise _Invalid(
                f"{variable.name} must be a number; {text!r} uses a comma for decimals",
                f"use a dot as the decimal separator: {text.replace(',', '.')}",
            )
        if text[:1] in "<>" and _DECIMAL.match(text[1:].strip()):
            raise _Invalid(
                f"{variable.name} must be a number; {text!r} is a bound, not a value",
                f"give a number; for a result below the detection limit give the limit "
                f"({text[1:].strip()})",
            )
        raise _Invalid(f"{variable.name} must be a number; {text!r} is not", hint)
    raise _Invalid(f"{variable.name} must be a number, not {type(raw).__name__}", hint)


def _coerce_date(variable: Variable, raw: Any) -> dt.date:
    hint = f"write {variable.name} as YYYY-MM-DD, e.g. 2021-03-04"
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if not isinstance(raw, str):
        raise _Invalid(f"{variable.name} must be a date (YYYY-MM-DD), not a number", hint)
    text = raw.strip()
    date_part = text.split("T", 1)[0] if "T" in text else text
    if _ISO_DATE.match(date_part):
        try:
            return dt.date.fromisoformat(date_part)
        except ValueError:
            raise _Invalid(
                f"{variable.name} is not a real calendar date: {text!r}",
                "check the day and the month (YYYY-MM-DD)",
            ) from None
    dmy = _DMY.match(text)
    if dmy is not None:
        first, second, year = (int(g) for g in dmy.groups())
        try:
            guess = dt.date(year, second, first).isoformat()
        except ValueError:
            guess = None
        if guess is not None:
            reading = "" if first > 12 else " if it is day/month/year"
            hint = f"write dates as YYYY-MM-DD: {guess}{reading}"
    raise _Invalid(f"{variable.name} must be a date written YYYY-MM-DD; {text!r} is not", hint)


def _coerce_boolean(variable: Variable, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Invalid(
        f"{variable.name} must be true or false; {_submitted(raw)!r} is neither",
        "use true/false, yes/no or 1/0",
    )


def _coerce_code(variable: Variable, raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _Invalid(
            f"{variable.name} must be one of its codes, not a {type(raw).__name__}",
            f"use one of: {_allowed(variable)}",
            rule="code",
        )
    text = str(raw).strip()
    code = variable.code(text)
    if code is not None:
        return code.value
    folded = text.casefold()
    matches = {c.value for c in variable.codes if c.value.casefold() == folded}
    if not matches:
        matches = {c.value for c in variable.codes if c.label and c.label.casefold() == folded}
    if len(matches) == 1:
        return matches.pop()
    close = difflib.get_close_matches(text, [c.value for c in variable.codes], n=1, cutoff=0.6)
    guess = f"did you mean '{close[0]}'? " if close else ""
    raise _Invalid(
        f"{text!r} is not a code of {variable.name}",
        f"{guess}use one of: {_allowed(variable)}",
        rule="code",
    )


def _allowed(variable: Variable) -> str:
    values = [c.value for c in variable.codes]
    if len(values) <= _MAX_LISTED_CODES:
        return ", ".join(values)
    shown = ", ".join(values[:_MAX_LISTED_CODES])
    return f"{shown}, … ({len(values)} codes in all, see the form definition)"


def _coerce_string(variable: Variable, raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _Invalid(
            f"{variable.name} must be text, not {type(raw).__name__}",
            f"give {variable.name} as text",
        )
    text = str(raw).strip()
    if variable.pattern is not None and re.fullmatch(variable.pattern, text) is None:
        raise _Invalid(
            f"{variable.name} does not have the expected form ({variable.pattern})",
            f"write {variable.name} so that it matches {variable.pattern}",
            rule="pattern",
        )
    return text


_COERCERS: dict[VariableType, Callable[[Variable, Any], Value]] = {
    VariableType.STRING: _coerce_string,
    VariableType.INTEGER: _coerce_integer,
    VariableType.NUMBER: _coerce_number,
    VariableType.DATE: _coerce_date,
    VariableType.BOOLEAN: _coerce_boolean,
    VariableType.CODE: _coerce_code,
}


def coerce_value(variable: Variable, raw: Any) -> Value:
    """Type one non-missing raw value and check its range.

    Raises
    ------
    ValueError
        With the issue's message; prefer :func:`coerce_record`, which never raises.
    """
    try:
        return _coerce(variable, raw)
    except _Invalid as exc:
        raise ValueError(exc.message) from None


def _coerce(variable: Variable, raw: Any) -> Value:
    value = _COERCERS[variable.type](variable, raw)
    if isinstance(value, int | float) and not isinstance(value, bool):
        unit = f" {variable.unit}" if variable.unit else ""
        low, high = variable.minimum, variable.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (
                f"between {_show(low)} and {_show(high)}{unit}"
                if low is not None and high is not None
                else f"at least {_show(low)}{unit}"
                if low is not None
                else f"at most {_show(high)}{unit}"
            )
            raise _Invalid(
                f"{variable.name} is {_show(value)}{unit} but must be {bounds}",
                f"check the value and its unit{f' ({variable.unit})' if variable.unit else ''}",
                rule="range",
            )
    return value


def record_key(form: Form, values: Mapping[str, Value]) -> str:
    """The record's key fields other than the patient, e.g. ``followup_date=2021-03-04``.

    Empty for forms with one record per patient.
    """
    parts = []
    for name in form.key:
        value = values.get(name)
        shown = "" if value is None else _show(value).strip("'")
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def coerce_record(
    form: Form, raw: Mapping[str, Any], index: int
) -> tuple[dict[str, Value], list[ValidationIssue]]:
    """Phase 1: type every field of one record and report what cannot be typed.

    Parameters
    ----------
    form
        The record's form.
    raw
        Field → value as submitted: typed JSON values, or CSV strings (``""`` is missing).
    index
        The record's position in the submission (0-based), for the issues.

    Returns
    -------
    tuple
        The typed values of the fields that are present and valid (the identity fields
        as strings) and the issues found. A field with an issue is left out of the values.
    """
    values: dict[str, Value] = {}
    issues: list[ValidationIssue] = []

    def issue(field: str | None, rule: str, message: str, hint: str, value: Any) -> None:
        issues.append(
            ValidationIssue(
                record=index,
                field=field,
                rule=rule,
                message=message,
                hint=hint,
                value=_submitted(value),
            )
        )

    for name in IDENTITY_FIELDS:
        item = raw.get(name)
        if _missing(item):
            continue
        if isinstance(item, str | int) and not isinstance(item, bool):
            values[name] = str(item).strip()
        else:
            issue(name, "type", f"{name} must be text", f"give {name} as text", item)
    if "patient_id" not in values and "patient_pseudonym" not in values:
        bad = any(not _missing(raw.get(n)) for n in ("patient_id", "patient_pseudonym"))
        if not bad:
            issue(
                "patient_id",
                "required",
                "the record does not say whose it is: patient_id (or patient_pseudonym) is missing",
                "fill patient_id (on a site node) or patient_pseudonym (on a central node)",
                None,
            )

    for variable in form.variables:
        item = raw.get(variable.name)
        if _missing(item):
            if variable.required:
                issue(
                    variable.name,
                    "required",
                    f"{variable.name} is required",
                    f"fill {variable.name}" + (f" ({variable.label})" if variable.label else ""),
                    None,
                )
            continue
        try:
            values[variable.name] = _coerce(variable, item)
        except _Invalid as exc:
            issue(variable.name, exc.rule, exc.message, exc.hint, item)

    known = [v.name for v in form.variables] + list(IDENTITY_FIELDS)
    for name in raw:
        if name in known:
            continue
        text = str(name)
        close = difflib.get_close_matches(text.lower(), known, n=1, cutoff=0.6)
        if not close:
            close = [k for k in known if k.replace("_", "") == text.lower().replace("_", "")]
        hint = (
            f"did you mean {close[0]}? rename the column or remove it"
            if close
            else f"remove it, or use a variable of form {form.name}"
        )
        issue(
            text,
            "unknown_field",
            f"{text} is not a variable of form {form.name}",
            hint,
            raw[name],
        )
    return values, _keyed(form, values, issues)


def _keyed(
    form: Form, values: Mapping[str, Value], issues: list[ValidationIssue], key: str | None = None
) -> list[ValidationIssue]:
    if not form.key:
        return issues
    key = record_key(form, values) if key is None else key
    return [dataclasses.replace(i, record_key=key) for i in issues]


def condition_holds(condition: Condition, values: Mapping[str, Value]) -> bool:
    """Whether ``condition`` holds; a condition on an empty field is false unless ``absent``."""
    value = values.get(condition.field)
    if condition.op is Operator.ABSENT:
        return value is None
    if value is None:
        return False
    if condition.op is Operator.PRESENT:
        return True
    if condition.op is Operator.EQUALS:
        return bool(value == condition.value)
    if condition.op is Operator.NOT_EQUALS:
        return bool(value != condition.value)
    if condition.op is Operator.IN:
        return value in condition.value
    return value not in condition.value


def describe_condition(condition: Condition) -> str:
    """The condition in words, e.g. ``vital_status is 'deceased'``."""
    field = condition.field
    if condition.op is Operator.PRESENT:
        return f"{field} is filled"
    if condition.op is Operator.ABSENT:
        return f"{field} is empty"
    if condition.op is Operator.EQUALS:
        return f"{field} is {_show(condition.value)}"
    if condition.op is Operator.NOT_EQUALS:
        return f"{field} is not {_show(condition.value)}"
    listed = ", ".join(_show(v) for v in condition.value)
    if condition.op is Operator.IN:
        return f"{field} is one of {listed}"
    return f"{field} is none of {listed}"


def _describe_all(conditions: Iterable[Condition]) -> str:
    return " and ".join(describe_condition(c) for c in conditions)


def _failing(conditions: Iterable[Condition], values: Mapping[str, Value]) -> str:
    """Why the conditions do not hold: the first that fails, with the field's value."""
    for condition in conditions:
        if not condition_holds(condition, values):
            value = values.get(condition.field)
            now = "empty" if value is None else _show(value)
            return f"{condition.field} is {now}"
    return ""


def _like(left: Any, stored: Any) -> Any:
    """``stored`` (another form's value, as read back) in ``left``'s type; ``None`` if not.

    Stored records come back typed, but a value read from JSON (an ISO date string) or a
    timestamp must not make a rule raise: it is converted, or the rule skips it.
    """
    if stored is None:
        return None
    try:
        if isinstance(left, dt.date) and not isinstance(left, dt.datetime):
            if isinstance(stored, dt.datetime):
                return stored.date()
            if isinstance(stored, dt.date):
                return stored
            return dt.date.fromisoformat(str(stored)[:10])
        if isinstance(left, bool) or isinstance(stored, bool):
            return stored if isinstance(left, bool) and isinstance(stored, bool) else None
        if isinstance(left, int | float):
            return stored if isinstance(stored, int | float) else float(str(stored))
    except ValueError:
        return None
    return stored if type(stored) is type(left) else None


def _compare(left: Any, op: Comparison, right: Any) -> bool:
    if op is Comparison.EQ:
        if isinstance(left, float) or isinstance(right, float):
            return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
        return bool(left == right)
    if op is Comparison.LT:
        return bool(left < right)
    if op is Comparison.LE:
        return bool(left <= right)
    if op is Comparison.GE:
        return bool(left >= right)
    return bool(left > right)


def _evaluate(operands: Sequence[Operand], values: Mapping[str, Value]) -> Value:
    """The right-hand side's value in this record (``None`` when a term is missing)."""
    if len(operands) == 1 and operands[0].sign == 1:
        only = operands[0]
        return only.number if only.variable is None else values.get(only.variable)
    total: float | int = 0
    for operand in operands:
        term = operand.number if operand.variable is None else values.get(operand.variable)
        if term is None or isinstance(term, bool) or not isinstance(term, int | float):
            return None
        total += operand.sign * term
    return total


def _words(op: Comparison, value: Any) -> str:
    return (_DATE_WORDS if isinstance(value, dt.date) else _NUMBER_WORDS)[op]


def check_rules(
    form: Form,
    values: Mapping[str, Value],
    index: int,
    others: Others = lambda form_name: [],
    *,
    invalid: Collection[str] = (),
    key: str | None = None,
) -> list[ValidationIssue]:
    """Phase 2: conditional requirements and cross-field / cross-form rules on typed values.

    Parameters
    ----------
    form
        The record's form.
    values
        The typed values from :func:`coerce_record` (dates possibly shifted).
    index
        The record's position in the submission (0-based).
    others
        ``others(form_name)``: the same patient's stored records of that form, typed.
    invalid
        Fields that already have a phase-1 issue: conditions on them are not judged and
        they are not reported again as missing.
    key
        The record key to put in the issues (by default computed from ``values``; pass the
        one computed before dates were shifted so the submitter recognises it).
    """
    issues: list[ValidationIssue] = []
    broken = set(invalid)

    def submitted(name: str) -> str | None:
        return _submitted(values.get(name))

    for variable in form.variables:
        name = variable.name
        if name in broken:
            continue
        present = values.get(name) is not None
        if (
            not present
            and variable.required_when
            and not any(c.field in broken for c in variable.required_when)
            and all(condition_holds(c, values) for c in variable.required_when)
        ):
            conditions = _describe_all(variable.required_when)
            issues.append(
                ValidationIssue(
                    record=index,
                    field=name,
                    rule="required_when",
                    message=f"{name} is required when {conditions}",
                    hint=f"fill {name} or correct "
                    + " and ".join(dict.fromkeys(c.field for c in variable.required_when)),
                    value=None,
                )
            )
        if (
            present
            and variable.allowed_when
            and not any(c.field in broken for c in variable.allowed_when)
            and not all(condition_holds(c, values) for c in variable.allowed_when)
        ):
            conditions = _describe_all(variable.allowed_when)
            issues.append(
                ValidationIssue(
                    record=index,
                    field=name,
                    rule="allowed_when",
                    message=f"{name} may only be filled when {conditions}, but "
                    f"{_failing(variable.allowed_when, values)}",
                    hint=f"leave {name} empty or correct "
                    + " and ".join(dict.fromkeys(c.field for c in variable.allowed_when)),
                    value=submitted(name),
                )
            )

    for rule in form.rules:
        issue = _check_rule(form, rule, values, index, others, broken)
        if issue is not None:
            issues.append(issue)
    return _keyed(form, values, issues, key)


def _check_rule(
    form: Form,
    rule: Rule,
    values: Mapping[str, Value],
    index: int,
    others: Others,
    broken: set[str],
) -> ValidationIssue | None:
    if rule.left in broken or any(c.field in broken for c in rule.when):
        return None
    if not all(condition_holds(c, values) for c in rule.when):
        return None
    left = values.get(rule.left)
    if left is None:
        return None
    operands = parse_operands(rule.right)
    if any(o.variable in broken for o in operands if o.form is None):
        return None
    external = operands[0]
    if external.form is not None and external.variable is not None:
        stored = [r.get(external.variable) for r in others(external.form)]
        candidates = [v for v in (_like(left, value) for value in stored) if v is not None]
        failures = [v for v in candidates if not _compare(left, rule.op, v)]
        if not failures:
            return None
        if len(candidates) == 1:
            right_text = f"{external} ({_show(failures[0])})"
        else:
            right_text = (
                f"{external} in each stored {external.form} record of the patient; "
                f"{len(failures)} of {len(candidates)} are not (e.g. {_show(failures[0])})"
            )
    else:
        right_value = _evaluate(operands, values)
        if right_value is None or _compare(left, rule.op, right_value):
            return None
        literal = len(operands) == 1 and operands[0].variable is None
        right_text = rule.right if literal else f"{rule.right} ({_show(right_value)})"
    message = f"{rule.left} ({_show(left)}) must be {_words(rule.op, left)} {right_text}"
    if rule.when:
        message += f" when {_describe_all(rule.when)}"
    if rule.message:
        message += f": {rule.message}"
    refs = [str(o) for o in operands if o.variable is not None]
    hint = rule.hint or f"check {' and '.join(dict.fromkeys([rule.left, *refs]))}"
    return ValidationIssue(
        record=index,
        field=rule.left,
        rule=rule.name,
        message=message,
        hint=hint,
        value=_submitted(left),
        severity=rule.severity,
    )


def validate_record(
    form: Form,
    raw: Mapping[str, Any],
    index: int,
    others: Others = lambda form_name: [],
) -> tuple[dict[str, Value], list[ValidationIssue]]:
    """Both phases on one record (no date shifting in between).

    Returns
    -------
    tuple
        The typed values and every issue of the record; the record is acceptable when
        no issue has severity ``error`` (see :func:`has_errors`).
    """
    values, issues = coerce_record(form, raw, index)
    invalid = {i.field for i in issues if i.field is not None}
    issues += check_rules(form, values, index, others, invalid=invalid)
    return values, issues


def has_errors(issues: Iterable[ValidationIssue]) -> bool:
    """Whether any issue rejects the record (warnings do not)."""
    return any(i.severity is Severity.ERROR for i in issues)


__all__ = [
    "Others",
    "check_rules",
    "coerce_record",
    "coerce_value",
    "condition_holds",
    "describe_condition",
    "has_errors",
    "record_key",
    "validate_record",
]
