"""The backend's answers to the proxy, checked in one place.

An answer is a JSON object with exactly one key: ``result`` (what the event's
table below allows), ``error`` (``code`` 400-599 and ``message``, handed to
the client as an error reply) or ``disconnect`` (``code`` 4000-4999 and
``reason``, which close the connection). docs/proxy.md is the specification.

``parse_answer`` turns the body into one typed value, or raises
``InvalidAnswer`` naming what is wrong: nothing the backend sends reaches a
client unless it is JSON a browser can parse (no NaN, no lone surrogate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .auth import encode_info
from .config import HubConfig
from .strictjson import MAX_INTEGER, Refused, check, parse
from .wire import RequestError, channel_name

__all__ = [
    "Answer",
    "ConnectResult",
    "Disconnect",
    "InvalidAnswer",
    "Refusal",
    "RefreshResult",
    "DataResult",
    "parse_answer",
    "MAX_MESSAGE",
    "MAX_REASON",
]

MAX_MESSAGE = 1024  # characters of an error's message
MAX_REASON = 123  # bytes of a close reason: what a close frame can carry

# 1e999 parses as infinity, which JSON can't carry: refused when encoding.
_STRICT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class InvalidAnswer(Exception):
    """The answer can't be used. ``reason`` is the metric's label: ``malformed``
    (not a JSON object) or ``invalid`` (JSON of the wrong shape)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Refusal:
    """``{"error": ...}``: the client gets this error reply."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """``{"disconnect": ...}``: the connection closes with this code."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectResult:
    user: str
    expire_at: float | None = None
    info: str | None = None  # a JSON object, encoded
    data: str | None = None  # JSON text, for the connect reply
    channels: tuple[str, ...] = ()  # to subscribe server-side


@dataclass(frozen=True, slots=True)
class RefreshResult:
    expire_at: float | None = None  # None: the connection no longer expires
    info: str | None = None  # None: unchanged


@dataclass(frozen=True, slots=True)
class DataResult:
    """The result of rpc (``data`` for the reply), publish (``data`` to
    publish instead, ``None`` to keep the client's) and subscribe (none)."""

    data: str | None = None


Answer = ConnectResult | RefreshResult | DataResult | Refusal | Disconnect

# The keys each event's result may hold.
_RESULT_KEYS = {
    "connect": {"user", "expire_at", "info", "data", "channels"},
    "refresh": {"expire_at", "info"},
    "rpc": {"data"},
    "publish": {"data"},
    "subscribe": set(),
}


def parse_answer(event: str, body: bytes, config: HubConfig) -> Answer:
    """The backend's answer to ``event``; raise ``InvalidAnswer``."""
    try:
        value = parse(body.decode())  # NaN and the like are Refused, a ValueError
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise InvalidAnswer("malformed", f"not JSON: {_short(exc)}") from None
    try:
        check(value, "the answer")
    except Refused as exc:  # JSON, but not what the hub may pass on to browsers
        raise InvalidAnswer("invalid", _short(exc)) from None
    if not isinstance(value, dict):
        raise InvalidAnswer("malformed", "not a JSON object")
    if len(value) != 1 or next(iter(value)) not in ("result", "error", "disconnect"):
        keys = ", ".join(sorted(value)) or "none"
        raise InvalidAnswer(
            "invalid", f"needs exactly one of result, error, disconnect; has {keys[:200]}"
        )
    kind, content = next(iter(value.items()))
    if not isinstance(content, dict):
        raise InvalidAnswer("invalid", f"{kind} must be an object")
    if kind == "error":
        _only(content, {"code", "message"}, kind)
        code = _int(content.get("code"), 400, 599, "error.code")
        message = content.get("message")
        if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE:
            raise InvalidAnswer(
                "invalid", f"error.message must be a string of 1 to {MAX_MESSAGE} characters"
            )
        _text(message, "error.message")
        return Refusal(code, message)
    if kind == "disconnect":
        _only(content, {"code", "reason"}, kind)
        code = _int(content.get("code"), 4000, 4999, "disconnect.code")
        reason = content.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidAnswer("invalid", "disconnect.reason must be a string")
        if len(_text(reason, "disconnect.reason")) > MAX_REASON:
            raise InvalidAnswer("invalid", f"disconnect.reason is over {MAX_REASON} bytes")
        return Disconnect(code, reason)
    _only(content, _RESULT_KEYS[event], "result")
    if event == "connect":
        return _connect(content, config)
    if event == "refresh":
        return RefreshResult(_expire_at(content), _info(content))
    return DataResult(_data(content) if event != "subscribe" else None)


def _connect(result: dict[str, Any], config: HubConfig) -> ConnectResult:
    user = result.get("user")
    if not isinstance(user, str):
        raise InvalidAnswer("invalid", "result.user must be a string (\"\" for anonymous)")
    _text(user, "result.user")
    channels = result.get("channels", [])
    if not isinstance(channels, list):
        raise InvalidAnswer("invalid", "result.channels must be a list of channel names")
    names = []
    for value in channels:
        try:
            name = channel_name(value)
        except RequestError as exc:
            raise InvalidAnswer("invalid", f"result.channels: {exc.message}") from None
        _text(name, "result.channels")
        if config.namespace(name) is None:
            raise InvalidAnswer("invalid", f"result.channels: no namespace for channel {name}")
        names.append(name)
    return ConnectResult(
        user, _expire_at(result), _info(result), _data(result), tuple(dict.fromkeys(names))
    )


def _only(content: dict[str, Any], known: set[str], name: str) -> None:
    unknown = set(content) - known
    if unknown:
        allowed = ", ".join(sorted(known)) or "no keys"
        raise InvalidAnswer(
            "invalid", f"unknown key {sorted(unknown)[0][:40]!r} in {name} (allowed: {allowed})"
        )


def _int(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidAnswer("invalid", f"{name} must be an integer from {low} to {high}")
    return value


def _expire_at(result: dict[str, Any]) -> float | None:
    value = result.get("expire_at")
    if value is None:
        return None
    # At most 2**53 - 1, as a token's exp: clients get it back as a JSON number.
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= MAX_INTEGER):
        raise InvalidAnswer(
            "invalid", f"result.expire_at must be Unix seconds (a number from 0 to {MAX_INTEGER})"
        )
    return float(value)


def _info(result: dict[str, Any]) -> str | None:
    value = result.get("info")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidAnswer("invalid", "result.info must be an object")
    _encode(value, "result.info")
    try:
        return encode_info(value)
    except ValueError as exc:
        raise InvalidAnswer("invalid", f"result.info: {exc}") from None


def _data(result: dict[str, Any]) -> str | None:
    return _encode(result["data"], "result.data") if "data" in result else None


def _encode(value: Any, name: str) -> str:
    """``value`` as JSON that any client can parse."""
    try:
        text: str = _STRICT.encode(value)
    except (ValueError, RecursionError) as exc:
        raise InvalidAnswer("invalid", f"{name} isn't carriable JSON: {_short(exc)}") from None
    _text(text, name)
    return text


def _text(text: str, name: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (``"\\ud800"`` in the JSON) has none."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidAnswer("invalid", f"{name} holds a lone surrogate: not valid text") from None


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__
