"""Environment variables that look like overrides but set nothing.

``probed.configoverrides`` takes ``PROBED_<SECTION>__<KEY>`` as an override of one value and
silently ignores every other ``PROBED_*`` variable, so a typo
(``PROBED_DEAMON__LISTEN``) changes nothing and says nothing. ``unknown_overrides``
names each such variable, with the closest real setting when there is one: ``probed
check`` prints them as warnings, the daemon logs them at start.

Not reported: probed's own variables that are not settings (``PROBED_CONFIG``,
``PROBED_CLIENT_*``) and the variables the config itself reads secrets from
(``password = { env = "PROBED_LOGIN_PASSWORD" }``).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from probed.confighints import annotation_types
from probed.model import Model

__all__ = ["OWN_VARIABLES", "unknown_overrides"]

OWN_VARIABLES = ("PROBED_CONFIG", "PROBED_CLIENT_", "PROBED_TRACEBACK")
"""Variables (or prefixes) probed reads itself, outside the settings."""

_PREFIX = "PROBED_"
_DELIMITER = "__"


def _models(annotation: Any) -> list[type[Model]]:
    """The models an annotation may hold (through Optional, unions, Annotated, list, dict)."""
    found: list[type[Model]] = []
    for kind in annotation_types(annotation):
        origin = typing.get_origin(kind)
        if origin in (list, dict):
            args = typing.get_args(kind)[1:] if origin is dict else typing.get_args(kind)
            found += [model for arg in args for model in _models(arg)]
        elif isinstance(kind, type) and issubclass(kind, Model):
            found.append(kind)
    return found


def _is_dict(annotation: Any) -> bool:
    return any(typing.get_origin(kind) is dict for kind in annotation_types(annotation))


def _settings(model: type[Model], path: str = "") -> Iterable[str]:
    """Every variable name (upper case, without the prefix) that sets a value of ``model``.

    A dict's keys (target names, header names) appear as ``*``; a section, a table and
    one entry of a table are settings too (given as JSON); the top-level lists are left out.
    """
    for name, field in model.model_fields.items():
        here = f"{path}{name.upper()}"
        annotation = field.annotation
        if typing.get_origin(annotation) is list and not path:
            continue  # a top-level list (probes, slos): refused with its own message
        yield here
        models = _models(annotation)
        if _is_dict(annotation):
            yield f"{here}{_DELIMITER}*"
            for sub in models:
                yield from _settings(sub, f"{here}{_DELIMITER}*{_DELIMITER}")
        elif models and typing.get_origin(annotation) is not list:
            for sub in models:
                yield from _settings(sub, f"{here}{_DELIMITER}")


def _matches(parts: list[str], pattern: list[str]) -> bool:
    return len(parts) == len(pattern) and all(
        want == "*" or got == want for got, want in zip(parts, pattern, strict=True)
    )


def _concrete(setting: str, parts: list[str]) -> str:
    """``setting`` with each ``*`` replaced by the variable's name at that level."""
    levels = setting.split(_DELIMITER)
    return _DELIMITER.join(
        (parts[i] if i < len(parts) else "NAME") if level == "*" else level
        for i, level in enumerate(levels)
    )


def unknown_overrides(
    environ: Mapping[str, str], model: type[Model], referenced: Iterable[str] = ()
) -> list[str]:
    """A warning for each ``PROBED_*`` variable that sets nothing (names match without case).

    ``referenced``: the variables the config reads secrets from (never reported).
    """
    known = sorted(set(_settings(model)))
    lists = {
        name.upper()
        for name, field in model.model_fields.items()
        if typing.get_origin(field.annotation) is list
    }
    skip = {name.upper() for name in referenced}
    warnings = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(_PREFIX) or upper in skip:
            continue
        if any(upper.startswith(own) for own in OWN_VARIABLES):
            continue
        rest = upper.removeprefix(_PREFIX)
        parts = rest.split(_DELIMITER)
        if parts[0] in lists:
            continue  # refused with its own message (lists come from the file)
        if _DELIMITER not in rest and not any(
            rest.startswith(f"{k.split('__')[0]}_") for k in known
        ):
            continue  # not shaped like an override: a secret's variable, say
        if any(_matches(parts, k.split(_DELIMITER)) for k in known):
            continue
        concrete = [_concrete(k, parts) for k in known]
        guess = difflib.get_close_matches(rest, concrete, n=1, cutoff=0.75)
        hint = f"; did you mean {_PREFIX}{guess[0]}?" if guess else ""
        warnings.append(f"environment variable {variable} names no setting{hint}")
    return warnings
