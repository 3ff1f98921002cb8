"""Immutable records: frozen to the type checker, plain slotted dataclasses at run time.

``@record`` is ``@dataclass(frozen=True, slots=True)`` to mypy, which refuses any
assignment to a field of one, and ``@dataclass(slots=True, unsafe_hash=True)`` when the
code runs: equal and hashed alike, but filled by plain slot stores. A frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``, a call per field: an SSE
event (four fields, one made for every event a stream delivers) took 1.25 µs to make
against 0.24, and the two methods that guard it (``__setattr__``, ``__delattr__``) are
compiled at import, about 0.3 ms a class. What that guard caught when the code ran, mypy
catches before it runs.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field
from typing import TYPE_CHECKING, TypeVar

__all__ = ["record"]

_T = TypeVar("_T")

if TYPE_CHECKING:
    from typing import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
    def record(cls: type[_T], /) -> type[_T]:
        """The record class made of ``cls``."""

else:

    def record(cls, /):
        """The record class made of ``cls``."""
        return dataclass(slots=True, unsafe_hash=True)(cls)
