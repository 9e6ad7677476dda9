"""The JSON the hub reads and writes: RFC 8259 that every browser reads alike.

Python's ``json`` reads more than the hub can pass on to browsers: numbers
that overflow a double (``1e400`` becomes ``inf``, which would go out as
``Infinity``), integers that a JavaScript number can't hold exactly, strings
with half of a UTF-16 surrogate pair (``"\\ud800"``: no UTF-8 can encode it),
and nesting deep enough to exhaust Python's stack. The hub refuses each with
``Refused``, a ``ValueError`` whose message says what is wrong:

- ``parse`` reads a text, refusing ``NaN`` and ``Infinity``;
- ``check`` walks what was read, once, for everything else;
- ``dumps`` writes compact JSON and refuses NaN and infinities, as a last
  line of defence for what the hub sends.

The limits, stated in docs/protocol.md: at most ``MAX_DEPTH`` levels of arrays
and objects in one value; integers within ±``MAX_INTEGER`` (2**53 - 1,
JavaScript's ``Number.MAX_SAFE_INTEGER``): send larger ones as strings; other
numbers finite doubles; strings and member names Unicode text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "MAX_INTEGER", "Refused", "parse", "check", "check_members", "dumps"]

MAX_DEPTH = 32
MAX_INTEGER = 2**53 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Refused(ValueError):
    """JSON that Python reads but the hub can't pass on; the message says why."""


def _unserializable(value: Any) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# JSONEncoder.encode() builds its C encoder anew for each call, which costs
# more than writing a small object: the hub keeps one. No circular check (the
# hub writes what it read or built); NaN and infinities raise ValueError.
_make_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None  # None where the C accelerator is missing
)
_C_ENCODE = None if _make_encoder is None else _make_encoder(
    None, _unserializable, json.encoder.encode_basestring, None, ":", ",", False, False, False
)


def dumps(value: Any) -> str:
    """Compact JSON; one encoder for all, rather than one per call."""
    if type(value) is str:
        return json.encoder.encode_basestring(value)
    if _C_ENCODE is None or not (type(value) is dict or type(value) is list):
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def _no_constant(name: str) -> NoReturn:
    raise Refused(f"{name} isn't JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # one for all, as _ENCODER


def parse(text: str) -> Any:
    """Read ``text`` as JSON; raise ``Refused`` for NaN, Infinity, nesting
    that Python can't follow and integers too long to convert, and plain
    ``ValueError`` for text that isn't JSON. What it returns still needs
    ``check``."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise Refused(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    except Refused:
        raise
    except ValueError:
        _find_bad_number(text)  # an integer of thousands of digits?
        raise


def check(value: Any, where: str, text: str | None = None) -> None:
    """Raise ``Refused`` if ``value`` (from ``parse``, or from another JSON
    reader) holds what the hub can't pass on; the message begins with
    ``where``. With the ``text`` it was read from, the message quotes a
    number that overflowed as it was written."""
    kind = type(value)
    if kind is list or kind is dict:
        _walk(value, where, 0, text)
    else:
        _scalar(value, where, text)


def check_members(value: dict[str, Any], text: str | None = None, *,
                  skip: str | None = None) -> None:
    """``check`` each member of an object (a request, a body), naming it in
    the message; ``skip`` a member checked already."""
    for key, item in value.items():
        if key == skip:
            continue
        if not key.isascii() and _SURROGATE.search(key):
            _surrogate(key, "a member name")
        check(item, key if _PLAIN_NAME.fullmatch(key) else repr(key[:40]), text)


def _walk(value: list[Any] | dict[str, Any], where: str, depth: int, text: str | None) -> None:
    # One pass over every value; the checks of scalars are inlined, as this
    # runs for every element of every publication.
    if depth == MAX_DEPTH:
        raise Refused(f"{where} nests deeper than {MAX_DEPTH} levels")
    depth += 1
    if type(value) is dict:
        for key in value:
            if not key.isascii() and _SURROGATE.search(key):
                _surrogate(key, where)
        items: Any = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind is str:
            if not item.isascii() and _SURROGATE.search(item):
                _surrogate(item, where)
        elif kind is int:
            if not -MAX_INTEGER <= item <= MAX_INTEGER:
                _big_integer(item, where)
        elif kind is float:
            if item - item != 0.0:  # inf or nan
                _not_finite(item, where, text)
        elif kind is list or kind is dict:
            _walk(item, where, depth, text)


def _scalar(value: Any, where: str, text: str | None) -> None:
    kind = type(value)
    if kind is str:
        if not value.isascii() and _SURROGATE.search(value):
            _surrogate(value, where)
    elif kind is int:
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            _big_integer(value, where)
    elif kind is float and value - value != 0.0:
        _not_finite(value, where, text)


def _surrogate(text: str, where: str) -> NoReturn:
    match = _SURROGATE.search(text)
    assert match is not None
    raise Refused(
        f"{where} holds a lone surrogate (U+{ord(match[0]):04X}): strings must be "
        "Unicode text, which UTF-8 can encode"
    )


_INTEGER_RANGE = (
    f"integers must be within ±{MAX_INTEGER} (2**53 - 1) for browsers to read them "
    "exactly; send it as a string"
)
_FLOAT_RANGE = "numbers must fit a double (at most about 1.8e308)"


def _shown(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:20]}... ({len(digits)} characters)"


def _big_integer(value: int, where: str) -> NoReturn:
    raise Refused(f"{where}: number {_shown(str(value))} is out of range: {_INTEGER_RANGE}")


def _not_finite(value: float, where: str, text: str | None) -> NoReturn:
    if value != value:
        raise Refused(f"{where} holds NaN, which isn't JSON")
    if text is not None:
        _find_bad_number(text, where)
    literal = "Infinity" if value > 0 else "-Infinity"
    raise Refused(f"{where}: number {literal} is out of range: {_FLOAT_RANGE}")


def _find_bad_number(text: str, where: str = "") -> None:
    """Read ``text`` again, checking each number as it is written, to quote
    the first that is out of range. Only on the way to an error."""
    prefix = f"{where}: " if where else ""

    def integer(literal: str) -> int:
        if len(literal.lstrip("-")) > 16 or not -MAX_INTEGER <= int(literal) <= MAX_INTEGER:
            raise Refused(f"{prefix}number {_shown(literal)} is out of range: {_INTEGER_RANGE}")
        return 0

    def number(literal: str) -> float:
        value = float(literal)
        if value - value != 0.0:
            raise Refused(f"{prefix}number {_shown(literal)} is out of range: {_FLOAT_RANGE}")
        return 0.0

    try:
        json.loads(text, parse_constant=_no_constant, parse_int=integer, parse_float=number)
    except Refused:
        raise
    except (ValueError, RecursionError):
        pass
