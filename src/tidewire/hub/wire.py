"""The client protocol's JSON: parsing requests, writing replies and pushes.

docs/protocol.md is the specification. Pushes are built by joining strings
around data that is already JSON, so a publication's data is encoded once, by
its publisher, and never decoded and encoded again on its way to subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .broker import ClientInfo, History, Position, Publication
from .strictjson import Refused, check, check_members, dumps, parse

__all__ = [
    "Code",
    "Close",
    "RequestError",
    "Request",
    "parse_request",
    "reply",
    "error_reply",
    "publication_push",
    "presence_push",
    "subscribed_json",
    "subscribe_push",
    "unsubscribe_push",
    "refresh_push",
    "number",
    "publications_json",
    "position_from",
    "dumps",
]

MAX_CHANNEL = 255
MAX_ID = 255  # characters of a string id


class Code(IntEnum):
    """Error codes of replies."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    TOO_MANY = 429
    INTERNAL = 500
    NOT_IMPLEMENTED = 501
    UNAVAILABLE = 503


class Close(IntEnum):
    """Close codes of the hub; 4000-4499 mean "reconnect", 4500-4999 "don't"."""

    SLOW_CONSUMER = 4000
    TOKEN_EXPIRED = 4001
    CONNECT_TIMEOUT = 4002
    INTERRUPTED = 4003  # a gap in a channel's stream: resubscribe to recover
    INVALID_TOKEN = 4500
    DISCONNECTED = 4501


class RequestError(Exception):
    """A request can't be done; becomes an error reply with ``code``."""

    def __init__(self, code: int, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id  # known even when the rest is bad


@dataclass(slots=True)
class Request:
    id: Any
    op: str
    body: dict[str, Any]

    def channel(self) -> str:
        return channel_name(self.body.get("channel"))

    def since(self) -> Position | None:
        return position_from(self.body.get("since"), "since")


def parse_request(text: str) -> Request:
    """Decode one request; raise ``RequestError`` (400) saying what is wrong,
    including anything the hub couldn't pass on (``strictjson``).

    The id is recovered even from a request that is otherwise bad, so that
    the error reply can carry it.
    """
    try:
        body = parse(text)
    except Refused as exc:
        raise RequestError(Code.BAD_REQUEST, str(exc)) from None
    except ValueError as exc:
        raise RequestError(Code.BAD_REQUEST, f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(Code.BAD_REQUEST, "a request must be a JSON object")
    rid = body.get("id")
    if rid is not None:
        if isinstance(rid, bool) or not isinstance(rid, (int, str)):
            raise RequestError(Code.BAD_REQUEST, "id must be a number or a string")
        try:
            check(rid, "id")
        except Refused as exc:
            raise RequestError(Code.BAD_REQUEST, str(exc)) from None
        if isinstance(rid, str) and len(rid) > MAX_ID:
            raise RequestError(Code.BAD_REQUEST, f"id is at most {MAX_ID} characters")
    try:
        check_members(body, text, skip="id")
    except Refused as exc:
        raise RequestError(Code.BAD_REQUEST, str(exc), rid) from None
    op = body.get("op")
    if not isinstance(op, str):
        raise RequestError(Code.BAD_REQUEST, "missing op", rid)
    return Request(rid, op, body)


def channel_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(Code.BAD_REQUEST, "channel must be a non-empty string")
    if len(value) > MAX_CHANNEL:
        raise RequestError(Code.BAD_REQUEST, f"channel names are at most {MAX_CHANNEL} characters")
    if not value.isprintable():
        raise RequestError(Code.BAD_REQUEST, "channel names can't hold control characters")
    return value


def position_from(value: Any, name: str) -> Position | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("epoch"), str)
        or not isinstance(value.get("offset"), int)
        or isinstance(value.get("offset"), bool)
        or value["offset"] < 0
    ):
        raise RequestError(
            Code.BAD_REQUEST, f"{name} must be {{\"epoch\": string, \"offset\": integer >= 0}}"
        )
    return Position(value["epoch"], value["offset"])


def reply(rid: Any, result: str) -> str:
    """A success reply; ``result`` is a JSON object, already encoded."""
    return f'{{"id":{dumps(rid)},"result":{result}}}'


def error_reply(rid: Any, code: int, message: str) -> str:
    return dumps({"id": rid, "error": {"code": int(code), "message": message}})


def publication_json(pub: Publication) -> str:
    text = f'{{"offset":{pub.offset},"data":{pub.data}'
    if pub.sender is not None:
        text += f',"from":{pub.sender.to_json()}'
    return text + "}"


def publications_json(pubs: list[Publication]) -> str:
    return "[" + ",".join(publication_json(p) for p in pubs) + "]"


def publication_push(channel: str, pub: Publication) -> str:
    text = f'{{"push":"pub","channel":{dumps(channel)},"offset":{pub.offset},"data":{pub.data}'
    if pub.sender is not None:
        text += f',"from":{pub.sender.to_json()}'
    return text + "}"


def presence_push(kind: str, channel: str, client: ClientInfo) -> str:
    return f'{{"push":"{kind}","channel":{dumps(channel)},"client":{client.to_json()}}}'


def position_json(pos: Position) -> str:
    return f'"epoch":{dumps(pos.epoch)},"offset":{pos.offset}'


def number(value: float) -> str:
    """A number of seconds as JSON: an integer when it is one."""
    return str(int(value)) if value == int(value) else repr(value)


def subscribed_json(
    channel: str, history: History, since: bool, clients: list[ClientInfo] | None = None
) -> str:
    """The result of a subscribe: the channel's position, and with ``since``
    whether it was recovered and what was missed."""
    text = f'{{"channel":{dumps(channel)},{position_json(history.top)}'
    if since:
        text += (
            f',"recovered":{"true" if history.complete else "false"}'
            f',"publications":{publications_json(history.publications)}'
        )
    if clients is not None:
        text += f',"presence":[{",".join(c.to_json() for c in clients)}]'
    return text + "}"


def subscribe_push(subscribed: str) -> str:
    """A server-side subscription began: the fields of a subscribe result."""
    return '{"push":"subscribe",' + subscribed[1:]


def unsubscribe_push(channel: str) -> str:
    return f'{{"push":"unsubscribe","channel":{dumps(channel)}}}'


def refresh_push(expires: float | None) -> str:
    if expires is None:
        return '{"push":"refresh"}'
    return f'{{"push":"refresh","expires":{number(expires)}}}'
