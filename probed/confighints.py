"""Hints added to config errors: the key that was probably meant, the unit that was wanted.

Pure functions over the config models and error dictionaries; ``probed.config``
appends their text to the one-line problem it reports.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from probed.model import Model

__all__ = ["annotation_types", "did_you_mean", "known_keys", "ratio_hint"]


def annotation_types(annotation: Any) -> list[Any]:
    """The types an annotation may hold, through Annotated, Optional and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return annotation_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in annotation_types(arg)]
    return [annotation]


def known_keys(model: type[Model], loc: Sequence[int | str]) -> list[str]:
    """The keys allowed beside the last element of ``loc`` (a validation error's location).

    Follows model fields, list indexes, dict keys and discriminated-union tags (the kind
    names validation puts in the location); [] when the path cannot be followed.
    """
    current: list[Any] = [model]
    for part in loc[:-1]:
        following: list[Any] = []
        for candidate in current:
            for t in annotation_types(candidate):
                origin = typing.get_origin(t)
                if origin is list and isinstance(part, int):
                    following.extend(annotation_types(typing.get_args(t)[0]))
                elif origin is dict:
                    following.extend(annotation_types(typing.get_args(t)[1]))
                elif isinstance(t, type) and issubclass(t, Model):
                    field = t.model_fields.get(str(part))
                    if field is not None:
                        following.append(field.annotation)
                    elif _tag_of(t) == part:
                        following.append(t)
        current = following
    keys = {
        name
        for candidate in current
        for t in annotation_types(candidate)
        if isinstance(t, type) and issubclass(t, Model)
        for name in t.model_fields
    }
    return sorted(keys)


def _tag_of(model: type[Model]) -> object:
    """The ``kind`` literal of a probe model (its discriminator tag), if it has one."""
    field = model.model_fields.get("kind")
    return None if field is None else field.default


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def ratio_hint(key: str, err: Mapping[str, Any]) -> str:
    """For a ratio written as a percentage (``objective = 99.9``): how to write it."""
    value = err.get("input")
    ctx = err.get("ctx") or {}
    bound = ctx.get("lt", ctx.get("le"))
    if (
        err.get("type") in ("less_than", "less_than_equal")
        and bound == 1
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and 1 < value <= 100
    ):
        return f"; the {key} is a ratio: {value:g} % is {value / 100:g}"
    return ""
