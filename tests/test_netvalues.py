"""Bounded conversions of values read from the network."""

from __future__ import annotations

import json

import pytest

from probed.jsonpath import getter, lookup
from probed.netvalues import MAX_JSON_DEPTH, JsonTooDeep, json_depth, json_loads, sequence_number


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[["]', 1),
        ("[[], [], [[]]]", 3),
    ],
)
def test_json_depth_ignores_brackets_inside_strings(text: str, depth: int) -> None:
    """Nesting depth counts arrays and objects, not brackets inside string values."""
    assert depth == json_depth(text)


@pytest.mark.parametrize("payload", ["[" * 200_000, '{"a":' * 100_000, b"[" * 300])
def test_deep_json_is_refused_before_parsing(payload: str | bytes) -> None:
    """JSON nested past the bound raises JsonTooDeep (a ValueError), never RecursionError."""
    with pytest.raises(JsonTooDeep):
        json_loads(payload)
    assert issubclass(JsonTooDeep, ValueError)


def test_json_at_the_bound_and_wide_documents_parse() -> None:
    """Exactly MAX_JSON_DEPTH levels parse, as do wide documents with many brackets."""
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json.loads(deep) == json_loads(deep)
    wide = json.dumps([{"i": i, "v": [i]} for i in range(10_000)])
    assert 10_000 == len(json_loads(wide.encode()))


def test_invalid_utf8_bytes_are_a_value_error() -> None:
    """Undecodable bytes with many brackets are a ValueError like any invalid JSON."""
    with pytest.raises(ValueError, match="utf-8"):
        json_loads(b"\xff" + b"[" * 300)


@pytest.mark.parametrize(
    "text",
    [
        '{"seq": 12, "enqueued_at": 1764745200.123456, "payload": {"n": [1, 2.5, "x"]}}',
        '{"big": 18446744073709551616, "neg": -9223372036854775809, "id": "x"}',
        '{"epoch": 123456789012345678901234567890}',
        '{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400}',
        '{"a": 1, "a": 2}',
        '"\\ud800"',
        "[-0, -0.0, 1e-400, 1.7976931348623157e308]",
        "\ufeff[1]",
        "[1,",
        '"\x01"',
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_json_loads_reads_what_json_reads(text: str, as_bytes: bool) -> None:
    """Whoever parses, the result is json's: huge integers stay integers, NaN and a lone
    surrogate parse, and what json refuses is refused (with a ValueError)."""
    data = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        expected = json.loads(data)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            json_loads(data)
        return
    got = json_loads(data)
    assert repr(expected) == repr(got)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("42", 42),
        ("007", 7),
        (-3, -3),
        ("9" * 18, 10**18 - 1),
        ("9" * 19, None),
        ("7" * 5000, None),
        (10**18, None),
        ("\u00b2", None),
        ("\u0663", None),
        ("-1", None),
        ("", None),
        (True, None),
        (1.5, None),
        (None, None),
        ([1], None),
    ],
)
def test_sequence_number_within_bounds(value: object, expected: int | None) -> None:
    """Only ints and short ASCII digit strings are sequence numbers; nothing else raises."""
    assert expected == sequence_number(value)


_DOC = {"a": {"b": None, "c": [5, {"d": "x"}]}, "0": "zero", "n": 3, "": "empty"}


@pytest.mark.parametrize(
    "path",
    ["a", "a.b", "a.b.c", "a.c", "a.c.0", "a.c.1.d", "a.c.x", "a.c.2", "0", "n", "n.x", "", "x",
     "a.x.y", "a.c.-1", "a.c.1.d.e"],
)  # fmt: skip
@pytest.mark.parametrize("data", [_DOC, [_DOC], "text", None, 7])
def test_a_getter_reads_what_lookup_reads(path: str, data: object) -> None:
    """``getter(path)(data)`` is ``lookup(data, path)``, with None where lookup raises."""
    try:
        expected = lookup(data, path)
    except LookupError:
        expected = None
    assert expected == getter(path)(data)
