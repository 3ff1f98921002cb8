"""The probe registry, the config's unions and its tuples of kind models are one list of
kinds; the README's failure reasons and ``Reason`` are one set."""

from __future__ import annotations

import importlib
import re
import typing
from pathlib import Path
from types import ModuleType

import pytest

from probed.config import KINDS, PROBE_MODELS, SPEC_MODELS, AnySpec, ProbeSpec, SseStream
from probed.model import Model
from probed.probes import PROBERS
from probed.results import Reason

README = Path(__file__).parent.parent / "README.md"


def _spec_models(spec: object = ProbeSpec) -> list[type[Model]]:
    union, *_metadata = typing.get_args(spec)  # Annotated[A | B | C, Field(...)]
    return list(typing.get_args(union))


def _kind_of(model: type[Model]) -> str:
    (kind,) = typing.get_args(model.model_fields["kind"].annotation)
    assert isinstance(kind, str)
    return kind


def test_registry_matches_spec_union() -> None:
    """``PROBERS`` has exactly one entry per ``kind`` literal of the ``ProbeSpec`` union."""
    assert {_kind_of(model) for model in _spec_models()} == set(PROBERS)


def test_unions_and_tuples_are_one_list() -> None:
    """``ProbeSpec`` holds ``PROBE_MODELS``; ``AnySpec`` holds ``SPEC_MODELS``: those, then sse."""
    assert list(PROBE_MODELS) == _spec_models(ProbeSpec)
    assert list(SPEC_MODELS) == _spec_models(AnySpec)
    assert (*PROBE_MODELS, SseStream) == SPEC_MODELS


def test_kinds_name_every_model_in_order() -> None:
    """``KINDS`` is the ``kind`` of each config model, in order, each once."""
    assert tuple(_kind_of(model) for model in SPEC_MODELS) == KINDS
    assert len(set(KINDS)) == len(KINDS)
    assert {*PROBERS, "sse"} == set(KINDS)


@pytest.mark.parametrize("model", _spec_models(), ids=_kind_of)
def test_each_kind_takes_its_own_spec_model(model: type[Model]) -> None:
    """The function registered for a kind is annotated with that kind's spec model."""
    hints = typing.get_type_hints(PROBERS[_kind_of(model)])

    assert model is hints["spec"]


def test_registry_is_read_only() -> None:
    """The registry cannot be changed at run time."""
    with pytest.raises(TypeError):
        PROBERS["http"] = PROBERS["login"]  # type: ignore[index]


def _modules_with_all() -> list[str]:
    """Every module of probed that declares ``__all__`` (imported to find out)."""
    import pkgutil

    import probed

    names = []
    for info in pkgutil.walk_packages(probed.__path__, "probed."):
        if info.name.endswith("__main__"):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules_with_all())
def test_all_is_sorted_and_honest(name: str) -> None:
    """Each module's ``__all__`` is sorted and names only what the module defines."""
    module: ModuleType = importlib.import_module(name)
    exported = list(module.__all__)

    def group(item: str) -> tuple[int, str]:  # constants, then classes, then the rest
        kind = 0 if item.isupper() else 1 if item[:1].isupper() else 2
        return kind, item

    assert sorted(exported, key=group) == exported
    assert [] == [item for item in exported if not hasattr(module, item)]


def test_readme_lists_every_reason() -> None:
    """The README's failure-reason table lists exactly the ``Reason`` values, in order."""
    text = README.read_text(encoding="utf-8")
    table = text.split("## Failure reasons", 1)[1].split("\n## ", 1)[0]

    assert [r.value for r in Reason] == re.findall(r"^\| `([a-z_]+)` \|", table, re.M)


@pytest.mark.parametrize("model", SPEC_MODELS, ids=lambda m: m.__name__)
def test_every_kind_declares_its_traits(model: type) -> None:
    """A new kind must say which component it joins and whether it reports an HTTP status."""
    own = vars(model)
    assert "COMPONENT" in own, f"{model.__name__} does not set COMPONENT"
    assert "REPORTS_HTTP_STATUS" in own, f"{model.__name__} does not set REPORTS_HTTP_STATUS"


def test_default_components_come_from_the_kinds_traits(tmp_path: Path) -> None:
    """GET/HEAD http is API Read, other http, login and fixture API Write, and so on."""
    from probed.config import default_components, load_config

    path = tmp_path / "probes.toml"
    path.write_text(
        '[targets.t]\nbase_url = "http://127.0.0.1:9"\n'
        '[[probes]]\nname = "get"\nkind = "http"\ntarget = "t"\n'
        '[[probes]]\nname = "post"\nkind = "http"\ntarget = "t"\nmethod = "POST"\n'
        '[[probes]]\nname = "feed"\nkind = "sse"\ntarget = "t"\n'
        '[[probes]]\nname = "job"\nkind = "import"\ntarget = "t"\n'
    )
    assert {
        "API Read": ["get"], "API Write": ["post"], "SSE Stream": ["feed"],
        "Background Jobs": ["job"], "Console/Admin": [],
    } == {c.name: c.probes for c in default_components(load_config(path, {}))}  # fmt: skip


def test_the_shared_all_kinds_config_has_every_kind() -> None:
    """tests/kinds.py names one probe of each kind, so tests built on it cover a new kind."""
    import tomllib

    from kinds import ALL_KINDS_TOML

    assert set(KINDS) == {p["kind"] for p in tomllib.loads(ALL_KINDS_TOML)["probes"]}
