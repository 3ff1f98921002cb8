"""Validated, frozen models of the configuration's tables, checked from their annotations.

A ``Model`` subclass declares its fields as annotated class attributes, as a dataclass
does; ``Model(**values)`` (or ``model_validate``) checks every value against its type
and reports every problem at once in one ``ValidationError``, each error a dict with the
``type``, the ``loc`` (the keys and indexes leading to the value), the ``msg`` and the
``input``. What the configuration uses, and nothing more:

- ``str``, ``int``, ``float``, ``bool``, ``Path``, ``datetime`` (``AwareDatetime``),
  ``Literal``, ``Any``, ``X | None``, unions, ``list``, ``tuple[X, ...]``, ``dict``, other
  models, and a union of models picked by a key (``Field(discriminator="kind")``);
- a value written as a string is parsed for a number, a boolean, a path or a datetime
  (the ``PROBED_…`` overrides are strings); a whole float is an integer;
- ``Field``: a default or a default factory, bounds (``ge``, ``gt``, ``le``, ``lt``) and a
  list's ``min_length``; ``PrivateAttr``: an attribute that is not a field, set after
  validation (the only kind of attribute a frozen model lets code set);
- ``Annotated`` with ``BeforeValidator``, ``AfterValidator`` or ``PlainValidator``;
  ``field_validator`` (``mode="before"`` or ``"after"``) and ``model_validator`` (after
  the fields): a ``ValueError`` they raise is the error ``value_error``;
- unknown keys are refused (``extra_forbidden``); an instance is frozen.

A class checks its annotations the first time it validates (the config models are
defined in the order a module reads, and some are never used): importing the config
costs no more than defining its classes. The error types and messages follow the names
the configuration's error reporting and its tests know (``missing``, ``extra_forbidden``,
``literal_error``, ``union_tag_invalid``, ``greater_than_equal``…).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from types import MethodType
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from probed.modeltypes import (
    MISSING,
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Check,
    Field,
    FieldInfo,
    Invalid,
    Loc,
    PlainValidator,
    SecretStr,
    ValidationError,
    calling,
    check_bounds,
    compile_check,
    error,
    nested_check,
    value_error,
)

__all__ = [
    "AfterValidator",
    "AwareDatetime",
    "BeforeValidator",
    "Field",
    "FieldInfo",
    "Model",
    "PlainValidator",
    "PrivateAttr",
    "SecretStr",
    "ValidationError",
    "field_validator",
    "model_validator",
]

_T = TypeVar("_T")
_M = TypeVar("_M", bound="Model")


class _Private:
    # the classes here are plain, not dataclasses: creating one costs about 0.8 ms of the start
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None) -> None:
        self.default, self.default_factory = default, default_factory

    def get(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def PrivateAttr(default: Any = None, *, default_factory: Callable[[], Any] | None = None) -> Any:
    """An attribute beside the fields: not validated, settable on a frozen model."""
    return _Private(default, default_factory)


_FIELD_MARK = "__probed_field_validator__"
_MODEL_MARK = "__probed_model_validator__"


def field_validator(*fields: str, mode: Literal["before", "after"] = "after") -> Callable[[_T], _T]:
    """Mark a classmethod ``(cls, value) -> value`` as a check of ``fields``."""

    def mark(method: _T) -> _T:
        func = getattr(method, "__func__", method)
        setattr(func, _FIELD_MARK, (fields, mode))
        return method

    return mark


def model_validator(*, mode: Literal["after"]) -> Callable[[_T], _T]:
    """Mark a method ``(self) -> self`` as a check of the whole model, after its fields."""

    def mark(method: _T) -> _T:
        setattr(method, _MODEL_MARK, mode)
        return method

    return mark


class _Fields:
    """A model class's fields and private attributes, from its annotations."""

    __slots__ = ("fields", "private")

    def __init__(self, fields: dict[str, FieldInfo], private: dict[str, _Private]) -> None:
        self.fields, self.private = fields, private


class _Shape:
    """A model class's checks, made the first time it validates."""

    __slots__ = ("checks", "model_checks")

    def __init__(self, checks: dict[str, Check], model_checks: list[Any]) -> None:
        self.checks, self.model_checks = checks, model_checks


class _ModelType(type):
    @property
    def model_fields(cls) -> dict[str, FieldInfo]:
        """The fields by name, in the order they are declared (a base's first)."""
        return _fields(cls).fields


def _split(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0], annotation.__metadata__
    return annotation, ()


def _fields(cls: type) -> _Fields:
    found: _Fields | None = cls.__dict__.get("_fields_")
    if found is not None:
        return found
    fields: dict[str, FieldInfo] = {}
    private: dict[str, _Private] = {}
    for name, annotation in typing.get_type_hints(cls, include_extras=True).items():
        if typing.get_origin(annotation) is ClassVar or name.startswith("__"):
            continue
        owner = next(k for k in cls.__mro__ if name in getattr(k, "__annotations__", {}))
        declared = owner.__dict__.get(name, MISSING)
        if name.startswith("_"):
            private[name] = declared if isinstance(declared, _Private) else _Private(declared, None)
            continue
        info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
        if info.annotation is not None:  # a base's FieldInfo: a copy of it for this class
            info = FieldInfo(info.default, info.default_factory, info.discriminator, **info.bounds)
        info.annotation, info.metadata = _split(annotation)
        fields[name] = info
    found = _Fields(fields, private)
    type.__setattr__(cls, "_fields_", found)
    return found


def _shape(cls: type) -> _Shape:
    shape: _Shape | None = cls.__dict__.get("_shape_")
    if shape is not None:
        return shape
    fields = _fields(cls).fields
    marked: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            func = getattr(value, "__func__", value)
            if hasattr(func, _FIELD_MARK) or hasattr(func, _MODEL_MARK):
                marked[attr] = func
    checks: dict[str, Check] = {}
    for name, info in fields.items():
        check = compile_check(
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        if info.bounds:
            check = check_bounds(info.bounds, check)
        for func in marked.values():
            names, mode = getattr(func, _FIELD_MARK, ((), ""))
            if name in names:
                check = calling(MethodType(func, cls), check, first=mode == "before")
        checks[name] = check
    for func in marked.values():
        missing = set(getattr(func, _FIELD_MARK, ((), ""))[0]) - set(fields)
        if missing:
            raise TypeError(f"{cls.__name__}.{func.__name__} checks no field {sorted(missing)}")
    model_checks = [f for f in marked.values() if hasattr(f, _MODEL_MARK)]
    shape = _Shape(checks, model_checks)
    type.__setattr__(cls, "_shape_", shape)
    return shape


class Model(metaclass=_ModelType):
    """A table of the configuration: its fields checked, unknown keys refused, frozen."""

    def __init__(self, **values: Any) -> None:
        try:
            self._fill(values, ())
        except Invalid as exc:
            raise ValidationError(type(self).__name__, exc.errors) from None

    @classmethod
    def model_validate(cls: type[_M], values: Any) -> _M:
        """``values`` (a mapping, or an instance returned as it is) as a checked model."""
        try:
            return nested_check(cls)(values, ())  # type: ignore[no-any-return]
        except Invalid as exc:
            raise ValidationError(cls.__name__, exc.errors) from None

    @classmethod
    def _validated(cls: type[_M], values: Mapping[str, Any], loc: Loc) -> _M:
        made = cls.__new__(cls)
        made._fill(values, loc)
        return made

    def _fill(self, values: Mapping[str, Any], loc: Loc) -> None:
        shape, found = _shape(type(self)), _fields(type(self))
        state: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for name, info in found.fields.items():
            if name in values:
                try:
                    state[name] = shape.checks[name](values[name], (*loc, name))
                except Invalid as exc:
                    errors.extend(exc.errors)
            elif info.is_required():
                errors.append(error("missing", (*loc, name), "Field required", values))
            else:
                state[name] = info.get_default()
        for name in values:
            if name not in found.fields:
                msg = "Extra inputs are not permitted"
                errors.append(error("extra_forbidden", (*loc, name), msg, values[name]))
        if errors:
            raise Invalid(errors)
        state.update((name, attr.get()) for name, attr in found.private.items())
        object.__setattr__(self, "__dict__", state)
        for check in shape.model_checks:
            try:
                check(self)
            except ValueError as exc:
                raise value_error(loc, values, exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") and name in _fields(type(self)).private:
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None) -> _M:
        """A shallow copy with ``update``'s fields replaced (not validated)."""
        copied = type(self).__new__(type(self))
        object.__setattr__(copied, "__dict__", {**self.__dict__, **(update or {})})
        return copied

    def model_dump(self) -> dict[str, Any]:
        """The fields as plain values (models as dicts; secrets stay ``SecretStr``)."""
        return {name: _dump(getattr(self, name)) for name in _fields(type(self)).fields}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:
        fields = _fields(type(self)).fields
        return hash((type(self), *(getattr(self, name) for name in fields)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in _fields(type(self)).fields)
        return f"{type(self).__name__}({shown})"


def _dump(value: Any) -> Any:
    if isinstance(value, Model):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return type(value)(_dump(v) for v in value)
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value
