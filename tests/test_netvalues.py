"""Bounded conversions of values read from the network."""

from __future__ import annotations

import json

import pytest

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
