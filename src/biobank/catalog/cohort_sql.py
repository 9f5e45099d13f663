"""SQL expressions of the cohort compiler: exact ages from dates, comparisons, LIKE escapes.

Ages: a date as the integer ``YYYYMMDD`` (:class:`DateKey`, compiled per backend) minus the
birth as ``YYYYMMDD`` is a number whose ``// 10000`` is the age in whole years, exact to the
day; :func:`age_condition` turns an age condition into bounds on that number, so no division
is needed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, false, func, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from biobank.catalog.cohort_model import Op
from biobank.errors import InvalidQuery


class DateKey(FunctionElement[int]):
    """A date as the integer ``YYYYMMDD`` (so that ``(d - birth) // 10000`` is the age)."""

    type = Integer()
    inherit_cache = True
    name = "date_key"


@compiles(DateKey, "sqlite")
def _date_key_sqlite(element: DateKey, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores Date as 'YYYY-MM-DD' text on SQLite.
    (arg,) = element.clauses
    return f"CAST(replace(substr({compiler.process(arg, **kw)}, 1, 10), '-', '') AS INTEGER)"


@compiles(DateKey, "postgresql")
def _date_key_postgresql(element: DateKey, compiler: Any, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"CAST(to_char({compiler.process(arg, **kw)}, 'YYYYMMDD') AS INTEGER)"


def birth_key(person: Any) -> ColumnElement[int]:
    """The birth of ``person`` (a ``person`` table or alias) as ``YYYYMMDD``."""
    key: ColumnElement[int] = (
        person.c.year_of_birth * 10000
        + func.coalesce(person.c.month_of_birth, 1) * 100
        + func.coalesce(person.c.day_of_birth, 1)
    )
    return key


def age_span(date_column: Any, person: Any) -> ColumnElement[int]:
    """``YYYYMMDD(date) - YYYYMMDD(birth)``: the age in whole years is this ``// 10000``."""
    return DateKey(date_column) - birth_key(person)


def _ceil(value: float) -> int:
    return int(-(-value // 1))


def _floor(value: float) -> int:
    return int(value // 1)


def age_condition(span: ColumnElement[int], op: Op, values: tuple[Any, ...]) -> Any:
    """The exact condition on whole years of age, on ``span`` (see :func:`_age_span`)."""

    def at_least(age: float) -> Any:
        return span >= _ceil(age) * 10000

    def at_most(age: float) -> Any:
        return span < (_floor(age) + 1) * 10000

    def equals(age: float) -> Any:
        if age != int(age):
            return false()
        return and_(span >= int(age) * 10000, span < (int(age) + 1) * 10000)

    if op in (Op.EQUALS, Op.IN):
        return or_(*(equals(float(v)) for v in values))
    if op is Op.NOT_EQUALS:
        return and_(*(~equals(float(v)) for v in values))
    if op is Op.LOWER_THAN:
        return span < _ceil(float(values[0])) * 10000
    if op is Op.GREATER_THAN:
        return span >= (_floor(float(values[0])) + 1) * 10000
    if op is Op.BETWEEN:
        low, high = values
        parts = []
        if low is not None:
            parts.append(at_least(float(low)))
        if high is not None:
            parts.append(at_most(float(high)))
        return and_(true(), *parts)
    raise InvalidQuery(f"{op.value} does not apply to an age; use EQUALS, BETWEEN, ...")


def like_escape(text: str) -> str:
    """``text`` with the LIKE wildcards escaped by a backslash (``ESCAPE`` character)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compare(column: Any, op: Op, values: tuple[Any, ...], *, nocase: bool = False) -> Any:
    """``column op values`` for plain values (numbers, codes, booleans)."""
    if nocase:
        column = func.lower(column)
        values = tuple(str(v).lower() for v in values)
    if op in (Op.EQUALS, Op.IN):
        return column == values[0] if len(values) == 1 else column.in_(values)
    if op is Op.NOT_EQUALS:
        return column != values[0] if len(values) == 1 else column.not_in(values)
    if op is Op.LOWER_THAN:
        return column < values[0]
    if op is Op.GREATER_THAN:
        return column > values[0]
    if op is Op.BETWEEN:
        low, high = values
        parts = []
        if low is not None:
            parts.append(column >= low)
        if high is not None:
            parts.append(column <= high)
        return and_(column.is_not(None), *parts)
    if op is Op.CONTAINS:  # always without case
        pattern = f"%{like_escape(str(values[0]).lower())}%"
        return (column if nocase else func.lower(column)).like(pattern, escape="\\")
    raise InvalidQuery(f"unknown condition type {op}")  # pragma: no cover - an enum


__all__ = [
    "DateKey",
    "age_condition",
    "age_span",
    "birth_key",
    "compare",
    "like_escape",
]
