"""Masking (RFC 6455 section 5.3): XOR the payload with a repeating 4-byte key.

``apply_mask`` is the compiled version from ``tidewire._speedups`` unless
``TIDEWIRE_NO_SPEEDUPS=1`` is set; ``apply_mask_py`` is its pure-Python twin.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["apply_mask", "apply_mask_py", "SPEEDUPS"]


def apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``; the operation is its own
    inverse. Works on whole-number operations so that CPython does the loop in C.
    """
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    n = len(data)
    if n == 0:
        return b""
    q, r = divmod(n, 4)
    key = mask * q + mask[:r]
    x = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return x.to_bytes(n, "little")


SPEEDUPS = not os.environ.get("TIDEWIRE_NO_SPEEDUPS")

if TYPE_CHECKING or not SPEEDUPS:
    apply_mask = apply_mask_py
else:
    from .._speedups import apply_mask
