"""``PROBED_…`` environment variables as overrides of the configuration's values.

``overrides`` reads them for ``Config`` (prefix ``PROBED_``, ``__`` between levels, names
without regard to case); ``merge`` lays them over the file's values:

- ``PROBED_<FIELD>`` sets a top-level field, ``PROBED_<FIELD>__<KEY>…`` a value below
  it (``PROBED_DAEMON__LISTEN``, ``PROBED_TARGETS__APP__BASE_URL``); names are
  lower-cased, and so are the keys they make (a target's name);
- a value for a model, a dict or a list is JSON (``PROBED_ALERTING__WEBHOOK_URLS='["…"]'``,
  ``PROBED_DAEMON='{"listen": "…"}'``, its keys matched to the fields without case), and
  JSON that does not parse raises ``SettingsError`` naming the variable, except
  for a union (``[fleet]``) or a dict's value, which keep the string; an empty value
  below a field is never JSON. Every other value is the string, for validation to parse;
- a JSON object and the variables below the same field merge, and ``merge`` puts the
  result over the file's values dict into dict (a model instance given in place of a
  dict is replaced, not merged into);
- a variable naming no field (``PROBED_CONFIG``, ``PROBED_DEAMON__LISTEN``) sets
  nothing (``probed.configenv`` warns about those that look like overrides), but a
  key a section does not have (``PROBED_DAEMON__FOO``) reaches validation, which
  refuses it.

Aliases, which the configuration does not use, are not handled.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from probed.model import FieldInfo, Model

__all__ = ["DELIMITER", "PREFIX", "SettingsError", "merge", "overrides"]

PREFIX = "PROBED_"
"""What every override's name starts with."""
DELIMITER = "__"
"""What separates the levels of an override's name."""

_COMPLEX = (Model, Mapping, Sequence, tuple, set, frozenset, deque)


class SettingsError(ValueError):
    """A variable's value had to be JSON (for a model, dict or list) and is not."""

    def __init__(self, variable: str, error: ValueError) -> None:
        self.variable = variable.upper()
        super().__init__(
            f"environment variable {self.variable}: a section, list or dict is given as JSON, "
            f"and this value is not ({error})"
        )


def _json(variable: str, text: str, lenient: bool) -> Any:
    """``text`` parsed as JSON; if it is not JSON, ``text`` itself when ``lenient``, else
    ``SettingsError`` naming ``variable``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if lenient:
            return text
        raise SettingsError(variable, exc) from None


def _subclass(kind: Any, parents: type | tuple[type, ...]) -> bool:
    """``issubclass`` that is False for what is not a class (``list[str]``, ``None``)."""
    try:
        return isinstance(kind, type) and issubclass(kind, parents)
    except TypeError:
        return False


def _is_model(kind: Any) -> bool:
    return _subclass(kind, Model) and kind is not Model


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _complex_type(kind: Any) -> bool:
    if _subclass(kind, (str, bytes)):
        return False
    return _subclass(kind, _COMPLEX) or dataclasses.is_dataclass(kind)


def _is_complex(annotation: Any) -> bool:
    """Whether a value for ``annotation`` is given as JSON (a model, mapping, sequence)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_complex(typing.get_args(annotation)[0])
    return _complex_type(annotation) or _complex_type(origin)


def _union_is_complex(annotation: Any) -> bool:
    for member in typing.get_args(annotation):
        if _is_complex(member):
            return True
        while typing.get_origin(member) is Annotated:
            member = typing.get_args(member)[0]
        if _is_union(typing.get_origin(member)) and _union_is_complex(member):
            return True
    return False


def _field_is_complex(field: FieldInfo) -> tuple[bool, bool]:
    """(value is JSON, a value that is not JSON is kept as the string: a union)."""
    if _is_complex(field.annotation):
        return True, False
    if _is_union(typing.get_origin(field.annotation)) and _union_is_complex(field.annotation):
        return True, True
    return False, False


def _next_field(field: Any, key: str) -> Any:
    """What ``key`` leads to below ``field``: a model's field, a dict's value type, or None."""
    if not field:
        return None
    annotation: Any = field.annotation if isinstance(field, FieldInfo) else field
    for member in typing.get_args(annotation):
        if found := _next_field(member, key):
            return found
    if _subclass(typing.get_origin(annotation), dict):
        return typing.get_args(annotation)[-1]
    if _is_model(annotation):
        for name, sub in annotation.model_fields.items():
            if key.lower() in (name.lower(), f"{PREFIX}{name}".lower()):
                return sub
    return None


def _nested(prefix: str, field: FieldInfo, environ: Mapping[str, str]) -> dict[str, Any]:
    """The variables below one field (``prefix``: its lower-cased name and ``__``), nested."""
    annotation = field.annotation
    is_dict = annotation is dict or _subclass(typing.get_origin(annotation), dict)
    result: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(prefix):
            continue
        *keys, last = name[len(prefix) :].split(DELIMITER)
        holder: Any = result
        target: Any = field
        for key in keys:
            target = _next_field(target, key)
            if isinstance(holder, dict):
                holder = holder.setdefault(key, {})
        target = _next_field(target, last)
        value: Any = text
        if (target or is_dict) and text:
            if isinstance(target, FieldInfo):
                is_complex, lenient = _field_is_complex(target)
            elif target:
                is_complex, lenient = _is_complex(target), True
            else:
                is_complex, lenient = True, True
            if is_complex:
                value = _json(name, text, lenient)
        if isinstance(holder, dict):
            holder[last] = value
    return result


def _field_names(field: FieldInfo, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with keys renamed to the fields of ``field``'s model they match without case."""
    annotation: Any = field.annotation
    if _is_union(typing.get_origin(annotation)):
        members = typing.get_args(annotation)
        if len(members) == 2 and type(None) in members:
            annotation = members[0]
    if not annotation or not hasattr(annotation, "model_fields"):
        return dict(values)
    fields: dict[str, FieldInfo] = annotation.model_fields
    renamed: dict[str, Any] = {}
    for name, value in values.items():
        key = next((f for f in fields if f.lower() == name.lower()), None)
        if key is None:
            renamed[name] = value
        elif _subclass(fields[key].annotation, Model) and isinstance(value, dict):
            renamed[key] = _field_names(fields[key], value)
        else:
            renamed[key] = value
    return renamed


def _field_value(name: str, field: FieldInfo, environ: Mapping[str, str]) -> Any:
    """What the environment sets for one top-level field (None: nothing)."""
    variable = f"{PREFIX}{name}".lower()
    text = environ.get(variable)
    is_complex, lenient = _field_is_complex(field)
    if not is_complex:
        return text
    nested = f"{variable}{DELIMITER}"
    if text is None:
        return _nested(nested, field, environ) or None
    value = _json(variable, text, lenient)
    if isinstance(value, dict):
        return merge(value, _nested(nested, field, environ))
    return value


def overrides(model: type[Model], environ: Mapping[str, str]) -> dict[str, Any]:
    """The values the ``PROBED_…`` variables of ``environ`` set on ``model``'s fields.

    Raises ``SettingsError`` when a value that must be JSON is not.
    """
    lowered = {name.lower(): value for name, value in environ.items()}
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = _field_value(name, field, lowered)
        if value is not None:
            data[name] = _field_names(field, value) if isinstance(value, dict) else value
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on it: a dict in both merges, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
