"""Masking (RFC 6455 section 5.3): XOR the payload with a repeating 4-byte key."""

from __future__ import annotations

__all__ = ["apply_mask"]


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``; the operation is its own
    inverse. Works on whole-number operations so that CPython does the loop in C.
    """
    n = len(data)
    if n == 0:
        return b""
    q, r = divmod(n, 4)
    key = mask * q + mask[:r]
    x = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return x.to_bytes(n, "little")
