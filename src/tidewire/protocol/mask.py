"""Masking (RFC 6455 section 5.3): XOR the payload with a repeating 4-byte key.

``apply_mask``, ``copy_unmasked`` and ``Assembly`` are the compiled versions
from ``tidewire._speedups`` unless ``TIDEWIRE_NO_SPEEDUPS=1`` is set; the names
ending in ``_py``/``Py`` are their pure-Python twins.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = [
    "Assembly",
    "AssemblyPy",
    "apply_mask",
    "apply_mask_py",
    "copy_unmasked",
    "copy_unmasked_py",
    "SPEEDUPS",
]


def apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask``; the operation is its own
    inverse."""
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    return _xor(data, mask)


def copy_unmasked_py(
    data: bytes | bytearray | memoryview, start: int, n: int, mask: bytes | None, phase: int
) -> bytes:
    """``data[start:start + n]`` as bytes, unmasked with ``mask`` from the mask
    byte at ``phase % 4``, or copied as it is when ``mask`` is ``None``."""
    if mask is not None and len(mask) != 4:
        raise ValueError("mask must be 4 bytes or None")
    if start < 0 or n < 0 or n > len(data) - start:
        raise ValueError("slice beyond the data")
    if mask is None:
        return bytes(data[start : start + n])
    o = phase & 3
    return _xor(data[start : start + n], mask[o:] + mask[:o] if o else mask)


_TRANSLATE_FROM = 2048  # bytes; below this, one big-integer XOR is faster
_tables: list[bytes | None] = [None] * 256  # _tables[k]: every byte XOR k


def _xor(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """``data`` XOR the repeated ``mask``, with loops that CPython runs in C."""
    n = len(data)
    if n < _TRANSLATE_FROM:
        if n == 0:
            return b""
        q, r = divmod(n, 4)
        x = int.from_bytes(data, "little") ^ int.from_bytes(mask * q + mask[:r], "little")
        return x.to_bytes(n, "little")
    out = bytearray(data)
    _xor_in_place(out, 0, n, mask)
    return bytes(out)


def _xor_in_place(buf: bytearray, start: int, end: int, mask: bytes) -> None:
    """XOR ``buf[start:end]`` with ``mask``, its byte at offset ``p`` with
    ``mask[p % 4]``. Every 4th byte takes the same key byte: a table lookup."""
    for lane in range(start, min(start + 4, end)):
        buf[lane:end:4] = buf[lane:end:4].translate(_table(mask[lane & 3]))


def _table(k: int) -> bytes:
    table = _tables[k]
    if table is None:
        table = _tables[k] = bytes(b ^ k for b in range(256))
    return table


class AssemblyPy:
    """A message of known ``size``, filled piece by piece in order, then taken
    as bytes.

    Large messages that come in one frame are put together here, unmasked on
    the way in. Both twins copy the pieces into one buffer; the compiled one
    unmasks each piece as it copies it, this one unmasks a run of pieces with
    the same mask at once, which costs less in Python.
    """

    __slots__ = ("size", "_filled", "_buf", "_mask", "_masked_to")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._filled = 0
        self._buf: bytearray | None = bytearray(size)
        # The bytes from _masked_to to _filled still wait for _mask.
        self._mask: bytes | None = None
        self._masked_to = 0

    def put(self, piece: bytes | bytearray | memoryview, mask: bytes | None = None) -> None:
        """Append ``piece``, unmasked with ``mask`` (from the mask byte at the
        fill position % 4) when given."""
        n = len(piece)
        start = self._filled
        self.filled(n, mask)  # checks first: a slice past the end would grow _buf
        self._buf[start : start + n] = piece  # type: ignore[index]

    def space(self) -> memoryview:
        """The part not filled yet, writable: a socket may be read into it."""
        if self._buf is None:
            raise ValueError("message already taken")
        return memoryview(self._buf)[self._filled :]

    def filled(self, n: int, mask: bytes | None = None) -> None:
        """The next ``n`` bytes were written through ``space()``; unmask them
        with ``mask`` as ``put()`` would."""
        buf = self._buf
        if buf is None:
            raise ValueError("message already taken")
        if mask is not None and len(mask) != 4:
            raise ValueError("mask must be 4 bytes or None")
        if n < 0 or n > self.size - self._filled:
            raise ValueError("piece beyond the message's size")
        if mask != self._mask:
            self._unmask(buf)
            self._mask = mask
        self._filled += n

    def take(self) -> bytes:
        """The complete message, once."""
        buf = self._buf
        if buf is None:
            raise ValueError("message already taken")
        if self._filled != self.size:
            raise ValueError("message not complete")
        self._unmask(buf)
        self._buf = None
        return bytes(buf)

    def _unmask(self, buf: bytearray) -> None:
        if self._mask is not None:
            _xor_in_place(buf, self._masked_to, self._filled, self._mask)
        self._masked_to = self._filled


SPEEDUPS = not os.environ.get("TIDEWIRE_NO_SPEEDUPS")

if TYPE_CHECKING or not SPEEDUPS:
    apply_mask = apply_mask_py
    copy_unmasked = copy_unmasked_py
    Assembly = AssemblyPy
else:
    from .._speedups import Assembly, apply_mask, copy_unmasked
