"""The checks of ``probed.model``: one per annotation, and the errors they report.

``compile_check`` turns an annotation into a function ``(value, loc) -> value`` that
returns the checked (and, from a string, parsed) value or raises ``Invalid`` with every
error below it, each a dict ``{type, loc, msg, input}`` (``ctx`` for a bound).
``ValidationError`` is what a model raises with them. A model class is known by its
``_validated(values, loc)`` classmethod and its ``model_fields`` (``probed.model``).

The ground floor: no other probed module.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal

__all__ = [
    "MISSING",
    "AfterValidator",
    "AwareDatetime",
    "BeforeValidator",
    "Check",
    "Field",
    "FieldInfo",
    "Invalid",
    "Loc",
    "PlainValidator",
    "SecretStr",
    "ValidationError",
    "calling",
    "check_bounds",
    "compile_check",
    "error",
    "nested_check",
    "value_error",
]

Loc = tuple[int | str, ...]
Check = Callable[[Any, Loc], Any]
MISSING: Any = object()
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class ValidationError(ValueError):
    """Every problem of one validation; ``errors()`` lists them, ``str`` says them."""

    def __init__(self, title: str, errors: list[dict[str, Any]]) -> None:
        self.title = title
        self._errors = errors
        lines = [f"{len(errors)} validation error{'s' if len(errors) != 1 else ''} for {title}"]
        for err in errors:
            lines.append(".".join(str(p) for p in err["loc"]) or title)
            shown = repr(err["input"])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            lines.append(f"  {err['msg']} [type={err['type']}, input_value={shown}]")
        super().__init__("\n".join(lines))

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        """The errors, each ``{type, loc, msg, input}`` (and ``ctx`` for a bound)."""
        return [dict(err) for err in self._errors]

    def error_count(self) -> int:
        return len(self._errors)


class Invalid(Exception):
    """Errors found below one value (internal: ``ValidationError`` is what callers see)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors


def error(kind: str, loc: Loc, msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    """One error: ``{type, loc, msg, input}``, and ``ctx`` when given."""
    err: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        err["ctx"] = ctx
    return err


def fail(kind: str, loc: Loc, msg: str, value: Any, **ctx: Any) -> Invalid:
    return Invalid([error(kind, loc, msg, value, **ctx)])


def _either(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def value_error(loc: Loc, value: Any, exc: ValueError) -> Invalid:
    return fail("value_error", loc, f"Value error, {exc}", value, error=str(exc))


class SecretStr:
    """A secret that does not show itself in ``repr``, ``str`` or a dump."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Validator:
    # plain classes, not dataclasses: creating a dataclass costs about 0.8 ms of the start
    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class BeforeValidator(_Validator):
    """``Annotated`` metadata: ``func`` sees the input before the type's check."""

    __slots__ = ()


class AfterValidator(_Validator):
    """``Annotated`` metadata: ``func`` sees the value the type's check made."""

    __slots__ = ()


class PlainValidator(_Validator):
    """``Annotated`` metadata: ``func`` replaces the type's check."""

    __slots__ = ()


class _Aware:
    """``Annotated`` metadata: a datetime with its time zone."""


#: A datetime that names its time zone (an offset or ``Z``).
AwareDatetime = Annotated[datetime, _Aware()]


class FieldInfo:
    """One field: its annotation (``Annotated`` metadata split off), default and bounds."""

    __slots__ = ("annotation", "bounds", "default", "default_factory", "discriminator", "metadata")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Callable[[], Any] | None = None,
        discriminator: str | None = None,
        **bounds: Any,
    ) -> None:
        self.annotation: Any = None
        self.default = default
        self.default_factory = default_factory
        self.discriminator = discriminator
        self.metadata: tuple[Any, ...] = ()
        self.bounds = {k: v for k, v in bounds.items() if v is not None}

    def is_required(self) -> bool:
        return self.default is MISSING and self.default_factory is None

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def __repr__(self) -> str:
        return f"FieldInfo(annotation={self.annotation!r}, required={self.is_required()})"


def Field(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    discriminator: str | None = None,
) -> Any:
    """A field's default and bounds, or (in ``Annotated``) the key picking a union's model."""
    return FieldInfo(
        default,
        default_factory,
        discriminator,
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        min_length=min_length,
    )


def _bound_text(bound: Any) -> str:
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def check_bounds(bounds: Mapping[str, Any], inner: Check) -> Check:
    def check(value: Any, loc: Loc) -> Any:
        value = inner(value, loc)
        for key, bound in bounds.items():
            if key == "min_length":
                if len(value) < bound:
                    noun = "item" if bound == 1 else "items"
                    msg = f"List should have at least {bound} {noun} after validation, "
                    msg += f"not {len(value)}"
                    raise fail("too_short", loc, msg, value, min_length=bound)
                continue
            ok, kind, words = {
                "ge": (value >= bound, "greater_than_equal", "greater than or equal to"),
                "gt": (value > bound, "greater_than", "greater than"),
                "le": (value <= bound, "less_than_equal", "less than or equal to"),
                "lt": (value < bound, "less_than", "less than"),
            }[key]
            if not ok:
                msg = f"Input should be {words} {_bound_text(bound)}"
                raise fail(kind, loc, msg, value, **{key: bound})
        return value

    return check


def _as_str(value: Any, loc: Loc) -> Any:
    if isinstance(value, str):
        return value
    raise fail("string_type", loc, "Input should be a valid string", value)


def _as_int(value: Any, loc: Loc) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, float) and not isinstance(value, bool):
        if value.is_integer():
            return int(value)
        msg = "Input should be a valid integer, got a number with a fractional part"
        raise fail("int_from_float", loc, msg, value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            raise fail("int_parsing", loc, msg, value) from None
    raise fail("int_type", loc, "Input should be a valid integer", value)


def _as_float(value: Any, loc: Loc) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            msg = "Input should be a valid number, unable to parse string as a number"
            raise fail("float_parsing", loc, msg, value) from None
    raise fail("float_type", loc, "Input should be a valid number", value)


def _as_bool(value: Any, loc: Loc) -> Any:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        msg = "Input should be a valid boolean, unable to interpret input"
        raise fail("bool_parsing", loc, msg, value)
    raise fail("bool_type", loc, "Input should be a valid boolean", value)


def _as_path(value: Any, loc: Loc) -> Any:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise fail("path_type", loc, "Input should be a valid path", value)


def _as_datetime(value: Any, loc: Loc) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            msg = "Input should be a valid datetime (RFC 3339, e.g. 2027-01-15T08:00:00Z)"
            raise fail("datetime_from_date_parsing", loc, msg, value) from None
    raise fail("datetime_type", loc, "Input should be a valid datetime", value)


def _as_none(value: Any, loc: Loc) -> Any:
    if value is None:
        return None
    raise fail("none_required", loc, "Input should be None", value)


def _as_secret(value: Any, loc: Loc) -> Any:
    if isinstance(value, SecretStr):
        return value
    return SecretStr(_as_str(value, loc))


def _same(value: Any, loc: Loc) -> Any:
    return value


_PLAIN: dict[Any, Check] = {
    str: _as_str,
    int: _as_int,
    float: _as_float,
    bool: _as_bool,
    Path: _as_path,
    datetime: _as_datetime,
    NoneType: _as_none,
    SecretStr: _as_secret,
    Any: _same,
    object: _same,
}
"""The check of each scalar type (and ``Any``, which takes anything)."""


def _plain(kind: type) -> Check:
    if kind in _PLAIN:
        return _PLAIN[kind]
    raise TypeError(f"no check for the type {kind!r}")


def _literal(choices: tuple[Any, ...]) -> Check:
    expected = _either([repr(c) for c in choices])

    def check(value: Any, loc: Loc) -> Any:
        for choice in choices:
            if value == choice and type(value) is type(choice):
                return choice
        raise fail("literal_error", loc, f"Input should be {expected}", value, expected=expected)

    return check


def _exact(kind: Any, value: Any) -> bool:
    """Whether ``value`` is already of ``kind`` (a union tries those members first)."""
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _exact(typing.get_args(kind)[0], value)
    if origin is Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(kind))
    if origin is not None:
        return isinstance(origin, type) and isinstance(value, origin)
    if kind in (int, float, str, bool, NoneType):
        return type(value) is kind
    return isinstance(kind, type) and kind is not Any and isinstance(value, kind)


def _union(members: tuple[Any, ...]) -> Check:
    if NoneType in members:
        rest = tuple(m for m in members if m is not NoneType)
        inner = compile_check(rest[0]) if len(rest) == 1 else _union(rest)

        def nullable(value: Any, loc: Loc) -> Any:
            return None if value is None else inner(value, loc)

        return nullable
    checks = [(member, compile_check(member)) for member in members]

    def check(value: Any, loc: Loc) -> Any:
        for member, inner in checks:
            if _exact(member, value):
                return inner(value, loc)
        failures: list[list[dict[str, Any]]] = []
        for _, inner in checks:
            try:
                return inner(value, loc)
            except Invalid as exc:
                failures.append(exc.errors)
        deeper = [errs for errs in failures if any(len(e["loc"]) > len(loc) for e in errs)]
        if len(deeper) == 1:
            raise Invalid(deeper[0])
        words = [
            _WHAT.get(errs[0]["type"], errs[0]["msg"].removeprefix("Input should be "))
            for errs in failures
        ]
        expected = _either(list(dict.fromkeys(words)))
        raise fail("union_type", loc, f"Input should be {expected}", value)

    return check


_WHAT = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "path_type": "a path",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
}
"""What a union's member expects, by the type of the error it gave: the union's message."""


def _tagged(members: tuple[Any, ...], key: str) -> Check:
    by_tag: dict[Any, Any] = {}
    for member in members:
        by_tag[member.model_fields[key].default] = member
    expected = ", ".join(repr(tag) for tag in by_tag)

    def check(value: Any, loc: Loc) -> Any:
        if isinstance(value, tuple(by_tag.values())):
            return value
        if not isinstance(value, Mapping):
            msg = "Input should be a valid dictionary or object to extract fields from"
            raise fail("model_attributes_type", loc, msg, value)
        if key not in value:
            msg = f"Unable to extract tag using discriminator {key!r}"
            raise fail("union_tag_not_found", loc, msg, value, discriminator=key)
        tag = value[key]
        model = by_tag.get(tag) if isinstance(tag, str) else None
        if model is None:
            msg = (
                f"Input tag {tag!r} found using {key!r} does not match any of the "
                f"expected tags: {expected}"
            )
            raise fail("union_tag_invalid", loc, msg, value, tag=tag, expected_tags=expected)
        return model._validated(value, (*loc, tag))

    return check


def _annotated(kind: Any, metadata: tuple[Any, ...]) -> Check:
    before = [m.func for m in metadata if isinstance(m, BeforeValidator)]
    after = [m.func for m in metadata if isinstance(m, AfterValidator)]
    plain = [m.func for m in metadata if isinstance(m, PlainValidator)]
    tags = [m.discriminator for m in metadata if isinstance(m, FieldInfo) and m.discriminator]
    aware = any(isinstance(m, _Aware) for m in metadata)
    if plain:
        inner: Check = calling(plain[-1], None)
    elif tags:
        inner = _tagged(typing.get_args(kind), tags[0])
    else:
        inner = compile_check(kind)
    for func in before:
        inner = calling(func, inner, first=True)
    for func in after:
        inner = calling(func, inner)
    if aware:
        timed = inner

        def check(value: Any, loc: Loc) -> Any:
            value = timed(value, loc)
            if value.tzinfo is None:
                raise fail("timezone_aware", loc, "Input should have timezone info", value)
            return value

        return check
    return inner


def calling(func: Callable[[Any], Any], inner: Check | None, *, first: bool = False) -> Check:
    """``inner`` with ``func`` before it (``first``) or after it; alone when ``inner`` is None."""

    def call(value: Any, loc: Loc) -> Any:
        try:
            return func(value)
        except ValueError as exc:
            raise value_error(loc, value, exc) from None

    if inner is None:
        return call
    if first:
        return lambda value, loc: inner(call(value, loc), loc)
    return lambda value, loc: call(inner(value, loc), loc)


def _items(kind: type, item: Check, noun: str) -> Check:
    def check(value: Any, loc: Loc) -> Any:
        if not isinstance(value, list | tuple):
            raise fail(f"{noun}_type", loc, f"Input should be a valid {noun}", value)
        out: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, each in enumerate(value):
            try:
                out.append(item(each, (*loc, index)))
            except Invalid as exc:
                errors.extend(exc.errors)
        if errors:
            raise Invalid(errors)
        return kind(out)

    return check


def _mapping(key: Check, item: Check) -> Check:
    def check(value: Any, loc: Loc) -> Any:
        if not isinstance(value, Mapping):
            raise fail("dict_type", loc, "Input should be a valid dictionary", value)
        out: dict[Any, Any] = {}
        errors: list[dict[str, Any]] = []
        for name, each in value.items():
            try:
                out[key(name, (*loc, name))] = item(each, (*loc, name))
            except Invalid as exc:
                errors.extend(exc.errors)
        if errors:
            raise Invalid(errors)
        return out

    return check


def nested_check(model: Any) -> Check:
    """The check of a model class (its ``_validated``); an instance of it passes as it is."""

    def check(value: Any, loc: Loc) -> Any:
        if isinstance(value, model):
            return value
        if not isinstance(value, Mapping):
            msg = f"Input should be a valid dictionary or instance of {model.__name__}"
            raise fail("model_type", loc, msg, value, class_name=model.__name__)
        return model._validated(value, loc)

    return check


def compile_check(kind: Any) -> Check:
    """The check of one annotation."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is Annotated:
        return _annotated(args[0], kind.__metadata__)
    if origin is Literal:
        return _literal(args)
    if origin in (typing.Union, UnionType):
        return _union(args)
    if origin is list:
        return _items(list, compile_check(args[0]) if args else _plain(Any), "list")
    if origin is tuple:
        return _items(tuple, compile_check(args[0]) if args else _plain(Any), "tuple")
    if origin is dict:
        key, item = args if args else (Any, Any)
        return _mapping(compile_check(key), compile_check(item))
    if kind is list:
        return _items(list, _plain(Any), "list")
    if kind is dict:
        return _mapping(_plain(Any), _plain(Any))
    if isinstance(kind, type) and hasattr(kind, "_validated"):
        return nested_check(kind)
    return _plain(kind)
