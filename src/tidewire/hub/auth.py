"""Who may do what: connection tokens (JWT, HS256) and the API key.

Tokens are made by the application's backend with the hub's token secret and
checked here by PyJWT. Claims of a connection token: ``sub`` (the user id,
required), ``exp`` (optional), ``channels`` (optional list; ``"chat:*"`` matches
by prefix), ``channels_subscribe`` (optional list of channels to subscribe
server-side) and ``info`` (optional object shown in presence). A subscription
token has ``sub``, ``channel`` and an optional ``exp``: it lets its holder
subscribe to that one channel. A validly signed token is still refused when
its claims hold what the hub can't pass on (``strictjson``): PyJWT reads NaN,
huge numbers and lone surrogates as Python's ``json`` does.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import jwt

from .strictjson import MAX_INTEGER, Refused, check, dumps

__all__ = [
    "Credentials",
    "InvalidToken",
    "check_token",
    "check_subscription_token",
    "channel_allowed",
    "check_api_key",
]

MAX_INFO = 1024  # bytes of `info`, as JSON
MAX_USER = 255  # characters of `sub`


class InvalidToken(Exception):
    """The token can't be trusted; the message says why, for the client."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    expires: int | None = None
    channels: tuple[str, ...] | None = None  # None: every channel the namespaces allow
    info: str | None = None  # JSON object
    subscribe: tuple[str, ...] = ()  # channels to subscribe server-side


def _claims(token: str, secret: str | None, what: str) -> dict[str, Any]:
    if secret is None:
        raise InvalidToken("this hub accepts no tokens (no token secret is configured)")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken(f"{what} expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid {what}: {exc}") from exc
    except (ValueError, OverflowError, TypeError) as exc:  # claims PyJWT didn't expect
        raise InvalidToken(f"invalid {what}: {exc}") from exc
    user = claims["sub"]
    if not isinstance(user, str):
        raise InvalidToken(f"invalid {what}: 'sub' must be a string")
    if len(user) > MAX_USER:
        raise InvalidToken(f"invalid {what}: 'sub' is at most {MAX_USER} characters")
    exp = claims.get("exp")
    if exp is not None:
        # PyJWT takes "123" for 123 when it checks expiry; the hub wouldn't.
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise InvalidToken(f"invalid {what}: 'exp' must be a number")
        if not -MAX_INTEGER <= exp <= MAX_INTEGER:
            raise InvalidToken(f"invalid {what}: 'exp' is out of range")
    try:
        check(user, "'sub'")
    except Refused as exc:
        raise InvalidToken(f"invalid {what}: {exc}") from None
    return claims


def _names(claims: dict[str, Any], name: str) -> list[str] | None:
    value = claims.get(name)
    if value is not None:
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise InvalidToken(f"invalid token: '{name}' must be a list of strings")
        try:
            check(value, f"'{name}'")
        except Refused as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
    return value


def check_token(token: str, secret: str | None) -> Credentials:
    """Verify a connection token and return what it grants, or raise ``InvalidToken``."""
    claims = _claims(token, secret, "token")
    user = claims["sub"]
    if not user:
        raise InvalidToken("invalid token: 'sub' must be a non-empty string")
    if "channel" in claims:
        raise InvalidToken("invalid token: a subscription token (with 'channel') can't connect")
    exp = claims.get("exp")
    channels = _names(claims, "channels")
    subscribe = _names(claims, "channels_subscribe")
    info = claims.get("info")
    if info is not None and not isinstance(info, dict):
        raise InvalidToken("invalid token: 'info' must be an object")
    try:
        encoded = None if info is None else encode_info(info, "'info'")
    except ValueError as exc:
        raise InvalidToken(f"invalid token: {exc}") from None
    return Credentials(
        user,
        None if exp is None else int(exp),
        None if channels is None else tuple(channels),
        encoded,
        tuple(dict.fromkeys(subscribe or ())),
    )


def check_subscription_token(token: str, secret: str | None, user: str, channel: str) -> None:
    """Does ``token`` let ``user`` subscribe to ``channel``? Raise ``InvalidToken`` if not.

    Claims: ``sub`` (the connection's user, ``""`` for anonymous), ``channel``
    (exactly this channel), ``exp`` (optional, checked when subscribing).
    """
    claims = _claims(token, secret, "subscription token")
    if claims.get("channel") != channel:
        raise InvalidToken(f"the subscription token isn't for channel {channel}")
    if claims["sub"] != user:
        raise InvalidToken("the subscription token is for another user")


def encode_info(info: dict[str, Any], where: str = "info") -> str:
    """``info`` as compact JSON; raise ``Refused`` (a ``ValueError``) for what
    the hub can't pass on, or for more than ``MAX_INFO`` bytes."""
    check(info, where)
    text = dumps(info)
    if len(text.encode()) > MAX_INFO:
        raise Refused(f"{where} is over {MAX_INFO} bytes as JSON")
    return text


def channel_allowed(patterns: tuple[str, ...] | None, channel: str) -> bool:
    """Does a token's ``channels`` claim let its user subscribe to ``channel``?"""
    if patterns is None:
        return True
    for pattern in patterns:
        if pattern.endswith("*"):
            if channel.startswith(pattern[:-1]):
                return True
        elif pattern == channel:
            return True
    return False


def check_api_key(given: str | None, expected: str | None) -> bool:
    """Compare in constant time; no configured key lets nobody in."""
    if expected is None or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
