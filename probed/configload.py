"""Loading the configuration: read, parse, validate, and report every problem at once.

``load_config`` reads the file (``probed.configfile``), validates it and
the environment's overrides (``probed.configsettings``), turns each validation error into
one line naming the file, the line, the probe (or section) and the key, and adds the
problems of ``probed.configproblems``: all of them in one ``ConfigError``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_origin

from probed.configchecks import env_list_problems, without_invalid_keys
from probed.configenv import unknown_overrides
from probed.configfile import config_digest, decode_config_text, parse_toml, read_config_bytes
from probed.confighints import did_you_mean, known_keys, ratio_hint
from probed.configlocate import Locator
from probed.configoverrides import PREFIX, SettingsError
from probed.configprobes import KINDS
from probed.configproblems import semantic_problems
from probed.configsettings import Config
from probed.errors import ConfigError
from probed.model import ValidationError
from probed.webconfig import load_web_config

__all__ = ["load_config"]


_NOUNS = {
    "slos": ("slo", "name"),
    "components": ("component", "name"),
    "playbooks": ("playbook", "scenario"),
}
"""Arrays of tables other than probes: the noun and the key naming an element."""


def _describe_loc(
    loc: Sequence[int | str], raw: Mapping[str, Any], locator: Locator
) -> tuple[int | None, str]:
    """Turn a validation error's location into (line, 'probe 'x' (probes[3]) key 'y'')."""
    parts = [str(p) for p in loc]
    if not parts:
        return None, "config"
    section = parts[0]
    if section == "probes" and len(parts) >= 2 and parts[1].isdigit():
        index = int(parts[1])
        rest = parts[2:]
        if rest and rest[0] in KINDS:
            rest = rest[1:]
        key = ".".join(rest) if rest else None
        probes = raw.get("probes")
        name = None
        if isinstance(probes, list) and index < len(probes) and isinstance(probes[index], dict):
            name = probes[index].get("name")
        who = f"probe {name!r} (probes[{index}])" if name else f"probes[{index}]"
        line = locator.line("probes", index, key)
        return line, f"{who} key {key!r}" if key else who
    if section == "maintenance" and len(parts) >= 2 and parts[1].isdigit():
        key = ".".join(parts[2:]) or None
        line = locator.line(section, int(parts[1]), key)
        return line, f"maintenance[{parts[1]}] key {key!r}" if key else f"maintenance[{parts[1]}]"
    if section in _NOUNS and len(parts) >= 2 and parts[1].isdigit():
        index = int(parts[1])
        key = ".".join(parts[2:]) or None
        items = raw.get(section)
        name = None
        noun, name_key = _NOUNS[section]
        if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
            name = items[index].get(name_key)
        who = f"{noun} {name!r} ({section}[{index}])" if name else f"{section}[{index}]"
        line = locator.line(section, index, key)
        return line, f"{who} key {key!r}" if key else who
    if section == "targets" and len(parts) >= 2:
        key = ".".join(parts[2:]) or None
        line = locator.line(f"targets.{parts[1]}", None, key)
        return line, f"target {parts[1]!r} key {key!r}" if key else f"target {parts[1]!r}"
    if section in ("daemon", "recommend", "alerting"):
        key = ".".join(parts[1:]) or None
        where = f"[{section}] key {key!r}" if key else f"[{section}]"
        return locator.line(section, None, key), where
    return locator.line(section, None, None), f"key {'.'.join(parts)!r}"


def _env_origin(loc: Sequence[int | str]) -> str:
    """`` (from environment variable NAME)`` if a set variable could have set ``loc``, else ''."""
    if not loc or loc[0] == "probes":
        return ""
    name = "PROBED_" + "__".join(str(p).upper() for p in loc)
    return f" (from environment variable {name})" if name in os.environ else ""


def _schema_problems(
    exc: ValidationError, path: Path, raw: Mapping[str, Any], locator: Locator
) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
        line, where = _describe_loc(loc, raw, locator)
        if err["type"] == "union_tag_invalid":
            kind = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
            msg = f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}"
        elif err["type"] == "union_tag_not_found":
            msg = f"missing key 'kind'; expected one of: {', '.join(KINDS)}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(str(loc[-1]), known_keys(Config, loc))
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            msg += ratio_hint(str(loc[-1]), err)
        origin = _env_origin(loc)
        problems.append(f"{path}{f':{line}' if line else ''}: {where}{origin}: {msg}")
    return problems


def _problems_beside(
    exc: ValidationError,
    raw: Mapping[str, Any],
    path: Path,
    locator: Locator,
    environ: Mapping[str, str],
    secrets: bool,
) -> list[str]:
    """The semantic problems of the parts ``exc`` did not refuse (none if they cannot be told)."""
    found = without_invalid_keys(raw, (e["loc"] for e in exc.errors()), KINDS)
    if found is None:
        return []
    repaired, refused = found
    try:
        cfg = Config(**repaired)
    except ValidationError:
        return []
    problems = semantic_problems(cfg, path, locator, environ, secrets)
    return [p for p in problems if not any(e in p for e in refused)]


def load_config(
    path: Path | str, environ: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Config:
    """Read, validate and resolve the configuration; raise ``ConfigError`` listing every problem.

    The config (and the error, once the file could be read) carries the file's hash. With
    ``secrets=False`` no secret is read (nor missing): for commands that never probe
    (``rules``, ``status``, ``healthcheck``); such a config cannot run probes that need one.
    """
    path = Path(path)
    loaded_at = time.time()
    data = read_config_bytes(path)
    try:
        cfg = _validated(path, decode_config_text(data, path), environ, secrets)
    except ConfigError as exc:
        exc.file_hash = config_digest(data)
        raise
    cfg._hash, cfg._loaded_at = config_digest(data), loaded_at
    return cfg


def _validated(
    path: Path, text: str, environ: Mapping[str, str] | None, secrets: bool = True
) -> Config:
    environ = os.environ if environ is None else environ
    raw = parse_toml(text, path)
    locator = Locator(text)
    lists = [name for name, f in Config.model_fields.items() if get_origin(f.annotation) is list]
    if env_problems := env_list_problems(path, os.environ, PREFIX, lists):
        raise ConfigError(env_problems)
    try:
        cfg = Config(**raw)
    except SettingsError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    except ValidationError as exc:
        problems = _schema_problems(exc, path, raw, locator)
        beside = _problems_beside(exc, raw, path, locator, environ, secrets)
        raise ConfigError(problems + beside) from None
    cfg._source = path
    referenced = [
        ref.env
        for owner in [*cfg.probes, *cfg.targets.values()]
        for _, ref in owner.secret_refs()
        if ref.env is not None
    ]
    cfg._warnings = unknown_overrides(os.environ, Config, referenced)
    problems = semantic_problems(cfg, path, locator, environ, secrets)
    if not cfg.probes and not cfg.daemon.allow_no_probes:
        problems.append(
            f"{path}: no probes configured (an empty or cut-short file?); "
            "set allow_no_probes = true under [daemon] if that is intended"
        )
    web_file = cfg.daemon.web_config_file
    if web_file is not None:
        web_path = web_file if web_file.is_absolute() else path.parent / web_file
        try:
            cfg._web = load_web_config(web_path, _env_origin(("daemon", "web_config_file")))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cfg
