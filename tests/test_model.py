"""The config models' own checks (``probed.model``): types, strings parsed, bounds, unions
picked by a key, validators, every error with its location, frozen instances."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest

from probed.model import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    Model,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)


def _halve(value: object) -> object:
    if isinstance(value, str) and value.endswith("%"):
        return float(value[:-1]) / 100
    return value


class Inner(Model):
    name: str
    weight: int = Field(default=1, ge=1, le=10)


class A(Model):
    kind: Literal["a"] = "a"
    size: int = 0


class B(Model):
    kind: Literal["b"] = "b"
    label: str


class Outer(Model):
    TRAIT: ClassVar[str] = "not a field"
    count: int
    ratio: Annotated[float, BeforeValidator(_halve)] = Field(default=0.5, gt=0.0, lt=1.0)
    flag: bool = False
    where: Path = Path("/tmp")
    mode: Literal["x", "y", "z"] = "x"
    names: list[str] = Field(default_factory=list)
    pairs: tuple[int, ...] = ()
    inners: dict[str, Inner] = Field(default_factory=dict)
    maybe: Inner | None = None
    either: str | Inner = "plain"
    equals: str | int | float | bool | None = None
    picked: list[Annotated[A | B, Field(discriminator="kind")]] = Field(default_factory=list)
    at: AwareDatetime | None = None
    tagged: Annotated[str, PlainValidator(lambda v: f"<{v}>")] = ""
    listed: Annotated[list[int], AfterValidator(sorted)] = Field(default_factory=list)
    _seen: list[str] = PrivateAttr(default_factory=list)

    @field_validator("names")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not n for n in value):
            raise ValueError("names must not be empty")
        return value

    @model_validator(mode="after")
    def _count_names(self) -> Outer:
        if self.names and len(self.names) > self.count:
            raise ValueError(f"{len(self.names)} names for a count of {self.count}")
        return self


def _errors(values: dict[str, Any]) -> list[tuple[str, tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Outer(**values)
    return [(e["type"], e["loc"], e["msg"]) for e in caught.value.errors()]


def test_values_are_checked_and_strings_parsed() -> None:
    """TOML values pass as they are; the strings of the environment are parsed."""
    got = Outer(
        count="3",
        ratio="25%",
        flag="yes",
        where="/var/x",
        names=("a", "b"),
        pairs=[1, 2.0],
        inners={"i": {"name": "n", "weight": 2}},
        maybe={"name": "m"},
        at="2027-01-15T08:00:00Z",
        tagged="t",
        listed=[3, 1, 2],
    )
    assert (3, 0.25, True, Path("/var/x")) == (got.count, got.ratio, got.flag, got.where)
    assert (["a", "b"], (1, 2)) == (got.names, got.pairs)
    assert Inner(name="n", weight=2) == got.inners["i"]
    assert got.maybe is not None
    assert 1 == got.maybe.weight
    assert datetime(2027, 1, 15, 8, tzinfo=UTC) == got.at
    assert ("<t>", [1, 2, 3]) == (got.tagged, got.listed)
    assert ["count", "ratio"] == list(Outer.model_fields)[:2]
    assert not {"TRAIT", "_seen"} & set(Outer.model_fields)
    assert [] == got._seen


def test_every_error_is_reported_with_its_location() -> None:
    """All the problems of one table at once, each with its key path and its type."""
    assert [
        ("int_parsing", ("count",), "Input should be a valid integer, unable to parse string "
         "as an integer"),
        ("less_than", ("ratio",), "Input should be less than 1"),
        ("bool_parsing", ("flag",), "Input should be a valid boolean, unable to interpret input"),
        ("literal_error", ("mode",), "Input should be 'x', 'y' or 'z'"),
        ("string_type", ("names", 1), "Input should be a valid string"),
        ("int_from_float", ("pairs", 0), "Input should be a valid integer, got a number with a "
         "fractional part"),
        ("missing", ("inners", "i", "name"), "Field required"),
        ("greater_than_equal", ("inners", "i", "weight"), "Input should be greater than or "
         "equal to 1"),
        ("extra_forbidden", ("inners", "i", "nmae"), "Extra inputs are not permitted"),
        ("timezone_aware", ("at",), "Input should have timezone info"),
        ("extra_forbidden", ("bogus",), "Extra inputs are not permitted"),
    ] == _errors(
        {
            "count": "three",
            "ratio": 99.9,
            "flag": "maybe",
            "mode": "w",
            "names": ["a", 2],
            "pairs": [1.5],
            "inners": {"i": {"nmae": "n", "weight": 0}},
            "at": datetime(2027, 1, 15, 8),
            "bogus": 1,
        }
    )  # fmt: skip
    assert [("missing", ("count",), "Field required")] == _errors({})


def test_validators_raise_value_errors_at_their_field_or_model() -> None:
    """A field validator's ValueError is at the field; a model validator's at the model,
    and it runs only once every field is valid."""
    assert [("value_error", ("names",), "Value error, names must not be empty")] == _errors(
        {"count": 1, "names": [""]}
    )
    assert [("value_error", (), "Value error, 2 names for a count of 1")] == _errors(
        {"count": 1, "names": ["a", "b"]}
    )
    assert ["int_parsing"] == [e[0] for e in _errors({"count": "x", "names": ["a", "b"]})]


def test_a_union_keeps_exact_types_and_picks_a_model_by_its_key() -> None:
    """``True`` stays a bool in ``str | int | float | bool``; a table is the model its
    ``kind`` names, and the error of a bad one is below that kind."""
    assert True is Outer(count=1, equals=True).equals
    assert [1, 1.5] == [Outer(count=1, equals=v).equals for v in (1, 1.5)]
    got = Outer(count=1, either={"name": "n"}, picked=[{"kind": "b", "label": "l"}, {"kind": "a"}])
    assert isinstance(got.either, Inner)
    assert [B, A] == [type(p) for p in got.picked]
    assert [
        ("union_tag_invalid", ("picked", 0)),
        ("missing", ("picked", 1, "b", "label")),
        ("int_parsing", ("picked", 2, "a", "size")),
        ("union_tag_not_found", ("picked", 3)),
    ] == [
        (t, loc)
        for t, loc, _ in _errors(
            {"count": 1, "picked": [{"kind": "c"}, {"kind": "b"}, {"kind": "a", "size": "s"}, {}]}
        )
    ]
    assert [("missing", ("either", "name"))] == [
        (t, loc) for t, loc, _ in _errors({"count": 1, "either": {}})
    ]
    assert [("union_type", ("either",), "Input should be a string or a table")] == _errors(
        {"count": 1, "either": 5}
    )
    assert [("union_type", ("equals",), "Input should be a string, an integer, a number or a "
             "boolean")] == _errors({"count": 1, "equals": [1]})  # fmt: skip


def test_an_instance_is_frozen_but_its_private_attributes_are_not() -> None:
    """Fields cannot be set after validation; private attributes can; a copy with an
    update is a new instance, and equality compares the values."""
    got = Outer(count=1)
    with pytest.raises(AttributeError, match="frozen"):
        got.count = 2
    got._seen = ["x"]
    changed = got.model_copy(update={"count": 2})
    assert (1, 2, ["x"]) == (got.count, changed.count, changed._seen)
    assert Outer(count=1) == Outer(count="1") != Outer(count=2)
    assert Inner.model_validate({"name": "n"}) == Inner(name="n")
    assert got is Outer.model_validate(got)


def test_a_secret_does_not_show_itself() -> None:
    """``SecretStr`` hides its value from repr, str and a dump of the model holding it."""
    secret = SecretStr("s3cret")
    assert "s3cret" not in f"{secret!r} {secret}"
    assert "s3cret" == secret.get_secret_value()


def test_the_error_text_names_each_location() -> None:
    """``str(ValidationError)`` lists each error under its dotted location."""
    with pytest.raises(ValidationError, match=r"inners\.i\.weight\n  Input should be greater"):
        Outer(count=1, inners={"i": {"name": "n", "weight": 0}})


def test_a_validator_of_a_field_the_model_lacks_is_a_programming_error() -> None:
    """A misspelt field name in ``field_validator`` fails the first validation loudly."""

    class Typo(Model):
        name: str

        @field_validator("nmae")
        @classmethod
        def _check(cls, value: str) -> str:
            return value

    with pytest.raises(TypeError, match="checks no field"):
        Typo(name="x")
