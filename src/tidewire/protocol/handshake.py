"""The opening handshake (RFC 6455 section 4): keys and header rules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from ..exceptions import InvalidHeader

__all__ = ["GUID", "generate_key", "accept_key", "check_key", "split_tokens", "single"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded."""
    return base64.b64encode(os.urandom(16)).decode()


# 22 base64 digits and the padding: what every client's 16 random bytes give.
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value that answers ``key``."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return binascii.b2a_base64(digest, newline=False).decode()


def check_key(key: str) -> None:
    """Raise ``InvalidHeader`` unless ``key`` is 16 bytes in base64."""
    if _KEY.fullmatch(key):
        return  # a server checks one per connection: skip base64's wrappers
    try:
        raw = base64.b64decode(key.encode(), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidHeader("Sec-WebSocket-Key", f"{key[:40]!r} isn't base64") from None
    if len(raw) != 16:
        raise InvalidHeader(
            "Sec-WebSocket-Key", f"decodes to {len(raw)} bytes instead of 16"
        )


def split_tokens(values: list[str]) -> list[str]:
    """Split comma-separated header values into trimmed, non-empty items."""
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def single(values: list[str], name: str, *, missing_status: int = 400) -> str:
    """The one value among ``values``, those of the field ``name``; raise
    ``InvalidHeader`` if there is none or more than one."""
    if not values:
        raise InvalidHeader(name, "missing", missing_status)
    if len(values) > 1:
        raise InvalidHeader(name, "more than one")
    return values[0]
