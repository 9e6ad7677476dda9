"""A strict JSON reader for tests: RFC 8259 as every browser reads it alike.

``strict_json`` refuses, with ``NotStrictJSON``, what Python's ``json`` lets
through but a browser's ``JSON.parse`` can't read or reads differently
(I-JSON, RFC 7493): text that isn't UTF-8, ``NaN`` and ``Infinity``, numbers
beyond a double, integers beyond 2**53 - 1 (a double can't hold them exactly),
lone surrogates, raw or escaped, and duplicate member names. It is written
apart from the hub's own checks so that it can catch their mistakes.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["NotStrictJSON", "strict_json"]

SAFE_INTEGER = 2**53 - 1


class NotStrictJSON(ValueError):
    pass


def _constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} isn't JSON")


def _integer(text: str) -> int:
    if len(text) > 17:
        raise NotStrictJSON(f"integer {text[:20]}... is beyond 2**53 - 1")
    value = int(text)
    if abs(value) > SAFE_INTEGER:
        raise NotStrictJSON(f"integer {text} is beyond 2**53 - 1")
    return value


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJSON(f"number {text[:40]} overflows a double")
    return value


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise NotStrictJSON(f"duplicate member names in {names!r}")
    return dict(pairs)


def _unicode(value: Any) -> None:
    """Every string and name must be Unicode text: UTF-8 can encode it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise NotStrictJSON(f"lone surrogate in the string {item!r}") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_json(text: str | bytes) -> Any:
    """Parse ``text``; raise ``NotStrictJSON`` for anything a browser can't
    read as Python does."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotStrictJSON(f"not UTF-8: {exc}") from None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotStrictJSON(f"can't be sent as UTF-8: {exc}") from None
    try:
        value = json.loads(
            text,
            parse_constant=_constant,
            parse_int=_integer,
            parse_float=_number,
            object_pairs_hook=_members,
        )
    except NotStrictJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise NotStrictJSON(f"not JSON: {exc}") from None
    _unicode(value)
    return value
