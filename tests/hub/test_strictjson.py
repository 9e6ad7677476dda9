"""strictjson's writer and reader: the same text as the json module's, strictly."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tidewire.hub.strictjson import Refused, dumps, parse

VALUES: list[Any] = [
    {"channel": "chat:lobby", "data": {"text": "héllo \"you\"\n", "n": [1, -2, 3.5, 1e300]}},
    [None, True, False, 0, "", {}, [], {"nested": [{"a": [[[]]]}]}],
    "a string with \u2028, \U0001f600 and \\ backslashes",
    "",
    12,
    -0.0,
    2.5e-8,
    None,
    True,
    {"\u00e9t\u00e9": "keys of any Unicode", "1": 1},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_json_writes_compactly(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert dumps(value) == expected
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize(
    "value", [math.nan, {"a": [math.inf]}, [-math.inf], {"x": {"y": math.nan}}]
)
def test_dumps_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(ValueError):
        dumps(value)


@pytest.mark.parametrize("value", [object(), {"a": {1, 2}}, [b"bytes"]])
def test_dumps_names_a_value_it_cannot_write(value: Any) -> None:
    with pytest.raises(TypeError, match="is not JSON serializable"):
        dumps(value)


def test_parse_reads_json_and_refuses_the_constants() -> None:
    assert parse('{"a": [1, 2.5, "x"], "b": null}') == {"a": [1, 2.5, "x"], "b": None}
    for constant in ("NaN", "Infinity", "-Infinity", '{"a": [NaN]}'):
        with pytest.raises(Refused, match="isn't JSON"):
            parse(constant)
    with pytest.raises(ValueError):
        parse("\ufeff{}")  # a byte order mark isn't JSON text
