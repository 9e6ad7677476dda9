"""Hostile JSON text for the hub's harnesses, built from fuzzer choices.

Python's ``json`` accepts more than a browser can read back: ``NaN``,
``Infinity``, ``1e400``, integers past 2**53, lone surrogates (escaped),
duplicate member names, nesting deep enough to exhaust the stack. ``Json``
writes values as text, by hand, so that each of those can appear anywhere in
a request, beside well-formed values that get the request deeper into the
hub's checks. The text is what a client could put in a text frame or a body.
"""

from __future__ import annotations

import json

from fuzzing.source import Source

__all__ = ["Json", "Writer", "member", "obj"]

NUMBERS = [
    "0", "-0", "1", "-1", "42", "0.5", "-0.0", "1e3", "1E-7", "2.5e+2",
    "9007199254740991", "-9007199254740991", "9007199254740992", "-9007199254740992",
    "18446744073709551616", "1e308", "1.7976931348623157e308", "1.8e308", "1e400",
    "-1e400", "1e-400", "123456789012345678901234567890.5", "NaN", "Infinity", "-Infinity",
    "01", "1.", ".5", "+1", "0x10", "1e", "-",
]
STRINGS = [
    "", "a", "chat:lobby", "news:today", "private:room", "nons:x", ":", "chat:",
    "\\ud800", "\\udfff", "x\\ud83d", "\\ud83d\\ude00", "\\u0000", "\\n\\t", "é", "²",
    "\u00e9\u4e2d\U0001f600", "\\\"", "\\/", "\\u00", "\\x41", "\x7f", "\u2028",
]


class Json:
    """Writes JSON-ish text from ``src``'s choices. Most of it is valid JSON
    that Python reads; some of it is hostile on purpose."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def number(self) -> str:
        b = self.src.byte()
        if b < 200:
            return NUMBERS[b % len(NUMBERS)]
        if b < 230:
            return str(self.src.byte() * 1000 + self.src.byte() - 5000)
        # A long integer: past int()'s 4300 digits, Python's json raises.
        digits = 1 + self.src.byte() * 40
        return ("-" if b & 1 else "") + "9" * digits

    def string(self) -> str:
        b = self.src.byte()
        if b < 160:
            return '"' + STRINGS[b % len(STRINGS)] + '"'
        if b < 200:
            return '"' + "x" * (self.src.byte() * 300) + '"'  # long
        if b < 230:
            return json.dumps(self.raw_text(), ensure_ascii=bool(b & 1))
        # Raw characters, unescaped: control characters are not JSON.
        return '"' + self.raw_text() + '"'

    def raw_text(self) -> str:
        n = self.src.byte() % 48
        return self.src.take(n).decode("utf-8", "replace")

    def value(self, depth: int = 0) -> str:
        b = self.src.byte()
        kind = b % 16
        if kind in (0, 1):
            return self.number()
        if kind in (2, 3, 4):
            return self.string()
        if kind == 5:
            return ["null", "true", "false", "nul", "True"][b // 16 % 5]
        if kind in (6, 7) and depth < 6:
            n = self.src.byte() % 5
            return "[" + ",".join(self.value(depth + 1) for _ in range(n)) + "]"
        if kind in (8, 9) and depth < 6:
            return self.object(depth + 1)
        if kind == 10:
            # Deep nesting: within the hub's 32 levels, just past, or past the stack.
            n = [31, 32, 33, 100, 1000, 100_000][self.src.byte() % 6]
            inner = self.value(depth + 1) if depth < 6 else "1"
            if b & 16:
                return '{"a":' * n + inner + "}" * n
            return "[" * n + inner + "]" * n
        if kind == 11:
            return self.raw_text()  # anything at all
        return ["0", '""', "{}", "[]", "null"][b % 5]

    def object(self, depth: int = 0) -> str:
        n = self.src.byte() % 5
        members = []
        for _ in range(n):
            name = self.string() if self.src.byte() < 200 else '"dup"'
            members.append(f"{name}:{self.value(depth + 1)}")
        return "{" + ",".join(members) + "}"


class Writer:
    """The base of a harness's writer: ``channel()`` is mostly one of
    ``CHANNELS``, the names that reach the hub's namespaces."""

    CHANNELS: list[str] = []

    def __init__(self, src: Source) -> None:
        self.src = src
        self.json = Json(src)

    def channel(self) -> str:
        if self.src.byte() < 200:
            return json.dumps(self.src.pick(self.CHANNELS))
        return self.json.value()


def member(name: str, value: str) -> str:
    return f"{json.dumps(name)}:{value}"


def obj(members: list[str]) -> str:
    return "{" + ",".join(members) + "}"
