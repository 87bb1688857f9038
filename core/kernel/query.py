"""``Query<Resource>`` APIs: ZStack's query conditions over one model.

A condition is a string ``<field><op><value>`` with the inventory's camelCase
field names, or ``<field> is null`` / ``<field> not null``:

====  =================  ==========================
op    meaning            example
====  =================  ==========================
=     equal              ``name=web1``
!=    not equal          ``state!=Running``
> >=  greater (or equal) ``cpuNum>=2``
< <=  less (or equal)    ``createDate<2026-01-01``
?=    in                 ``state?=Running,Stopped``
!?=   not in             ``uuid!?=a,b``
~=    like (``%``, ``_``) ``name~=web%`` (``\\%`` is a literal %)
!~=   not like           ``name!~=%test%``
====  =================  ==========================

Paging and order: ``limit`` (default 1000), ``start``, ``sortBy``,
``sortDirection`` (asc|desc); ``count=true`` returns only the number of
matches, ``replyWithCount=true`` returns the page and the number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from core.kernel.api import ApiMessage, QueryResult, param
from core.kernel.conditions import Condition
from core.kernel.db import Base
from core.kernel.errors import argerr


class QueryMessage(ApiMessage):
    """Base of ``Query<Resource>`` messages; a subclass sets ``model``."""

    abstract: ClassVar[bool] = True
    model: ClassVar[type[Base]]
    read_only = True

    conditions: list[str] = param(
        default=[], description="e.g. name=web1, cpuNum>=2, state?=Running,Stopped"
    )
    limit: int = param(default=1000, number_range=(0, 1_000_000))
    start: int = param(default=0, number_range=(0, 1_000_000_000))
    count: bool = param(default=False, description="reply with only the number of matches")
    reply_with_count: bool = param(default=False, description="reply with the page and the total")
    sort_by: str = param(description="an inventory field")
    sort_direction: str = param(default="asc", valid_values=("asc", "desc"))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        cls.abstract = cls.__dict__.get("abstract", False)
        super().__init_subclass__(**kwargs)

    def base_filter(self) -> list[ColumnElement[bool]]:
        """Conditions every query of this kind adds (e.g. tags of one type)."""
        return []

    def parsed_conditions(self) -> list[Condition]:
        return [Condition.parse(text) for text in self.conditions]

    def validate(self) -> None:
        super().validate()
        fields = self.model.inventory_fields()
        for cond in self.parsed_conditions():
            _attr(self, fields, cond.field)
        if self.sort_by:
            _attr(self, fields, self.sort_by)


def _attr(msg: QueryMessage, fields: dict[str, str], name: str) -> str:
    try:
        return fields[name]
    except KeyError:
        raise argerr(
            f"{msg.api_name} has no field {name} (fields: {', '.join(sorted(fields))})"
        ) from None


def build_select(msg: QueryMessage) -> Select[Any]:
    model = msg.model
    fields = model.inventory_fields()
    stmt = select(*model.inventory_columns())
    for clause in msg.base_filter():
        stmt = stmt.where(clause)
    for cond in msg.parsed_conditions():
        column = model.__mapper__.columns[_attr(msg, fields, cond.field)]
        stmt = stmt.where(_clause(msg, column, cond))
    return stmt


def run_query(session: Session, msg: QueryMessage) -> QueryResult:
    stmt = build_select(msg)
    total = None
    if msg.count or msg.reply_with_count:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        if msg.count:
            return QueryResult([], total)
    if msg.sort_by:
        column = msg.model.__mapper__.columns[msg.model.inventory_fields()[msg.sort_by]]
        stmt = stmt.order_by(column.desc() if msg.sort_direction == "desc" else column.asc())
    stmt = stmt.offset(msg.start).limit(msg.limit)
    inventory_of = msg.model.inventory_of
    return QueryResult([inventory_of(row) for row in session.execute(stmt)], total)


def _clause(msg: QueryMessage, column: Any, cond: Condition) -> ColumnElement[bool]:
    op = cond.op
    if op == "is null":
        return column.is_(None)
    if op == "not null":
        return column.is_not(None)
    assert cond.value is not None
    if op in ("?=", "!?="):
        values = [_value(msg, column, cond, v.strip()) for v in cond.value.split(",")]
        return column.in_(values) if op == "?=" else column.not_in(values)
    if op in ("~=", "!~="):
        like = column.like if op == "~=" else column.not_like
        return like(cond.value, escape="\\")
    value = _value(msg, column, cond, cond.value)
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        ">": column.__gt__,
        ">=": column.__ge__,
        "<": column.__lt__,
        "<=": column.__le__,
    }[op](value)


def _value(msg: QueryMessage, column: Any, cond: Condition, text: str) -> Any:
    try:
        py_type = column.type.python_type
    except NotImplementedError:
        return text
    try:
        if py_type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if py_type is datetime:
            return datetime.fromisoformat(text)
        if py_type in (int, float):
            return py_type(text)
    except ValueError:
        raise argerr(
            f"{msg.api_name}: value {text!r} of condition on {cond.field} is not a valid "
            f"{py_type.__name__}"
        ) from None
    return text
