"""Who may do what: connection tokens (JWT, HS256) and the API key.

Tokens are made by the application's backend with the hub's token secret and
checked here by PyJWT. Claims: ``sub`` (the user id, required), ``exp``
(optional), ``channels`` (optional list; ``"chat:*"`` matches by prefix) and
``info`` (optional object shown in presence). A validly signed token is still
refused when these claims hold what the hub can't pass on (``strictjson``):
PyJWT reads NaN, huge numbers and lone surrogates as Python's ``json`` does.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import jwt

from .strictjson import MAX_INTEGER, Refused, check, dumps

__all__ = ["Credentials", "InvalidToken", "check_token", "channel_allowed", "check_api_key"]

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


def check_token(token: str, secret: str | None) -> Credentials:
    """Verify ``token`` and return what it grants, or raise ``InvalidToken``."""
    if secret is None:
        raise InvalidToken("this hub accepts no tokens (no token secret is configured)")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    except (ValueError, OverflowError, TypeError) as exc:  # claims PyJWT didn't expect
        raise InvalidToken(f"invalid token: {exc}") from exc
    try:
        return _credentials(claims)
    except Refused as exc:
        raise InvalidToken(f"invalid token: {exc}") from None


def _credentials(claims: dict[str, Any]) -> Credentials:
    user = claims["sub"]
    if not isinstance(user, str) or not user:
        raise InvalidToken("invalid token: 'sub' must be a non-empty string")
    check(user, "'sub'")
    if len(user) > MAX_USER:
        raise InvalidToken(f"invalid token: 'sub' is at most {MAX_USER} characters")
    exp = claims.get("exp")
    if exp is not None:
        # PyJWT takes "123" for 123 when it checks expiry; the hub wouldn't.
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise InvalidToken("invalid token: 'exp' must be a number")
        if not -MAX_INTEGER <= exp <= MAX_INTEGER:
            raise InvalidToken("invalid token: 'exp' is out of range")
    channels = claims.get("channels")
    if channels is not None:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise InvalidToken("invalid token: 'channels' must be a list of strings")
        check(channels, "'channels'")
    info = claims.get("info")
    if info is not None and not isinstance(info, dict):
        raise InvalidToken("invalid token: 'info' must be an object")
    return Credentials(
        user,
        None if exp is None else int(exp),
        None if channels is None else tuple(channels),
        None if info is None else encode_info(info, "'info'"),
    )


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
