"""The HTTP/1.1 subset of the opening handshake: requests, responses, headers.

Parsing is incremental and bounded: a parser is fed whatever bytes arrived and
returns ``None`` until a whole head is there. Oversized input raises
``InvalidMessage`` with the status to answer (414 for a request line, 431 for
headers) before the limit is buffered, so a peer can't make us hold more.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..exceptions import InvalidMessage

__all__ = [
    "Headers",
    "Request",
    "Response",
    "parse_request",
    "parse_response",
    "request_body_length",
    "MAX_LINE",
    "MAX_HEAD",
    "MAX_HEADERS",
]

MAX_LINE = 8192  # bytes in the request line or in one header line
MAX_HEAD = 32768  # bytes in the whole head, request line included
MAX_HEADERS = 128  # number of header fields

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# Header lines decoded as latin-1 (one char per byte): a token, a colon, then
# a value (stripped after).
_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_RAW_VALUE = r"[\t\x20-\x7e\x80-\xff]*"
_FIELD_TEXT = re.compile(f"({_NAME}):({_RAW_VALUE})")
# ASCII digits only: str.isdigit() takes "²", which int() refuses, and 18 at
# most, which int() reads without nearing its limit on digits.
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
# A status is three digits, the first one its class (RFC 9110 section 15); a
# space parts it from the reason, which may be left out.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: ([\x09\x20-\x7e\x80-\xff]*))?")


class Headers:
    """HTTP header fields: case-insensitive names, order and repeats kept."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._items == self._items

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lname = name.lower()
        # Names are ASCII tokens, whose length lowercasing keeps: most names
        # differ in length from the one looked for, and are never lowercased.
        n = len(name)
        return [v for k, v in self._items if len(k) == n and k.lower() == lname]

    def grouped(self) -> dict[str, list[str]]:
        """Every value by lowercased name, in order: one pass over the fields
        for code that looks up many names. Not kept: a request lives as long
        as its connection, and an index would cost an idle one 1 KiB."""
        groups: dict[str, list[str]] = {}
        for k, v in self._items:
            key = k.lower()
            values = groups.get(key)
            if values is None:
                groups[key] = [v]
            else:
                values.append(v)
        return groups

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lname = name.lower()
        n = len(name)  # as in get_all()
        for k, v in self._items:
            if len(k) == n and k.lower() == lname:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        del self[name]
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        lname = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lname]

    def serialize(self) -> bytes:
        return "".join([f"{k}: {v}\r\n" for k, v in self._items]).encode()


@dataclass
class Request:
    """An HTTP request: the GET of an upgrade, or any request that a server's
    ``process_request`` answers itself (``body`` is read only where the server
    allows bodies)."""

    path: str
    headers: Headers = field(default_factory=Headers)
    method: str = "GET"
    body: bytes = b""

    def serialize(self) -> bytes:
        return b"%s %s HTTP/1.1\r\n%s\r\n%s" % (
            self.method.encode(),
            self.path.encode(),
            self.headers.serialize(),
            self.body,
        )


@dataclass
class Response:
    """An HTTP response: 101 for the upgrade, anything else to refuse it."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def serialize(self) -> bytes:
        return b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (
            self.status,
            self.reason.encode(),
            self.headers.serialize(),
            self.body,
        )


def _split_head(buf: bytearray | bytes, first_line_status: int) -> tuple[
    bytes, bytes, int
] | None:
    """Find a complete head in ``buf``; return (first line, header block, size):
    the block is the header lines, joined by CRLF.

    Enforce the size limits on what is buffered so far.
    """
    end = buf.find(b"\r\n\r\n")
    if end == -1:
        first = buf.find(b"\r\n")
        if first == -1 and len(buf) > MAX_LINE:
            raise InvalidMessage(
                f"first line is longer than {MAX_LINE} bytes", first_line_status
            )
        if len(buf) > MAX_HEAD:
            raise InvalidMessage(f"headers are longer than {MAX_HEAD} bytes", 431)
        return None
    if end + 4 > MAX_HEAD:
        raise InvalidMessage(f"headers are longer than {MAX_HEAD} bytes", 431)
    first = buf.find(b"\r\n", 0, end)
    if first == -1:  # no header lines
        first = end
    if first > MAX_LINE:
        raise InvalidMessage(
            f"first line is longer than {MAX_LINE} bytes", first_line_status
        )
    return bytes(buf[:first]), bytes(buf[first + 2 : end]), end + 4


def _parse_headers(raw: bytes) -> Headers:
    if not raw:
        return Headers()
    if raw.count(b"\r\n") >= MAX_HEADERS:
        raise InvalidMessage(f"more than {MAX_HEADERS} header fields", 431)
    # No line of a block this short can be too long (the common case).
    if len(raw) > MAX_LINE and max(map(len, raw.split(b"\r\n"))) > MAX_LINE:
        raise InvalidMessage(f"a header line is longer than {MAX_LINE} bytes", 431)
    # One pass of the regular expression engine over the whole block, in C,
    # instead of a dozen Python steps per line. Fields can't span lines: the
    # block is valid if they and the line ends between them cover all of it.
    block = raw.decode("latin-1")
    fields = _FIELD_TEXT.findall(block)
    intern = sys.intern
    items = []
    size = -2
    for name, value in fields:
        size += len(name) + len(value) + 3  # the colon, and CRLF before the next
        value = value.strip(" \t")
        # Interned: every connection shares one copy of "Host", "websocket"...
        # and an idle connection keeps its request for its whole life.
        items.append((intern(name), intern(value) if len(value) <= 64 else value))
    if size != len(block):
        for line in raw.split(b"\r\n"):
            if _FIELD_TEXT.fullmatch(line.decode("latin-1")) is None:
                raise _invalid_field(line)
        raise InvalidMessage("malformed header block")  # pragma: no cover - a line fails above
    return Headers(items)


def _invalid_field(line: bytes) -> InvalidMessage:
    """What is wrong with a header line that ``_FIELD_TEXT`` doesn't match."""
    name, sep, _ = line.partition(b":")
    if not sep:
        return InvalidMessage(f"header line without a colon: {_show(line)}")
    if not _TOKEN.fullmatch(name):
        return InvalidMessage(f"invalid header name: {_show(name)}")
    return InvalidMessage(f"invalid value in header {name.decode()}")


def _show(data: bytes) -> str:
    text = repr(data[:60])[2:-1]
    return text + "..." if len(data) > 60 else text


def parse_request(buf: bytearray | bytes) -> tuple[Request, int] | None:
    """Parse a request head from the start of ``buf``.

    Return the request and the number of bytes it used, or ``None`` if more
    bytes are needed. Raise ``InvalidMessage`` if it is malformed or too big.
    """
    head = _split_head(buf, 414)
    if head is None:
        return None
    first, block, size = head
    parts = first.split(b" ")
    if len(parts) != 3:
        raise InvalidMessage(f"malformed request line: {_show(first)}")
    method, target, version = parts
    if not version.startswith(b"HTTP/"):
        raise InvalidMessage(f"malformed request line: {_show(first)}")
    if version != b"HTTP/1.1":
        raise InvalidMessage(
            f"unsupported HTTP version {_show(version)}; WebSocket needs HTTP/1.1",
            505,
        )
    if not _TOKEN.fullmatch(method):
        raise InvalidMessage(f"malformed request line: {_show(first)}")
    if not target.startswith(b"/") or not _VALUE.fullmatch(target):
        raise InvalidMessage(f"invalid request target: {_show(target)}")
    headers = _parse_headers(block)
    return Request(target.decode("latin-1"), headers, method.decode()), size


def request_body_length(request: Request) -> int:
    """How many body bytes follow the head of ``request`` (RFC 9112 section 6).

    Raise ``InvalidMessage``: 411 for a chunked body (send Content-Length),
    400 for a Content-Length that isn't one number.
    """
    values = []
    for name, value in request.headers:  # one pass over the fields
        n = len(name)  # lowercasing keeps the length of ASCII names
        if n == 14 and name.lower() == "content-length":
            values.append(value)
        elif n == 17 and name.lower() == "transfer-encoding":
            raise InvalidMessage(
                "chunked request bodies aren't supported; send Content-Length", 411
            )
    if not values:
        return 0
    if len(set(values)) != 1 or not _CONTENT_LENGTH.fullmatch(values[0]):
        raise InvalidMessage(f"invalid Content-Length: {', '.join(values)[:40]}")
    return int(values[0])


def parse_response(buf: bytearray | bytes) -> tuple[Response, int] | None:
    """Parse a response head from the start of ``buf``, like ``parse_request``.

    The body, if any, isn't read here: see ``body_length``.
    """
    head = _split_head(buf, 400)
    if head is None:
        return None
    first, block, size = head
    match = _STATUS_LINE.fullmatch(first)
    if match is None:
        raise InvalidMessage(f"malformed status line: {_show(first)}")
    status = int(match[1])
    headers = _parse_headers(block)
    return Response(status, (match[2] or b"").decode("latin-1"), headers), size


def body_length(response: Response) -> int | None:
    """How many body bytes follow a refusal, ``None`` for "until EOF"."""
    if response.status in (101, 204, 304) or 100 <= response.status < 200:
        return 0
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if not _CONTENT_LENGTH.fullmatch(value):
        raise InvalidMessage(f"invalid Content-Length: {value[:40]}")
    return int(value)
